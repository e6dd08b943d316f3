"""Redis with Sentinel on one machine: what every data node and sentinel is started with.

A primary and its replicas run the project's config (AOF, fsync always) plus the auth
file (`requirepass` and `masterauth`, service/ops/secrets.py) and `min-replicas-to-write
1` with a small `min-replicas-max-lag`: a primary that cannot reach any replica refuses
writes (so the old primary of a split takes none that would be lost), and a replica
carries the same settings for the day it is promoted. Three sentinels, quorum two, watch
the primary under one name (BB_REDIS_SERVICE, default `bb`), with the same password.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from service.ops.errors import OpsError
from service.ops.files import write_whole
from service.ops.layout import Layout
from service.ops.procs import REDIS_CONF
from service.ops.secrets import REDIS_AUTH_CONF

MIN_REPLICAS_TO_WRITE = 1
# a replica acknowledges every second; one silent for longer than this does not count
MIN_REPLICAS_MAX_LAG_S = 3
QUORUM = 2
# How long a silent primary is given on the local cluster. Twice Sentinel's ping period
# (1 s): at 1000 ms a sentinel whose link to a just-promoted primary had not had its first
# reply yet called it down and a second failover followed (seen in CI: the shop went 16 s
# without a confirmed write instead of 2).
LOCAL_DOWN_AFTER_MS = 2000
# where the compose file's Redis containers find the project's config, and their port
COMPOSE_REDIS_CONF = Path("/usr/local/etc/redis/redis.conf")
COMPOSE_REDIS_PORT = 6379


def data_node_conf(auth_conf: Path, replica_of: int | None = None, *,
                   primary_host: str = "127.0.0.1", redis_conf: Path = REDIS_CONF) -> str:
    """A primary's or replica's own config file: the project's config and the auth file
    included, then what Sentinel mode adds. Each node needs a file of its own, which it
    may rewrite: a sentinel that reconfigures a node has it save its new role there."""
    lines = ["# written by service/ops/redis_ha.py; Redis rewrites it when Sentinel "
             "reconfigures the node",
             f"include {redis_conf}",
             f"include {auth_conf}",
             f"min-replicas-to-write {MIN_REPLICAS_TO_WRITE}",
             f"min-replicas-max-lag {MIN_REPLICAS_MAX_LAG_S}"]
    if replica_of is not None:
        lines.append(f"replicaof {primary_host} {replica_of}")
    return "\n".join(lines) + "\n"


def sentinel_conf(primary_port: int, service: str, password: str, folder: Path,
                  down_after_ms: int = LOCAL_DOWN_AFTER_MS, failover_timeout_ms: int = 10_000, *,
                  primary_host: str = "127.0.0.1", local: bool = True) -> str:
    """A sentinel's config file (the sentinel rewrites it as it learns the topology).
    A `local` sentinel listens on 127.0.0.1 only; a container's on its every address."""
    return "\n".join([
        "# written by service/ops/redis_ha.py; the sentinel rewrites it as it learns",
        *(["bind 127.0.0.1"] if local else []),
        f"dir {folder}",
        f"sentinel monitor {service} {primary_host} {primary_port} {QUORUM}",
        f"sentinel auth-pass {service} {password}",
        f"sentinel down-after-milliseconds {service} {down_after_ms}",
        f"sentinel failover-timeout {service} {failover_timeout_ms}",
        f"sentinel parallel-syncs {service} 1",
        # clients and the other sentinels give the same password
        f"requirepass {password}",
        "",
    ])


