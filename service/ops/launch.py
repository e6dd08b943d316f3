"""The local cluster as a child process: `python -m service up` on free ports, operated
with `ctl` and stopped with SIGTERM, which stops everything `up` started. Used by the
tests (tests/support/deployment.py), the browser tests and the load benchmarks."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from service.ops import probes
from service.ops.errors import OpsError
from service.ops.layout import CLUSTER_BUS_OFFSET, Layout
from service.ops.redis_ha import redis_settings
from service.paths import ROOT

UP_TIMEOUT_S = 90


class LocalCluster:
    """One `python -m service up` on free ports, with its var/ folder in `var_dir`."""

    def __init__(self, var_dir: Path, instances: int = 3, env: dict[str, str] | None = None,
                 up_args: tuple[str, ...] = ()):
        self.var_dir = var_dir
        self.http_port = probes.free_port()
        self.first_app_port = free_run(instances)
        # `--redis-ha` takes six ports in a row (data nodes, then sentinels); a Redis
        # Cluster two a shard, and each node's bus port above it
        if "--redis-cluster" in up_args:
            shards = int(up_args[up_args.index("--redis-shards") + 1]) \
                if "--redis-shards" in up_args else 3
            self.redis_port = free_run(2 * shards, also_free_above=CLUSTER_BUS_OFFSET)
        else:
            self.redis_port = free_run(6) if "--redis-ha" in up_args else probes.free_port()
        self.upstream_port = probes.free_port()
        self.instances = instances
        self.env = {"BB_DRAIN_S": "5", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = var_dir.parent / "up.out"
        self.up_args = up_args  # more flags for `up`, e.g. ("--books", "2000")

    @property
    def base(self) -> str:
        """nginx's URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def apps(self) -> dict[str, int]:
        """Instance name -> its own port: app-1 on first_app_port, app-2 on the next, …"""
        return {f"app-{i + 1}": self.first_app_port + i for i in range(self.instances)}

    def app_base(self, name: str) -> str:
        """An instance's own URL, bypassing nginx."""
        return f"http://127.0.0.1:{self.apps[name]}"

    def start(self) -> None:
        """Start `up` and return once it says the cluster is up."""
        self.var_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output, "wb") as out:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service", "up", "--instances", str(self.instances),
                 "--http-port", str(self.http_port), "--first-port", str(self.first_app_port),
                 "--redis-port", str(self.redis_port), "--upstream-port", str(self.upstream_port),
                 "--var-dir", str(self.var_dir), *self.up_args],
                cwd=ROOT, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + UP_TIMEOUT_S
        while b"is up" not in self.output.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise OpsError(f"`up` did not come up:\n{self.output.read_text()}")
            time.sleep(0.2)

    def ctl(self, *args: str, timeout_s: float = 90) -> str:
        """`python -m service ctl ARGS` on this cluster; its output."""
        result = subprocess.run([sys.executable, "-m", "service", "ctl", *args, "--var-dir",
                                 str(self.var_dir)], cwd=ROOT, capture_output=True, text=True,
                                timeout=timeout_s)
        if result.returncode != 0:
            raise OpsError(f"`ctl {' '.join(args)}` failed: {result.stdout}{result.stderr}")
        return result.stdout

    def pids(self) -> dict[str, int]:
        """Every process supervisord runs, from `ctl status`."""
        rows = self.ctl("status").splitlines()[1:]
        return {row.split()[0]: int(row.split()[2]) for row in rows if row.split()[2] != "-"}

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_password_file(self) -> Path:
        """The file `up` keeps its Redis's password in."""
        return self.var_dir / "redis_password"

    @property
    def redis_env(self) -> dict[str, str]:
        """What `python -m service stock` (and any BB_* client) needs to reach that Redis."""
        return redis_settings(Layout.load(self.var_dir))

    def stop(self) -> int:
        """SIGTERM `up` (by its PID): it stops everything it started."""
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=90)


# Instance ports come from below Linux's ephemeral range (32768-60999 by default): a port
# the OS hands out for outgoing connections may be taken between this choice and a later
# `ctl scale`, which starts instances on the ports after the first ones.
RUN_PORTS = range(20_000, 32_000)
SCALE_ROOM = 4  # ports kept free after the instances, for `ctl scale`


def free_run(count: int, also_free_above: int = 0) -> int:
    """The first of `count` consecutive free ports (and a few more, for `ctl scale`);
    with `also_free_above`, the ports that far above them are free too."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(RUN_PORTS.start, RUN_PORTS.stop - count - SCALE_ROOM)
        offsets = {0, also_free_above}
        if all(probes.port_is_free(port + offset) for offset in offsets
               for port in range(first, first + count + SCALE_ROOM)):
            return first
    raise OpsError("no run of free ports")
