"""Starting and stopping the real processes of a local cluster (tests and benchmarks)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.ops.errors import OpsError
from service.ops.probes import http_ok, port_is_free, redis_answers, wait_until
from service.paths import DEPLOY, ROOT

REDIS_CONF = DEPLOY / "redis.conf"
Check = Callable[[], bool]


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise OpsError("redis-server not found: run `apt-get install redis-server` "
                       "(or `make deps`), or point BB_REDIS_URL at a running Redis")
    return path


def _spawn(command: list[str], log_path: Path | None, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `command` with its output appended to log_path (or dropped)."""
    if log_path is None:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                text=False, **popen)
    with open(log_path, "ab") as out:  # the child keeps its own copy
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=False,
                                **popen)


def _require_free(port: int, what: str) -> None:
    if not port_is_free(port):
        raise OpsError(f"port {port} is in use: stop what uses it or choose another {what} port")


def start_redis(port: int, data_dir: Path, log_path: Path | None = None,
                conf: Path = REDIS_CONF, password: str | None = None) -> subprocess.Popen[bytes]:
    """A redis-server with the project's config (AOF on), or a node's own config file
    that includes it (service/ops/redis_ha.py), on 127.0.0.1:port."""
    _require_free(port, "Redis")
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = _spawn([redis_server_path(), str(conf), "--port", str(port),
                   "--dir", str(data_dir)], log_path)
    _wait_or_stop(proc, lambda: redis_answers(port, password), 20,
                  f"redis-server on port {port}")
    return proc


def start_sentinel(port: int, conf: Path, log_path: Path | None = None,
                   password: str | None = None) -> subprocess.Popen[bytes]:
    """redis-server in Sentinel mode with `conf` (which it rewrites as it learns)."""
    _require_free(port, "Sentinel")
    proc = _spawn([redis_server_path(), str(conf), "--sentinel", "--port", str(port)], log_path)
    _wait_or_stop(proc, lambda: redis_answers(port, password), 20, f"sentinel on port {port}")
    return proc


def start_instance(port: int, env: dict[str, str], log_path: Path | None = None,
                   extra_args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """`python -m service serve --port PORT [extra_args]` as a separate OS process."""
    _require_free(port, "app")
    return _spawn([sys.executable, "-m", "service", "serve", "--port", str(port), *extra_args],
                  log_path, cwd=ROOT, env={**os.environ, **env})


def start_upstream_sim(port: int, latency_ms: float = 0, error_rate: float = 0.0,
                       log_path: Path | None = None,
                       timeout_s: float = 20) -> subprocess.Popen[bytes]:
    """`python -m service upstream-sim` on 127.0.0.1:port; returns once it answers /stats."""
    _require_free(port, "simulator")
    proc = _spawn([sys.executable, "-m", "service", "upstream-sim", "--port", str(port),
                   "--latency-ms", str(latency_ms), "--error-rate", str(error_rate)],
                  log_path, cwd=ROOT, env=dict(os.environ))
    _wait_or_stop(proc, lambda: http_ok(f"http://127.0.0.1:{port}/stats", timeout_s=1.0),
                  timeout_s, f"upstream simulator on port {port}")
    return proc


def _wait_or_stop(proc: subprocess.Popen[bytes], check: Check, timeout_s: float,
                  what: str) -> None:
    try:
        wait_until(check, timeout_s, what, proc)
    except OpsError:
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int | None:
    """SIGTERM the process (by its PID), SIGKILL it if it outlives the timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
