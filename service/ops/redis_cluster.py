"""Redis Cluster on one machine: what every node is started with, how the cluster is
created, and what `ctl status` shows of it.

Each shard is a primary and one replica. Every node runs the project's config (AOF,
fsync always) and the auth file (`requirepass` and `masterauth`), plus:
- `cluster-require-full-coverage no`: while one shard's primary fails over, the books of
  the other shards go on selling (the default stops the whole cluster);
- `min-replicas-to-write 1`: a primary without a replica refuses writes instead of taking
  changes no replica will confirm (as with Sentinel, service/ops/redis_ha.py). So a shard
  whose primary failed is writable again once a replica has rejoined the promoted one;
- `cluster-node-timeout`: how long a primary may be silent before its replica takes over.

The cluster is created here rather than by `redis-cli --cluster create` so that the
replica of shard N is the node the layout names `redis-N-replica` (redis-cli pairs them as
it likes): slots are split evenly over the primaries (CLUSTER ADDSLOTSRANGE), every node
meets the first, and each replica replicates its primary (CLUSTER REPLICATE).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from service.ops.errors import OpsError
from service.ops.files import write_whole
from service.ops.layout import CLUSTER_BUS_OFFSET, Layout
from service.ops.probes import free_port, port_is_free
from service.ops.procs import REDIS_CONF
from service.ops.redis_ha import MIN_REPLICAS_MAX_LAG_S, MIN_REPLICAS_TO_WRITE
from service.ops.secrets import REDIS_AUTH_CONF

SLOTS = 16384
# a primary silent this long is failed over by its replica (Redis's default is 15 s)
NODE_TIMEOUT_MS = 2000
CREATE_TIMEOUT_S = 30.0

Address = tuple[str, int]


def node_conf(auth_conf: Path, node_timeout_ms: int = NODE_TIMEOUT_MS, *,
              redis_conf: Path = REDIS_CONF) -> str:
    """A cluster node's config file; the node keeps its view of the cluster in
    nodes.conf beside its data (it rewrites that file itself)."""
    return "\n".join([
        "# written by service/ops/redis_cluster.py",
        f"include {redis_conf}",
        f"include {auth_conf}",
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {node_timeout_ms}",
        "cluster-require-full-coverage no",
        f"min-replicas-to-write {MIN_REPLICAS_TO_WRITE}",
        f"min-replicas-max-lag {MIN_REPLICAS_MAX_LAG_S}",
        "",
    ])


def cluster_programs(layout: Layout, fill: Callable[..., str], redis_server: str) -> str:
    """supervisord's [program:…] sections of the cluster's nodes, each with its own
    config file and data folder (where it keeps nodes.conf)."""
    folder = layout.var_dir / "redis-cluster"
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "node.conf"
    write_whole(conf, node_conf(layout.var_dir / REDIS_AUTH_CONF), 0o600)
    sections = []
    for name, port in layout.redis_nodes.items():
        data = folder / name
        data.mkdir(exist_ok=True)
        shard = name.split("-")[1]
        sections.append(fill(name=name, priority=10,
                             what=f"a node of shard {shard}: its primary or its replica, as "
                                  "the cluster decides (`ctl status` shows which)",
                             command=f"{redis_server} {conf} --port {port} --dir {data}"))
    return "".join(sections)


def create_local(layout: Layout, out: Callable[[str], None] = print) -> bool:
    """Create the local cluster of `up --redis-cluster` once its nodes answer (or find
    it created, as after a restart)."""
    nodes = [("127.0.0.1", port) for port in layout.redis_nodes.values()]
    return create(nodes[0::2], nodes[1::2], layout.redis_password(), out)


def free_node_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535 and port_is_free(port + CLUSTER_BUS_OFFSET):
            return port


def slot_split(shards: int) -> list[tuple[int, int]]:
    """Shard i's first and last slot: the 16384 slots in `shards` even ranges."""
    edges = [SLOTS * i // shards for i in range(shards + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(shards)]


def node_client(address: Address, password: str | None) -> redis.Redis:
    return redis.Redis(host=address[0], port=address[1], password=password,
                       socket_timeout=5, socket_connect_timeout=2, decode_responses=True)


def create(primaries: Sequence[Address], replicas: Sequence[Address], password: str | None,
           out: Callable[[str], None] = print, timeout_s: float = CREATE_TIMEOUT_S) -> bool:
    """Make the nodes one cluster: primaries[i] serves the i-th slot range and
    replicas[i] replicates it. False (and nothing changed) when they already form one,
    as after a restart; OpsError when they are neither empty nodes nor that cluster."""
    if len(primaries) != len(replicas) or not primaries:
        raise OpsError("a cluster needs one replica per primary, and at least one primary")
    nodes = [*primaries, *replicas]
    deadline = time.monotonic() + timeout_s
    clients = [node_client(address, password) for address in nodes]
    try:
        _wait(lambda: all(_answers(client) for client in clients), deadline,
              "every node answers")
        known = [int(client.info("cluster").get("cluster_enabled", 0)) for client in clients]
        if not all(known):
            bad = [f"{h}:{p}" for (h, p), on in zip(nodes, known) if not on]
            raise OpsError(f"not started with cluster-enabled yes: {', '.join(bad)}")
        if cluster_info(clients[0])["cluster_state"] == "ok":
            out("the Redis Cluster exists already")
            return False
        if any(_slots_assigned(client) for client in clients):
            raise OpsError("the nodes hold slots but form no working cluster: repair it with "
                           "`redis-cli --cluster fix`, or start from empty nodes")
        for client, (first, last) in zip(clients, slot_split(len(primaries))):
            command(client, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for epoch, client in enumerate(clients[:len(primaries)], start=1):
            command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for host, port in nodes[1:]:
            command(clients[0], "CLUSTER", "MEET", host, port)
        _wait(lambda: all(len(_node_lines(client)) == len(nodes) for client in clients),
              deadline, "every node knows every other")
        for replica, primary in zip(clients[len(primaries):], clients):
            primary_id = command(primary, "CLUSTER", "MYID")
            # the replica may not have heard of its primary yet: ask until it has
            _wait(functools.partial(_replicate, replica, primary_id), deadline,
                  "each replica follows its primary")
        _wait(lambda: all(cluster_info(c)["cluster_state"] == "ok" for c in clients),
              deadline, "the cluster state is ok on every node")
        # min-replicas-to-write: a primary takes writes once its replica is online
        _wait(lambda: all(_replica_online(c) for c in clients[:len(primaries)]), deadline,
              "every primary has its replica online")
        out(f"created a Redis Cluster of {len(primaries)} shard(s), each a primary and a "
            "replica")
        return True
    finally:
        for client in clients:
            client.close()


def command(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _slots_assigned(client: redis.Redis) -> int:
    return int(cluster_info(client)["cluster_slots_assigned"])


def cluster_info(client: redis.Redis) -> dict[str, str]:
    text = str(command(client, "CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


def _replica_online(primary: redis.Redis) -> bool:
    info = primary.info("replication")
    return any(isinstance(value, dict) and value.get("state") == "online"
               for key, value in info.items() if key.startswith("slave"))


def _node_lines(client: redis.Redis) -> list[str]:
    text = command(client, "CLUSTER", "NODES")
    return [line for line in str(text).splitlines() if line and "handshake" not in line]


def _replicate(replica: redis.Redis, primary_id: str) -> bool:
    try:
        command(replica, "CLUSTER", "REPLICATE", primary_id)
        return True
    except redis.ResponseError as exc:
        if "Unknown node" in str(exc):
            return False
        raise


def _wait(done: Callable[[], bool], deadline: float, what: str) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise OpsError(f"creating the Redis Cluster: gave up waiting until {what}")
        time.sleep(0.1)
