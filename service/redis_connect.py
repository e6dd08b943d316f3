"""How an instance reaches Redis, in one place: one Redis (BB_REDIS_URL), or the primary
that a set of Sentinels names (BB_REDIS_SENTINELS, BB_REDIS_SERVICE). Everything else
sees only a `RedisConnection`: a commands client, a pub/sub client, whether changes are
replicated (then a cart change is acknowledged only once a replica has it: the store
WAITs), and what the topology is (for the admin page, /metrics and `stock show`).

Sentinel mode uses redis-py's own Sentinel support: each new connection asks the
sentinels for the current primary, and a connection that finds its node demoted
(READONLY) is dropped, so the next attempt reaches the promoted one. The Redis password
(BB_REDIS_PASSWORD) is the data nodes' and the sentinels' alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from service.config import Config, ConfigError


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
# how long an instance started with its sentinels waits for one to answer
SENTINEL_START_WAIT_S = 10.0


class SentinelsSilent(ConfigError):
    """No sentinel of BB_REDIS_SENTINELS answers."""


@dataclasses.dataclass
class RedisConnection:
    commands: aioredis.Redis
    pubsub: aioredis.Redis
    # True with Sentinel: a cart change is acknowledged once a replica confirms it
    replicated: bool
    described: str  # for the log: where the inventory lives
    sentinel: Sentinel | None = None
    service: str = ""
    primary: str = ""  # the primary's address as last asked (refresh_primary)

    async def check(self, wait_s: float = SENTINEL_START_WAIT_S) -> None:
        """At start: the setting leads somewhere. Raises ConfigError naming it, after
        waiting up to wait_s for sentinels that do not answer yet (started together)."""
        if self.sentinel is None:
            return
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                return await self._check_once()
            except SentinelsSilent:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _check_once(self) -> None:
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
            raise SentinelsSilent(f"BB_REDIS_SENTINELS: no sentinel answers at {where} (or the "
                              "password, BB_REDIS_PASSWORD, is not theirs)")
        raise ConfigError(f"BB_REDIS_SERVICE={self.service}: no sentinel at {where} knows a "
                          "primary by that name")

    async def refresh_primary(self) -> str:
        """Ask which node is the primary now (the sentinels, in Sentinel mode)."""
        if self.sentinel is None:
            self.primary = self.described
        else:
            host, port = await self.sentinel.discover_master(self.service)
            self.primary = f"{host}:{port}"
        return self.primary

    async def topology(self) -> dict[str, Any]:
        """The primary in use, its replicas and how far behind each is."""
        info = await self.commands.info("replication")
        replicas = [
            {"address": f"{value['ip']}:{value['port']}", "state": value.get("state"),
             "offset": int(value.get("offset", 0)), "lag_s": int(value.get("lag", 0)),
             "behind_bytes": int(info.get("master_repl_offset", 0)) - int(value.get("offset", 0))}
            for key, value in sorted(info.items())
            if key.startswith("slave") and isinstance(value, dict)]
        return {"mode": "sentinel" if self.replicated else "single",
                "primary": await self.refresh_primary(),
                "role": info.get("role"), "replicas": replicas}

    async def aclose(self) -> None:
        await self.commands.aclose()
        await self.pubsub.aclose()


def _address(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def described(config: Config) -> str:
    """Where the inventory lives, for logs and messages (never a password)."""
    if not config.redis_sentinels:
        return config.redis_url
    where = ",".join(f"{host}:{port}" for host, port in config.redis_sentinels)
    return f"the primary '{config.redis_service}' of sentinels {where}"


def connect(config: Config) -> RedisConnection:
    """The clients for the mode the settings select."""
    password = config.redis_password or None
    if not config.redis_sentinels:
        return RedisConnection(
            commands=aioredis.Redis.from_url(config.redis_url, password=password,
                                             **command_options(config)),
            pubsub=aioredis.Redis.from_url(config.redis_url, password=password,
                                           **pubsub_options()),
            replicated=False, described=described(config))
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        list(config.redis_sentinels), password=password,
        sentinel_kwargs={"password": password, **SENTINEL_OPTIONS})
    return RedisConnection(
        commands=sentinel.master_for(config.redis_service, **command_options(config)),
        pubsub=sentinel.master_for(config.redis_service, **pubsub_options()),
        replicated=True, described=described(config),
        sentinel=sentinel, service=config.redis_service)
