"""`python -m service up`: the local cluster under supervisord.

`up` renders var/'s configs (service/ops/render.py), runs supervisord in the foreground
with redis-server, the upstream simulator, app-1..app-N and nginx, waits until all of
them answer, prints the URLs, and on Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from service.ops import edge
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import http_ok, is_ready, port_is_free, process_alive
from service.ops.redis_cluster import create_local
from service.ops.render import render, supervisord_stop_s
from service.ops.secrets import without_secret_settings
from service.ops.supervisor import process_states
from service.ops.upstream import forget_marks

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60
# beyond the time supervisord may take to stop its programs, before `up` kills it
SUPERVISORD_STOP_MARGIN_S = 10


def run_up(layout: Layout) -> int:
    """Start everything, print the URLs, wait for Ctrl-C/SIGTERM, stop everything."""
    pid_file = layout.var_dir / "up.pid"
    layout.var_dir.mkdir(parents=True, exist_ok=True)
    _refuse_second_start(pid_file)
    busy = {name: port for name, port in layout.all_ports().items() if not port_is_free(port)}
    if busy:
        listing = ", ".join(f"{name} {port}" for name, port in busy.items())
        raise OpsError(f"port(s) in use: {listing}. Stop what uses them, or choose other "
                           "ports (--http-port, --first-port, --redis-port, --upstream-port)")
    notes = render(layout)
    static_warning = edge.static_warning(edge.worker_user())
    if static_warning:
        notes.append(static_warning)
    forget_marks(layout)
    for note in notes:
        print(note)

    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    pid_file.write_text(str(os.getpid()))
    with open(layout.logs / "supervisord.out", "ab") as out:  # the child keeps its own copy
        supervisord = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(layout.supervisor_conf)],
            stdout=out, stderr=subprocess.STDOUT, env=without_secret_settings(os.environ),
            start_new_session=True)  # Ctrl-C reaches `up` only; `up` stops supervisord
    children: dict[str, int] = {}
    try:
        if layout.redis_shards:  # the nodes start empty the first time: make them one
            create_local(layout, out=lambda line: print(line, flush=True))
        _wait_until_up(layout, supervisord, lambda: stop_requested)
        children = {name: info["pid"] for name, info in process_states(layout).items()}
        _print_urls(layout)
        while not stop_requested and supervisord.poll() is None:
            time.sleep(0.3)
        if supervisord.poll() is not None:
            log.error("supervisord exited (code %s); see %s", supervisord.returncode,
                      layout.logs / "supervisord.log")
            return 1
        return 0
    finally:
        print("stopping…", flush=True)
        if not children:
            try:
                children = {name: info["pid"] for name, info in process_states(layout).items()}
            except OpsError:
                pass
        _stop_supervisord(supervisord, children,
                          supervisord_stop_s(layout) + SUPERVISORD_STOP_MARGIN_S)
        pid_file.unlink(missing_ok=True)
        print("stopped.", flush=True)


def _refuse_second_start(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return  # stale: its owner is gone
    raise OpsError(f"a cluster is already running from {pid_file.parent} (pid {pid}); "
                       f"stop it with Ctrl-C in its terminal or `kill {pid}`")


def _wait_until_up(layout: Layout, supervisord: subprocess.Popen[bytes],
                   stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting_for = "supervisord"
    while time.monotonic() < deadline and not stopping():
        if supervisord.poll() is not None:
            raise OpsError(f"supervisord exited with code {supervisord.returncode}; see "
                               f"{layout.logs / 'supervisord.log'}")
        try:
            states = process_states(layout)
        except OpsError:
            time.sleep(0.2)
            continue
        failed = [name for name, info in states.items()
                  if info["statename"] in ("FATAL", "BACKOFF")]
        if failed:
            raise OpsError(f"{', '.join(failed)} failed to start; see {layout.logs}/"
                               f"{failed[0]}.log")
        waiting_for = next((name for name, info in states.items()
                            if info["statename"] != "RUNNING"), "")
        if not waiting_for:
            not_ready = [name for name, port in layout.apps.items() if not is_ready(port)]
            if not not_ready and http_ok(f"http://127.0.0.1:{layout.http_port}/readyz"):
                return
            waiting_for = ", ".join(not_ready) or "nginx"
        time.sleep(0.2)
    if not stopping():
        raise OpsError(f"the cluster did not come up within {START_TIMEOUT_S}s (waiting for "
                           f"{waiting_for}); see the logs in {layout.logs}")


def _print_urls(layout: Layout) -> None:
    base = f"http://127.0.0.1:{layout.http_port}"
    lines = [f"Burt's Books live is up ({layout.instances} instances behind nginx):",
             f"  shop            {base}/",
             f"  catalog         {base}/books",
             f"  tweets/second   {base}/rate?q=tornado",
             f"  cluster admin   {base}/admin/cluster (sign in with the token in "
             f"{layout.var_dir / 'admin_token'})",
             "  metrics         on each instance's own port below, at /metrics "
             "(not through nginx)"]
    lines += [f"  {name:<15} http://127.0.0.1:{port}/" for name, port in layout.apps.items()]
    if layout.redis_ha or layout.redis_shards:
        kind = "a Redis Cluster" if layout.redis_shards else "Redis with Sentinel"
        lines += [f"  {name:<15} 127.0.0.1:{port}" for name, port in layout.redis_nodes.items()]
        lines += [f"  ({kind}: `ctl status` shows the roles; the password is in "
                  f"{layout.redis_password_file})"]
    else:
        lines += [f"  redis           redis://127.0.0.1:{layout.redis_port}/0 (its password: "
                  f"{layout.redis_password_file})"]
    lines += [f"  upstream sim    http://127.0.0.1:{layout.upstream_port}/stats",
              "Operate it: python -m service ctl status | stop app-2 | start app-2 | "
              "restart app-2 | restart-all | scale N" + (" | failover" if layout.redis_ha else "")
              + (" | move-book SKU redis-N" if layout.redis_shards else ""),
              f"Logs in {layout.logs}. Press Ctrl-C to stop everything."]
    print("\n".join(lines), flush=True)


def _stop_supervisord(supervisord: subprocess.Popen[bytes], children: dict[str, int],
                      timeout_s: float) -> None:
    """SIGTERM supervisord (it stops its programs in reverse order), then make sure."""
    if supervisord.poll() is None:
        supervisord.send_signal(signal.SIGTERM)
    try:
        supervisord.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.error("supervisord did not stop within %.0fs; killing it", timeout_s)
        supervisord.kill()
        supervisord.wait()
    for name, pid in children.items():
        if pid and process_alive(pid):
            log.error("%s (pid %d) outlived supervisord; killing it", name, pid)
            os.kill(pid, signal.SIGKILL)
