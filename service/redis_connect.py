"""How an instance reaches Redis, in one place: one Redis (BB_REDIS_URL), the primary
that a set of Sentinels names (BB_REDIS_SENTINELS, BB_REDIS_SERVICE), or a Redis Cluster
(BB_REDIS_CLUSTER). Everything else sees only a `RedisConnection`: a commands client,
the nodes (which node a key's pipelines, WAITs and subscriptions go to:
service/redis_nodes.py), whether changes are replicated (then a cart change is
acknowledged only once a replica has it: the store WAITs), and what the topology is (for
the admin page, /metrics, `stock show` and `ctl status`).

Sentinel mode uses redis-py's own Sentinel support: each new connection asks the
sentinels for the current primary, and a connection that finds its node demoted
(READONLY) is dropped, so the next attempt reaches the promoted one. The Redis password
(BB_REDIS_PASSWORD) is the data nodes' and the sentinels' alike.

Cluster mode uses redis-py's `RedisCluster`: it reads the slot map from the seed nodes
and routes each command by its key. The cluster fails over by itself (a replica of a
failed primary is promoted by the other primaries' vote); every change still waits for
a replica of its book's primary.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from service.config import Config, ConfigError
from service.redis_nodes import ClusterNodes, RedisNodes


# Commands retry briefly, so a blip (or a failover's reconnect) is invisible but a dead
# Redis answers 503 fast: a primary whose machine is gone answers nothing at all (no
# refusal), so each attempt is bounded by the timeouts and three attempts stay within
# about 6 s (a read, then two connects). A Redis that stalls for a few seconds (pause-redis:
# 5 s) is still waited for: the second attempt's connection is accepted by the kernel and
# answered when it wakes. The read timeout also leaves room for the one slow command,
# WAIT (up to BB_REDIS_CONFIRM_TIMEOUT_S). The pub/sub client must not retry: redis-py
# would resubscribe silently and the feed would skip the resync that recovers messages
# lost meanwhile.
def command_options(config: Config) -> dict[str, Any]:
    return dict(socket_connect_timeout=1,
                socket_timeout=max(3.0, config.redis_confirm_timeout_s + 1),
                health_check_interval=10,
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2))


def pubsub_options() -> dict[str, Any]:
    return dict(socket_connect_timeout=2, health_check_interval=10,
                retry=Retry(NoBackoff(), 0))


SENTINEL_OPTIONS: dict[str, Any] = dict(socket_connect_timeout=1, socket_timeout=1)
# how long an instance started with its sentinels (or cluster nodes) waits for them
SENTINEL_START_WAIT_S = 10.0


class NobodyAnswers(ConfigError):
    """No sentinel of BB_REDIS_SENTINELS answers, or no node of BB_REDIS_CLUSTER."""


@dataclasses.dataclass
class RedisConnection:
    commands: aioredis.Redis  # a RedisCluster in cluster mode (it routes by key)
    nodes: RedisNodes
    # True with Sentinel and Cluster: a change is acknowledged once a replica confirms it
    replicated: bool
    described: str  # for the log: where the inventory lives
    sentinel: Sentinel | None = None
    service: str = ""
    cluster: RedisCluster | None = None
    primary: str = ""  # the primary's address as last asked (refresh_primary)

    @property
    def mode(self) -> str:
        if self.cluster is not None:
            return "cluster"
        return "sentinel" if self.sentinel is not None else "single"

    async def check(self, wait_s: float = SENTINEL_START_WAIT_S) -> None:
        """At start: the setting leads somewhere. Raises ConfigError naming it, after
        waiting up to wait_s for sentinels or nodes that do not answer yet (started
        together)."""
        if self.sentinel is None and self.cluster is None:
            return
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                return await self._check_once()
            except NobodyAnswers:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _check_once(self) -> None:
        if self.cluster is not None:
            return await self._check_cluster()
        assert self.sentinel is not None
        answered = []
        for sentinel in self.sentinel.sentinels:
            try:
                await sentinel.ping()
            except RedisError:
                continue
            answered.append(sentinel)
            try:
                await sentinel.sentinel_master(self.service)
                return
            except RedisError:
                pass
        where = ", ".join(_address(s) for s in self.sentinel.sentinels)
        if not answered:
            raise NobodyAnswers(f"BB_REDIS_SENTINELS: no sentinel answers at {where} (or the "
                              "password, BB_REDIS_PASSWORD, is not theirs)")
        raise ConfigError(f"BB_REDIS_SERVICE={self.service}: no sentinel at {where} knows a "
                          "primary by that name")

    async def _check_cluster(self) -> None:
        assert self.cluster is not None
        where = ", ".join(node.name for node in self.cluster.nodes_manager.startup_nodes.values())
        try:
            await self.cluster.initialize()
        except RedisClusterException as exc:
            if "not enabled" in str(exc):
                raise ConfigError(f"BB_REDIS_CLUSTER: {where} is a Redis without cluster mode "
                                  "(use BB_REDIS_URL for one Redis)") from None
            raise NobodyAnswers(f"BB_REDIS_CLUSTER: no cluster node answers at {where} "
                                  f"({exc}; or the password, BB_REDIS_PASSWORD, is not "
                                  "theirs)") from None
        except (RedisError, OSError) as exc:
            raise NobodyAnswers(f"BB_REDIS_CLUSTER: no cluster node answers at {where} "
                                  f"({type(exc).__name__}: {exc})") from None

    async def refresh_primary(self) -> str:
        """Ask which node is the primary now (the sentinels, in Sentinel mode; every
        shard's, comma-separated, on a cluster)."""
        if self.cluster is not None:
            self.primary = ",".join(self.nodes.primaries())
        elif self.sentinel is None:
            self.primary = self.described
        else:
            host, port = await self.sentinel.discover_master(self.service)
            self.primary = f"{host}:{port}"
        return self.primary

    async def topology(self) -> dict[str, Any]:
        """The primary in use, its replicas and how far behind each is; on a cluster, the
        same for every shard with its slot ranges."""
        if self.cluster is not None:
            return {"mode": "cluster", "primary": await self.refresh_primary(),
                    "shards": await self._shards()}
        info = await self.commands.info("replication")
        return {"mode": self.mode, "primary": await self.refresh_primary(),
                "role": info.get("role"), "replicas": _replicas(info)}

    async def _shards(self) -> list[dict[str, Any]]:
        assert self.cluster is not None
        await self.nodes.refresh()
        owners: dict[str, list[int]] = {}
        for slot, nodes in self.cluster.nodes_manager.slots_cache.items():
            if nodes:
                owners.setdefault(nodes[0].name, []).append(slot)
        shards = []
        for primary in self.nodes.primaries():
            info = await self.nodes.client(primary).info("replication")
            shards.append({"primary": primary, "role": info.get("role"),
                           "slots": slot_ranges(owners.get(primary, [])),
                           "replicas": _replicas(info)})
        return shards

    async def aclose(self) -> None:
        await self.nodes.aclose()
        await self.commands.aclose()


def _replicas(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The replicas INFO replication lists, with how far behind each is."""
    return [
            {"address": f"{value['ip']}:{value['port']}", "state": value.get("state"),
             "offset": int(value.get("offset", 0)), "lag_s": int(value.get("lag", 0)),
             "behind_bytes": int(info.get("master_repl_offset", 0)) - int(value.get("offset", 0))}
            for key, value in sorted(info.items())
            if key.startswith("slave") and isinstance(value, dict)]


def slot_ranges(slots: list[int]) -> list[list[int]]:
    """[[first, last], ...] of consecutive slots."""
    ranges: list[list[int]] = []
    for slot in sorted(slots):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1][1] = slot
        else:
            ranges.append([slot, slot])
    return ranges


def _address(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def described(config: Config) -> str:
    """Where the inventory lives, for logs and messages (never a password)."""
    if config.redis_cluster:
        return "the Redis Cluster of " + ",".join(f"{h}:{p}" for h, p in config.redis_cluster)
    if not config.redis_sentinels:
        return config.redis_url
    where = ",".join(f"{host}:{port}" for host, port in config.redis_sentinels)
    return f"the primary '{config.redis_service}' of sentinels {where}"


def connect(config: Config) -> RedisConnection:
    """The clients for the mode the settings select."""
    password = config.redis_password or None
    if config.redis_cluster:
        # a shard whose primary failed leaves its slots uncovered until the promotion: the
        # others go on serving (require_full_coverage=False, here and on the nodes)
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in config.redis_cluster],
            password=password, require_full_coverage=False, **command_options(config))
        nodes = ClusterNodes(cluster, dict(password=password, **command_options(config)),
                             dict(password=password, **pubsub_options()))
        return RedisConnection(commands=cluster, nodes=nodes,  # type: ignore[arg-type]
                               replicated=True, described=described(config), cluster=cluster)
    if not config.redis_sentinels:
        commands = aioredis.Redis.from_url(config.redis_url, password=password,
                                           **command_options(config))
        return RedisConnection(
            commands=commands,
            nodes=RedisNodes(commands, aioredis.Redis.from_url(
                config.redis_url, password=password, **pubsub_options())),
            replicated=False, described=described(config))
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        list(config.redis_sentinels), password=password,
        sentinel_kwargs={"password": password, **SENTINEL_OPTIONS})
    commands = sentinel.master_for(config.redis_service, **command_options(config))
    return RedisConnection(
        commands=commands,
        nodes=RedisNodes(commands, sentinel.master_for(config.redis_service,
                                                       **pubsub_options())),
        replicated=True, described=described(config),
        sentinel=sentinel, service=config.redis_service)
