"""Redis with Sentinel on one machine: what every data node and sentinel is started with.

A primary and its replicas run the project's config (AOF, fsync always) plus the auth
file (`requirepass` and `masterauth`, service/ops/secrets.py) and `min-replicas-to-write
1` with a small `min-replicas-max-lag`: a primary that cannot reach any replica refuses
writes (so the old primary of a split takes none that would be lost), and a replica
carries the same settings for the day it is promoted. Three sentinels, quorum two, watch
the primary under one name (BB_REDIS_SERVICE, default `bb`), with the same password.
"""

from __future__ import annotations

from pathlib import Path

from service.ops.procs import REDIS_CONF

MIN_REPLICAS_TO_WRITE = 1
# a replica acknowledges every second; one silent for longer than this does not count
MIN_REPLICAS_MAX_LAG_S = 3
QUORUM = 2


def data_node_conf(auth_conf: Path, replica_of: int | None = None) -> str:
    """A primary's or replica's own config file: the project's config and the auth file
    included, then what Sentinel mode adds. Each node needs a file of its own, which it
    may rewrite: a sentinel that reconfigures a node has it save its new role there."""
    lines = ["# written by service/ops/redis_ha.py; Redis rewrites it when Sentinel "
             "reconfigures the node",
             f"include {REDIS_CONF}",
             f"include {auth_conf}",
             f"min-replicas-to-write {MIN_REPLICAS_TO_WRITE}",
             f"min-replicas-max-lag {MIN_REPLICAS_MAX_LAG_S}"]
    if replica_of is not None:
        lines.append(f"replicaof 127.0.0.1 {replica_of}")
    return "\n".join(lines) + "\n"


def sentinel_conf(primary_port: int, service: str, password: str, folder: Path,
                  down_after_ms: int = 1000, failover_timeout_ms: int = 10_000) -> str:
    """A sentinel's config file (the sentinel rewrites it as it learns the topology)."""
    return "\n".join([
        "# written by service/ops/redis_ha.py; the sentinel rewrites it as it learns",
        "bind 127.0.0.1",
        f"dir {folder}",
        f"sentinel monitor {service} 127.0.0.1 {primary_port} {QUORUM}",
        f"sentinel auth-pass {service} {password}",
        f"sentinel down-after-milliseconds {service} {down_after_ms}",
        f"sentinel failover-timeout {service} {failover_timeout_ms}",
        f"sentinel parallel-syncs {service} 1",
        # clients and the other sentinels give the same password
        f"requirepass {password}",
        "",
    ])
