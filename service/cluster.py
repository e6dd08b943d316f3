"""`python -m service up` and `python -m service ctl`: the local cluster under supervisord.

`up` renders var/'s configs (service/deploy.py), runs supervisord in the foreground with
redis-server, the upstream simulator, app-1..app-N and nginx, waits until all of them
answer, prints the URLs, and on Ctrl-C or SIGTERM stops every process it started.

`ctl` talks to that supervisord over its unix socket. Planned stops take an instance out
of nginx first (marked `down`, nginx reloaded) and then let it drain, so a rolling
restart under load fails no request.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from service import procs
from service.deploy import DeployError, Layout, render, upstream_block

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60
# after nginx reloads, old workers finish their requests; give them this long
NGINX_RELOAD_SETTLE_S = 1.0


class ClusterError(RuntimeError):
    """The cluster cannot do what was asked; the message names the fix."""


# --------------------------------------------------------------------------- supervisor

def supervisor(layout: Layout):
    """An XML-RPC proxy to the cluster's supervisord."""
    from supervisor.xmlrpc import SupervisorTransport
    transport = SupervisorTransport(None, None, f"unix://{layout.supervisor_socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def process_states(layout: Layout) -> dict[str, dict]:
    try:
        return {info["name"]: info for info in supervisor(layout).supervisor.getAllProcessInfo()}
    except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
        raise ClusterError(f"no cluster answers at {layout.supervisor_socket} ({exc}); "
                           "start one with `make demo` or `python -m service up`") from None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise ClusterError(f"{what} did not happen within {timeout_s:.0f}s")


# --------------------------------------------------------------------------- up

def run_cluster(layout: Layout) -> int:
    """Start everything, print the URLs, wait for Ctrl-C/SIGTERM, stop everything."""
    pid_file = layout.var_dir / "up.pid"
    layout.var_dir.mkdir(parents=True, exist_ok=True)
    _refuse_second_start(pid_file)
    busy = {name: port for name, port in layout.all_ports().items() if not procs.port_is_free(port)}
    if busy:
        listing = ", ".join(f"{name} {port}" for name, port in busy.items())
        raise ClusterError(f"port(s) in use: {listing}. Stop what uses them, or choose other "
                           "ports (--http-port, --first-port, --redis-port, --upstream-port)")
    try:
        notes = render(layout)
    except (DeployError, procs.ProcessError) as exc:
        raise ClusterError(str(exc)) from None
    for note in notes:
        print(note)

    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    pid_file.write_text(str(os.getpid()))
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(layout.supervisor_conf)],
        stdout=open(layout.logs / "supervisord.out", "ab"), stderr=subprocess.STDOUT,
        start_new_session=True)  # Ctrl-C reaches `up` only; `up` stops supervisord
    children: dict[str, int] = {}
    try:
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
            except ClusterError:
                pass
        _stop_supervisord(supervisord, children)
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
    raise ClusterError(f"a cluster is already running from {pid_file.parent} (pid {pid}); "
                       f"stop it with Ctrl-C in its terminal or `kill {pid}`")


def _wait_until_up(layout: Layout, supervisord: subprocess.Popen, stopping) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting_for = "supervisord"
    while time.monotonic() < deadline and not stopping():
        if supervisord.poll() is not None:
            raise ClusterError(f"supervisord exited with code {supervisord.returncode}; see "
                               f"{layout.logs / 'supervisord.log'}")
        try:
            states = process_states(layout)
        except ClusterError:
            time.sleep(0.2)
            continue
        failed = [name for name, info in states.items() if info["statename"] in ("FATAL", "BACKOFF")]
        if failed:
            raise ClusterError(f"{', '.join(failed)} failed to start; see {layout.logs}/"
                               f"{failed[0]}.log")
        waiting_for = next((name for name, info in states.items()
                            if info["statename"] != "RUNNING"), "")
        if not waiting_for:
            not_ready = [name for name, port in layout.apps.items()
                         if not http_ok(f"http://127.0.0.1:{port}/readyz")]
            if not not_ready and http_ok(f"http://127.0.0.1:{layout.http_port}/readyz"):
                return
            waiting_for = ", ".join(not_ready) or "nginx"
        time.sleep(0.2)
    if not stopping():
        raise ClusterError(f"the cluster did not come up within {START_TIMEOUT_S}s (waiting for "
                           f"{waiting_for}); see the logs in {layout.logs}")


