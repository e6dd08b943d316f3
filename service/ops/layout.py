"""The local cluster's layout: where every process listens and where its files go."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from service.ops.errors import OpsError
from service.paths import DEFAULT_VAR_DIR

MAX_INSTANCES = 32
MAX_REDIS_SHARDS = 8
# a cluster node's bus (node-to-node) port is its port plus this
CLUSTER_BUS_OFFSET = 10000


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where every process of the local cluster listens, and where its files go."""
    instances: int = 3
    http_port: int = 8000
    first_app_port: int = 8001
    redis_port: int = 6390
    upstream_port: int = 9000
    upstream_latency_ms: int = 300
    drain_s: float = 10.0
    var_dir: Path = DEFAULT_VAR_DIR
    # the catalog file every instance gets as BB_CATALOG; None: the built-in catalog
    catalog: Path | None = None
    # `up --redis-ha`: a primary and two replicas on redis_port and the next two ports, and
    # three sentinels on the three after (service/ops/redis_ha.py)
    redis_ha: bool = False
    # `up --redis-cluster`: this many shards, each a primary and a replica (redis-N on
    # redis_port + 2(N-1), redis-N-replica on the port after; service/ops/redis_cluster.py)
    redis_shards: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.instances <= MAX_INSTANCES:
            raise OpsError(f"--instances must be between 1 and {MAX_INSTANCES}")
        if not 0 <= self.redis_shards <= MAX_REDIS_SHARDS:
            raise OpsError(f"--redis-shards must be between 1 and {MAX_REDIS_SHARDS}")
        if self.redis_shards and self.redis_ha:
            raise OpsError("--redis-ha and --redis-cluster exclude each other: a Redis Cluster "
                           "fails over by itself")
        ports = self.all_ports()
        if len(set(ports.values())) != len(ports):
            raise OpsError(f"the cluster's ports overlap: {ports}; choose other ports")
        bad = {name: port for name, port in ports.items() if not 1 <= port <= 65535}
        if bad:
            raise OpsError(f"ports out of range: {bad}")

    @property
    def apps(self) -> dict[str, int]:
        """Instance name -> port: app-1 on first_app_port, app-2 on the next, …"""
        return {f"app-{i + 1}": self.first_app_port + i for i in range(self.instances)}

    @property
    def redis_nodes(self) -> dict[str, int]:
        """Redis's processes -> port: `redis`, with redis_ha its replicas and sentinels, or
        a cluster's primaries and replicas."""
        if self.redis_shards:
            return {f"redis-{shard}{role}": self.redis_port + 2 * (shard - 1) + offset
                    for shard in range(1, self.redis_shards + 1)
                    for offset, role in enumerate(("", "-replica"))}
        if not self.redis_ha:
            return {"redis": self.redis_port}
        names = ["redis", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3"]
        return {name: self.redis_port + offset for offset, name in enumerate(names)}

    @property
    def redis_mode(self) -> str:
        """"single", "sentinel" or "cluster"."""
        if self.redis_shards:
            return "cluster"
        return "sentinel" if self.redis_ha else "single"

    def all_ports(self) -> dict[str, int]:
        bus = {f"{name} (cluster bus)": port + CLUSTER_BUS_OFFSET
               for name, port in self.redis_nodes.items()} if self.redis_shards else {}
        return {"nginx": self.http_port, **self.redis_nodes, **bus,
                "upstream-sim": self.upstream_port, **self.apps}

    @property
    def redis_password_file(self) -> Path:
        """The local Redis's password, made by `up` (service/ops/secrets.py)."""
        return self.var_dir / "redis_password"

    def redis_password(self) -> str | None:
        """That password, or None for a var/ from before `up` made one."""
        path = self.redis_password_file
        return path.read_text().strip() if path.exists() else None

    @property
    def supervisor_conf(self) -> Path:
        return self.var_dir / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.var_dir / "supervisor.sock"

    @property
    def nginx_conf(self) -> Path:
        return self.var_dir / "nginx" / "nginx.conf"

    @property
    def upstream_conf(self) -> Path:
        return self.var_dir / "nginx" / "upstream.conf"

    @property
    def layout_file(self) -> Path:
        return self.var_dir / "cluster.json"

    @property
    def logs(self) -> Path:
        return self.var_dir / "log"

    def save(self) -> None:
        """Write the layout to var/cluster.json (for `ctl` and the health watcher)."""
        data: dict[str, Any] = {**dataclasses.asdict(self), "var_dir": str(self.var_dir),
                                "catalog": str(self.catalog) if self.catalog else None}
        # written whole, then renamed: the health watcher reads it twice a second
        temporary = self.layout_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        temporary.replace(self.layout_file)

    @classmethod
    def load(cls, var_dir: Path) -> Layout:
        """The layout of the cluster `up` started with this var/ folder."""
        path = var_dir / "cluster.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise OpsError(f"no cluster was started from {var_dir} (no {path.name}): "
                              "start one with `python -m service up`") from None
        # a cluster.json written before `catalog` existed has none: the built-in catalog
        catalog = data.get("catalog")
        return cls(**{**data, "var_dir": Path(data["var_dir"]),
                      "catalog": Path(catalog) if catalog else None})
