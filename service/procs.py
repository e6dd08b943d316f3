"""Starting and stopping the real processes of a local cluster (demo and tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_CONF = ROOT / "deploy" / "redis.conf"


class ProcessError(RuntimeError):
    """A process could not be started; the message names the fix."""


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise ProcessError("redis-server not found: run `apt-get install redis-server` "
                           "(or `make deps`), or point BB_REDIS_URL at a running Redis")
    return path


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"{what}: the process exited with code {proc.returncode}")
        if check():
            return
        time.sleep(0.05)
    raise ProcessError(f"{what}: not ready after {timeout_s:.0f}s")


def start_redis(port: int, data_dir: Path, log_path: Path | None = None) -> subprocess.Popen:
    """A redis-server with the project's config (AOF on) on 127.0.0.1:port."""
    if not port_is_free(port):
        raise ProcessError(f"port {port} is in use: stop what uses it or choose another Redis port")
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([redis_server_path(), str(REDIS_CONF), "--port", str(port),
                             "--dir", str(data_dir)], stdout=out, stderr=subprocess.STDOUT)

    def answers_ping() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False
    wait_until(answers_ping, 20, f"redis-server on port {port}", proc)
    return proc


def start_instance(port: int, env: dict[str, str], log_path: Path | None = None,
                   extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    """`python -m service serve --port PORT [extra_args]` as a separate OS process."""
    if not port_is_free(port):
        raise ProcessError(f"port {port} is in use: stop what uses it or choose other ports")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "service", "serve", "--port", str(port),
                             *extra_args], cwd=ROOT, env={**os.environ, **env}, stdout=out,
                            stderr=subprocess.STDOUT)


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> int | None:
    """SIGTERM the process (by its PID), SIGKILL it if it outlives the timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_upstream_sim(port: int, latency_ms: float = 0, error_rate: float = 0.0,
                       log_path: Path | None = None, timeout_s: float = 20) -> subprocess.Popen:
    """`python -m service upstream-sim` on 127.0.0.1:port; returns once it answers /stats."""
    if not port_is_free(port):
        raise ProcessError(f"port {port} is in use: stop what uses it or choose another "
                           "simulator port")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "service", "upstream-sim", "--port", str(port),
                             "--latency-ms", str(latency_ms), "--error-rate", str(error_rate)],
                            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT)
    if log_path:
        out.close()  # the child has its own copy

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False
    try:
        wait_until(answers, timeout_s, f"upstream simulator on port {port}", proc)
    except ProcessError:
        stop(proc)
        raise
    return proc