def _print_urls(layout: Layout) -> None:
    base = f"http://127.0.0.1:{layout.http_port}"
    token = (layout.var_dir / "admin_token").read_text().strip()
    lines = [f"Burt's Books live is up ({layout.instances} instances behind nginx):",
             f"  shop            {base}/",
             f"  catalog         {base}/books",
             f"  tweets/second   {base}/rate?q=tornado",
             f"  cluster admin   {base}/admin/cluster?token={token}",
             f"  metrics         {base}/metrics (each instance: add its own port)"]
    lines += [f"  {name:<15} http://127.0.0.1:{port}/" for name, port in layout.apps.items()]
    lines += [f"  redis           redis://127.0.0.1:{layout.redis_port}/0",
              f"  upstream sim    http://127.0.0.1:{layout.upstream_port}/stats",
              f"Operate it: python -m service ctl status | stop app-2 | start app-2 | "
              f"restart app-2 | restart-all",
              f"Logs in {layout.logs}. Press Ctrl-C to stop everything."]
    print("\n".join(lines), flush=True)


def _stop_supervisord(supervisord: subprocess.Popen, children: dict[str, int]) -> None:
    """SIGTERM supervisord (it stops its programs in reverse order), then make sure."""
    if supervisord.poll() is None:
        supervisord.send_signal(signal.SIGTERM)
    try:
        supervisord.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log.error("supervisord did not stop within 60s; killing it")
        supervisord.kill()
        supervisord.wait()
    for name, pid in children.items():
        if pid and process_alive(pid):
            log.error("%s (pid %d) outlived supervisord; killing it", name, pid)
            os.kill(pid, signal.SIGKILL)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running; /proc tells them apart
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


# --------------------------------------------------------------------------- ctl

class Controller:
    """What `python -m service ctl` does to a running cluster."""

    def __init__(self, layout: Layout, out=print):
        self.layout = layout
        self.rpc = supervisor(layout)
        self.out = out

    def status(self) -> list[str]:
        rows = [f"{'NAME':<14} {'STATE':<9} {'PID':>7}  {'PORT':>5}  READY"]
        ports = self.layout.all_ports()
        for name, info in process_states(self.layout).items():
            port = ports.get(name, "")
            ready = ""
            if name in self.layout.apps and info["statename"] == "RUNNING":
                ready = "yes" if http_ok(f"http://127.0.0.1:{port}/readyz") else "no"
            rows.append(f"{name:<14} {info['statename']:<9} {info['pid'] or '-':>7}  "
                        f"{port:>5}  {ready}")
        return rows

    def _known(self, name: str) -> None:
        states = process_states(self.layout)
        if name not in states:
            raise ClusterError(f"no process named {name!r}; known: {', '.join(states)}")

    def _set_upstream(self, down: set[str]) -> None:
        """Rewrite nginx's upstream with `down` (and every stopped app) out, and reload."""
        states = process_states(self.layout)
        stopped = {name for name in self.layout.apps if states[name]["statename"] != "RUNNING"}
        self.layout.upstream_conf.write_text(upstream_block(self.layout, frozenset(down | stopped)))
        if states.get("nginx", {}).get("statename") == "RUNNING":
            self.rpc.supervisor.signalProcess("nginx", "HUP")
            time.sleep(NGINX_RELOAD_SETTLE_S)

    def stop(self, name: str) -> None:
        self._known(name)
        if name in self.layout.apps:
            self.out(f"{name}: taking it out of nginx")
            self._set_upstream({name})
        self.out(f"{name}: stopping{' (draining)' if name in self.layout.apps else ''}…")
        started = time.monotonic()
        try:
            self.rpc.supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise ClusterError(f"{name}: {fault.faultString}") from None
        self.out(f"{name}: stopped in {time.monotonic() - started:.1f}s")

    def start(self, name: str) -> None:
        self._known(name)
        self.out(f"{name}: starting…")
        try:
            self.rpc.supervisor.startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise ClusterError(f"{name}: {fault.faultString}; see "
                                   f"{self.layout.logs / (name + '.log')}") from None
        if name in self.layout.apps:
            port = self.layout.apps[name]
            wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), START_TIMEOUT_S,
                     f"{name} becoming ready")
            self._set_upstream(set())
            self.out(f"{name}: ready and back in nginx")
        else:
            self.out(f"{name}: running")

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def restart_all(self) -> None:
        """Rolling: one instance at a time, each drained and ready again before the next."""
        names = list(self.layout.apps)
        for index, name in enumerate(names, start=1):
            self.out(f"[{index}/{len(names)}] restarting {name}")
            self.restart(name)
        self.out(f"all {len(names)} instances restarted")


def run_ctl(var_dir: Path, action: str, name: str | None) -> int:
    try:
        layout = Layout.load(var_dir)
    except DeployError as exc:
        raise ClusterError(str(exc)) from None
    controller = Controller(layout, out=lambda line: print(line, flush=True))
    if action == "status":
        print("\n".join(controller.status()))
    elif action == "restart-all":
        controller.restart_all()
    else:
        if not name:
            raise ClusterError(f"`ctl {action}` needs a process name, e.g. `ctl {action} app-2`")
        getattr(controller, action)(name)
    return 0
