"""A real Redis Cluster for tests: N shards of a primary and a replica, redis-server
processes on free ports with a password, configured and created as `up --redis-cluster`
does it (service/ops/redis_cluster.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis as redis_sync
from redis.cluster import ClusterNode, RedisCluster

from service import redis_keys
from service.ops import procs
from service.ops.cluster_slots import shards
from service.ops.launch import free_run
from service.ops.layout import CLUSTER_BUS_OFFSET
from service.ops.redis_cluster import create, node_conf
from service.ops.secrets import ensure_secrets
from support.redis_ha import wait_true


class LocalRedisCluster:
    """Shards in `folder`; stop() kills every node by PID."""

    def __init__(self, folder: Path, shards: int = 3, node_timeout_ms: int = 2000):
        self.folder = folder
        self.node_timeout_ms = node_timeout_ms
        # a checked run (and its bus ports) below the kernel's range for outgoing
        # connections, as in support/redis_ha.py
        first = free_run(2 * shards, also_free_above=CLUSTER_BUS_OFFSET)
        self.primary_ports = [first + i for i in range(shards)]
        self.replica_ports = [first + shards + i for i in range(shards)]
        self.password = ""
        self.procs: dict[int, subprocess.Popen] = {}
        self.conf = folder / "node.conf"

    @property
    def ports(self) -> list[int]:
        return [*self.primary_ports, *self.replica_ports]

    def start(self) -> LocalRedisCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        ensure_secrets(self.folder, {}, say=lambda _: None)
        self.password = (self.folder / "redis_password").read_text().strip()
        self.conf.write_text(node_conf(self.folder / "redis-auth.conf", self.node_timeout_ms))
        for port in self.ports:
            self.start_node(port)
        create([("127.0.0.1", p) for p in self.primary_ports],
               [("127.0.0.1", p) for p in self.replica_ports], self.password, out=lambda _: None)
        return self

    def start_node(self, port: int) -> None:
        """Start (or start again) the node on `port`; it keeps its data and cluster view."""
        self.procs[port] = procs.start_redis(port, self.folder / f"node-{port}",
                                             self.log(port), self.conf, self.password)

    def log(self, port: int) -> Path:
        return self.folder / f"node-{port}.log"

    @property
    def seeds(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def env(self) -> dict[str, str]:
        """What an instance needs to use the cluster."""
        return {"BB_REDIS_CLUSTER": self.seeds,
                "BB_REDIS_PASSWORD_FILE": str(self.folder / "redis_password")}

    def client(self) -> RedisCluster:
        """A cluster client (routes by key, like the app's)."""
        alive = [p for p in self.ports if self.procs[p].poll() is None]
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in alive],
                            password=self.password, socket_timeout=5,
                            require_full_coverage=False)

    def node(self, port: int) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=port, password=self.password,
                                socket_timeout=5, decode_responses=True)

    def shards(self, books: list[str] = ()) -> list:
        alive = next(p for p in self.ports if self.procs[p].poll() is None)
        return shards(("127.0.0.1", alive), self.password, books)

    def primary_of(self, sku: str) -> int:
        """The port of the primary that serves the book's slot now."""
        slot = self.node(self.ports[0]).execute_command(
            "CLUSTER", "KEYSLOT", redis_keys.stock_key(sku))
        for shard in self.shards():
            if any(a <= slot <= b for a, b in shard.slots):
                return int(shard.primary.rsplit(":", 1)[1])
        raise AssertionError(f"no shard serves slot {slot}")

    def replica_of(self, primary: int) -> int:
        info = self.node(primary).info("replication")
        return int(info["slave0"]["port"])

    def kill(self, port: int) -> None:
        """kill -9 (by its PID)."""
        self.procs[port].kill()
        self.procs[port].wait()

    wait = staticmethod(wait_true)

    def stop(self) -> None:
        """kill -9 every node (by PID): a test's data need not be saved."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
