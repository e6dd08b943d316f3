"""Asking whether a port, a process or an HTTP endpoint is there, and waiting until it is."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from service.ops.errors import OpsError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether `url` answers 200 within the timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def is_ready(port: int) -> bool:
    """Whether the app instance on 127.0.0.1:port answers /readyz with 200."""
    return http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=1.0)


def redis_answers(port: int, password: str | None = None) -> bool:
    """Whether a redis-server (or sentinel) on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            if password:
                conn.sendall(b"AUTH %s\r\n" % password.encode())
                if not conn.recv(64).startswith(b"+OK"):
                    return False
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running; /proc tells them apart
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `check` until it is true; OpsError naming `what` after the timeout, or at
    once if `proc` (the process being waited for) exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise OpsError(f"{what}: the process exited with code {proc.returncode}")
        if check():
            return
        time.sleep(0.05)
    raise OpsError(f"{what}: not ready after {timeout_s:.0f}s")
