"""`python -m service up`: a local demo cluster of real processes.

Starts redis-server (AOF on, data in var/redis) and N app instances app-1..app-N on
consecutive ports, restarts an instance that dies, and on Ctrl-C or SIGTERM stops
every process it started (by PID) and exits.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import time

from service import procs

log = logging.getLogger(__name__)
VAR = procs.ROOT / "var"
PID_FILE = VAR / "up.pid"


class ClusterError(RuntimeError):
    """The cluster cannot start; the message names the fix."""


def _claim_pid_file() -> None:
    VAR.mkdir(exist_ok=True)
    if PID_FILE.exists():
        try:
            pid = int(PID_FILE.read_text())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            pass  # stale: its owner is gone
        else:
            raise ClusterError(f"a demo cluster is already running (pid {pid}); stop it with "
                               f"Ctrl-C in its terminal or `kill {pid}`")
    PID_FILE.write_text(str(os.getpid()))


def _cookie_secret() -> str:
    """One secret shared by all instances (so they accept each other's sessions), kept in var/."""
    path = VAR / "cookie_secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def run_cluster(instances: int, first_app_port: int, redis_port: int) -> int:
    if not 1 <= instances <= 32:
        raise ClusterError("--instances must be between 1 and 32")
    app_ports = [first_app_port + i for i in range(instances)]
    for port in [redis_port, *app_ports]:
        if not procs.port_is_free(port):
            raise ClusterError(f"port {port} is in use: stop what uses it, or choose other ports "
                               f"with --first-port / --redis-port")
    _claim_pid_file()
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    logs = VAR / "log"
    logs.mkdir(exist_ok=True)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {"BB_REDIS_URL": redis_url, "BB_COOKIE_SECRET": _cookie_secret()}
    redis = None
    apps: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        redis = procs.start_redis(redis_port, VAR / "redis", logs / "redis.log")
        for index, port in enumerate(app_ports, start=1):
            name = f"app-{index}"
            apps[name] = (port, procs.start_instance(port, {**env, "BB_INSTANCE_ID": name},
                                                     logs / f"{name}.log"))
        for name, (port, proc) in apps.items():
            procs.wait_until(lambda: procs.is_ready(port), 30, name, proc)
        print(f"Burt's Books live is up: Redis at {redis_url}")
        for name, (port, _) in apps.items():
            print(f"  {name}: http://127.0.0.1:{port}/   (catalog: /books)")
        print(f"Logs in {logs}. Press Ctrl-C to stop everything.", flush=True)
        while not stopping:
            time.sleep(0.5)
            for name, (port, proc) in list(apps.items()):
                if proc.poll() is not None and not stopping:
                    log.warning("%s exited with code %s; restarting it", name, proc.returncode)
                    apps[name] = (port, procs.start_instance(
                        port, {**env, "BB_INSTANCE_ID": name}, logs / f"{name}.log"))
        return 0
    except procs.ProcessError as exc:
        raise ClusterError(str(exc)) from None
    finally:
        print("stopping…", flush=True)
        for _, proc in apps.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # all drain at once
        for _, proc in apps.values():
            procs.stop(proc)
        if redis is not None:
            procs.stop(redis)
        PID_FILE.unlink(missing_ok=True)
