"""`python -m service ctl`: operate the running local cluster of `up`.

`ctl` talks to its supervisord over the unix socket. Planned stops take an instance out
of nginx first (marked `down`, nginx reloaded) and then let it drain, so a rolling
restart under load fails no request.
"""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from pathlib import Path

from service.ops import cluster_slots, redis_ha
from service.ops.bridge import bridged
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import is_ready, wait_until
from service.ops.scale import parse_count, scale
from service.ops.supervisor import process_states, supervisor
from service.ops.up import START_TIMEOUT_S
from service.ops.upstream import set_upstream


class Controller:
    """What `python -m service ctl` does to a running cluster."""

    def __init__(self, layout: Layout, out: Callable[[str], None] = print):
        self.layout = layout
        self.rpc = supervisor(layout)
        self.out = out

    def status(self, books: Sequence[str] = ()) -> list[str]:
        """Every process; on a Redis Cluster also every shard, with which of `books`
        (the catalog's SKUs) live there."""
        rows = [f"{'NAME':<22} {'STATE':<9} {'PID':>7}  {'PORT':>5}  READY / ROLE"]
        ports = self.layout.all_ports()
        for name, info in process_states(self.layout).items():
            port = ports.get(name)
            ready = ""
            if port is not None and name in self.layout.apps and info["statename"] == "RUNNING":
                ready = "yes" if is_ready(port) else "no"
            elif (self.layout.redis_ha or self.layout.redis_shards) and \
                    name in self.layout.redis_nodes:
                ready = redis_ha.role(self.layout, name)
            rows.append(f"{name:<22} {info['statename']:<9} {info['pid'] or '-':>7}  "
                        f"{port or '':>5}  {ready}")
        if self.layout.redis_shards:
            rows += ["", *cluster_slots.status_lines(self.layout, books)]
        return rows

    def _known(self, name: str) -> None:
        states = process_states(self.layout)
        if name not in states:
            raise OpsError(f"no process named {name!r}; known: {', '.join(states)}")

    def set_upstream(self, down: set[str]) -> None:
        """Rewrite nginx's upstream with `down` (and every stopped or hung app) out."""
        set_upstream(self.layout, self.rpc, down)

    def stop(self, name: str) -> None:
        self._known(name)
        if name in self.layout.apps:
            self.out(f"{name}: taking it out of nginx")
            self.set_upstream({name})
        self.out(f"{name}: stopping{' (draining)' if name in self.layout.apps else ''}…")
        started = time.monotonic()
        try:
            self.rpc.supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise OpsError(f"{name}: {fault.faultString}") from None
        self.out(f"{name}: stopped in {time.monotonic() - started:.1f}s")

    def start(self, name: str) -> None:
        self._known(name)
        self.out(f"{name}: starting…")
        try:
            self.rpc.supervisor.startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise OpsError(f"{name}: {fault.faultString}; see "
                                   f"{self.layout.logs / (name + '.log')}") from None
        if name in self.layout.apps:
            port = self.layout.apps[name]
            wait_until(lambda: is_ready(port), START_TIMEOUT_S, f"{name} becoming ready")
            self.set_upstream(set())
            self.out(f"{name}: ready and back in nginx")
        else:
            self.out(f"{name}: running")

    def restart(self, name: str) -> None:
        if name == "nginx":
            with bridged(self.layout):  # no refused connection meanwhile
                self.stop(name)
                self.start(name)
            return
        self.stop(name)
        self.start(name)

    def restart_all(self) -> None:
        """Rolling: one instance at a time, each drained and ready again before the next."""
        names = list(self.layout.apps)
        for index, name in enumerate(names, start=1):
            self.out(f"[{index}/{len(names)}] restarting {name}")
            self.restart(name)
        self.out(f"all {len(names)} instances restarted")


def run_ctl(var_dir: Path, action: str, name: str | None, extra: str | None = None,
            books: Callable[[Layout], Sequence[str]] = lambda layout: ()) -> int:
    """Do `action` to the cluster `up` started from var_dir; raises OpsError. `books`
    reads the SKUs of the cluster's catalog (the app's catalog code, which ops does not
    import)."""
    layout = Layout.load(var_dir)
    controller = Controller(layout, out=lambda line: print(line, flush=True))
    if action == "status":
        print("\n".join(controller.status(books(layout))))
    elif action == "restart-all":
        controller.restart_all()
    elif action == "scale":
        scale(controller, parse_count(name))
    elif action == "move-book":
        if not name or not extra:
            raise OpsError("usage: ctl move-book SKU NODE, e.g. `ctl move-book internet redis-2`")
        cluster_slots.move_book(layout, books(layout), name, extra,
                                out=lambda line: print(line, flush=True))
    elif action == "failover":
        print("asking the sentinels for a planned failover…", flush=True)
        print(f"{redis_ha.failover(layout)} is the primary now")
    else:
        if not name:
            raise OpsError(f"`ctl {action}` needs a process name, e.g. `ctl {action} app-2`")
        getattr(controller, action)(name)
    return 0