def compose_files(secrets: Path, nodes: Path, primary: str, service: str,
                  down_after_ms: int, out: Callable[[str], None] = print) -> None:
    """The Sentinel topology's config files for compose (docker-compose.sentinel.yml):
    NODES/<name>/node.conf for `redis` (the first primary, at address `primary`),
    `redis-2` and `redis-3`, and NODES/<name>/sentinel.conf for `sentinel-1..3` (each
    folder the volume its service mounts at /data). The nodes have fixed addresses: a
    sentinel resolves a host name with a blocking lookup, and the name of a dead
    container does not resolve, so names would stall the sentinels just when they are
    needed. A file that exists is kept: the nodes and sentinels rewrite theirs as roles
    change, and a restart must not undo a failover."""
    password = (secrets / "redis_password").read_text().strip()
    auth = secrets / REDIS_AUTH_CONF
    files = {"redis/node.conf": data_node_conf(auth, redis_conf=COMPOSE_REDIS_CONF)}
    for name in ("redis-2", "redis-3"):
        files[f"{name}/node.conf"] = data_node_conf(
            auth, COMPOSE_REDIS_PORT, primary_host=primary, redis_conf=COMPOSE_REDIS_CONF)
    for number in (1, 2, 3):
        files[f"sentinel-{number}/sentinel.conf"] = sentinel_conf(
            COMPOSE_REDIS_PORT, service, password, Path("/data"), down_after_ms,
            primary_host=primary, local=False)
    for relative, text in files.items():
        path = nodes / relative
        if path.exists():
            out(f"kept {path} (as the node or sentinel last rewrote it)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, text, 0o600)
        out(f"wrote {path}")


def redis_settings(layout: Layout) -> dict[str, str]:
    """The BB_REDIS_* settings that reach the local cluster's Redis: its URL, its
    sentinels (redis_ha) or its cluster nodes (redis_shards); and the file `up` keeps its
    password in."""
    if layout.redis_shards:
        where = {"BB_REDIS_CLUSTER": ",".join(f"127.0.0.1:{port}"
                                              for port in layout.redis_nodes.values())}
    elif layout.redis_ha:
        where = {"BB_REDIS_SENTINELS": ",".join(
            f"127.0.0.1:{port}" for name, port in layout.redis_nodes.items()
            if name.startswith("sentinel-"))}
    else:
        where = {"BB_REDIS_URL": f"redis://127.0.0.1:{layout.redis_port}/0"}
    return {**where, "BB_REDIS_PASSWORD_FILE": str(layout.redis_password_file)}


def redis_programs(layout: Layout, fill: Callable[..., str], redis_server: str) -> str:
    """supervisord's [program:…] sections for Redis, and (with redis_ha) each node's and
    sentinel's own config file, written once: they rewrite them as roles change, so a
    restarted `up` keeps what Sentinel has learnt (which node is the primary now)."""
    var = layout.var_dir
    auth = var / REDIS_AUTH_CONF
    if not layout.redis_ha:
        return fill(name="redis", priority=10, what="the inventory's one Redis",
                    command=f"{redis_server} {REDIS_CONF} --include {auth} "
                            f"--port {layout.redis_port} --dir {var / 'redis'}")
    folder = var / "redis-ha"
    folder.mkdir(parents=True, exist_ok=True)
    password = (var / "redis_password").read_text().strip()
    sections = []
    for name, port in layout.redis_nodes.items():
        conf = folder / f"{name}.conf"
        if name.startswith("sentinel-"):
            if not conf.exists():
                write_whole(conf, sentinel_conf(layout.redis_port, "bb", password, folder),
                            0o600)
            sections.append(fill(name=name, priority=12, what="a sentinel (quorum 2 of 3)",
                                 command=f"{redis_server} {conf} --sentinel --port {port}"))
            continue
        data = folder / name
        data.mkdir(exist_ok=True)
        if not conf.exists():
            primary = None if port == layout.redis_port else layout.redis_port
            write_whole(conf, data_node_conf(auth, replica_of=primary), 0o600)
        sections.append(fill(name=name, priority=10, what="a data node: the primary or a "
                             "replica, as Sentinel decides (`ctl status` shows which)",
                             command=f"{redis_server} {conf} --port {port} --dir {data}"))
    return "".join(sections)


def _client(layout: Layout, port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=layout.redis_password(),
                       socket_timeout=2, socket_connect_timeout=1, decode_responses=True)


def role(layout: Layout, name: str) -> str:
    """`primary`, `replica`, `sentinel`, or `-` when it does not answer."""
    if name.startswith("sentinel-"):
        return "sentinel"
    try:
        with _client(layout, layout.redis_nodes[name]) as client:
            answer = client.info("replication")["role"]
    except (redis.RedisError, OSError):
        return "-"
    return "primary" if answer == "master" else "replica"


def primary_named(layout: Layout) -> int | None:
    """The primary's port as the first sentinel that answers names it."""
    for name, port in layout.redis_nodes.items():
        if not name.startswith("sentinel-"):
            continue
        try:
            with _client(layout, port) as sentinel:
                return int(sentinel.sentinel_get_master_addr_by_name("bb")[1])
        except (redis.RedisError, OSError, TypeError):
            continue
    return None


def primary_port(layout: Layout) -> int:
    """The port of the Redis that takes writes now: the one Redis, or the primary the
    sentinels name (OpsError when none answers)."""
    if not layout.redis_ha:
        return layout.redis_port
    port = primary_named(layout)
    if port is None:
        raise OpsError("no sentinel answers: see `ctl status` and var/log/sentinel-*.log")
    return port


def data_nodes(layout: Layout) -> dict[str, int]:
    """The Redis processes that hold data (not the sentinels) -> port."""
    return {name: port for name, port in layout.redis_nodes.items()
            if not name.startswith("sentinel-")}


def replication_problem(layout: Layout) -> str | None:
    """None when the sentinels' primary takes writes and every other data node is its
    replica with the link up; else what is not so."""
    try:
        primary = primary_port(layout)
        with _client(layout, primary) as client:
            info = client.info("replication")
    except (OpsError, redis.RedisError, OSError) as exc:
        return f"the primary does not answer ({exc})"
    if info["role"] != "master":
        return f"port {primary}, named primary by the sentinels, is a {info['role']}"
    online = {info[f"slave{i}"]["port"] for i in range(int(info["connected_slaves"]))
              if info[f"slave{i}"]["state"] == "online"}
    missing = [name for name, port in data_nodes(layout).items()
               if port != primary and port not in online]
    return f"not replicating from port {primary}: {', '.join(missing)}" if missing else None


def failover(layout: Layout, timeout_s: float = 30) -> str:
    """A planned failover: the sentinels promote a replica; returns the new primary's name."""
    if not layout.redis_ha:
        raise OpsError("`ctl failover` needs a cluster started with `up --redis-ha`")
    before = primary_named(layout)
    if before is None:
        raise OpsError("no sentinel answers: see `ctl status` and var/log/sentinel-*.log")
    sentinel = next(port for name, port in layout.redis_nodes.items()
                    if name.startswith("sentinel-"))
    deadline = time.monotonic() + timeout_s
    with _client(layout, sentinel) as client:
        while True:
            try:
                client.execute_command("SENTINEL", "FAILOVER", "bb")
                break
            except redis.RedisError as exc:
                # NOGOODSLAVE: the sentinels have not seen a replica answer them yet
                # (they ask every 10 s at first, every second once they know it)
                if "NOGOODSLAVE" not in str(exc) or time.monotonic() > deadline:
                    raise OpsError(f"the sentinels refused the failover: {exc}") from None
                time.sleep(0.5)
    names = {port: name for name, port in layout.redis_nodes.items()}
    while time.monotonic() < deadline:
        now = primary_named(layout)
        if now not in (None, before) and role(layout, names[now]) == "primary":
            return names[now]
        time.sleep(0.2)
    raise OpsError(f"no replica was promoted within {timeout_s:.0f}s; see "
                   f"{layout.logs}/sentinel-*.log")
