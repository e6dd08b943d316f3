"""The one writer of nginx's upstream file (var/nginx/upstream.conf): `ctl` (stop, start,
scale) and the health watcher go through here, under a lock, so neither writes what
the other has not seen.

An instance is left out of nginx when `ctl` takes it out (it is about to stop), when
supervisor does not run it, or when the health watcher found it hung (var/nginx/hung.json)
— but never every instance: with all of them out nginx could only refuse everyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.ops.files import write_whole
from service.ops.layout import Layout
from service.ops.render import upstream_block
from service.ops.supervisor import process_states

# after nginx reloads, old workers finish their requests; give them this long
NGINX_RELOAD_SETTLE_S = 1.0
# in var/nginx/: what the health watcher found hung, and what `ctl` took out
HUNG, TAKEN_OUT = "hung.json", "taken-out.json"


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    with open(layout.var_dir / "nginx" / "upstream.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _names(layout: Layout, file: str) -> set[str]:
    try:
        return set(json.loads((layout.var_dir / "nginx" / file).read_text()))
    except (OSError, ValueError):
        return set()


def _keep(layout: Layout, file: str, names: set[str]) -> None:
    write_whole(layout.var_dir / "nginx" / file, json.dumps(sorted(names)))


def hung(layout: Layout) -> set[str]:
    """The instances the health watcher last found hung."""
    return _names(layout, HUNG)


def set_hung(var_dir: Path, rpc: Any, names: set[str]) -> None:
    """Record the hung instances and rewrite nginx's upstream accordingly (with what
    `ctl` took out, and the layout as it is now: `ctl scale` may have changed it)."""
    layout = Layout.load(var_dir)
    with locked(layout):
        layout = Layout.load(var_dir)
        _keep(layout, HUNG, names)
        _write(layout, rpc, _names(layout, TAKEN_OUT))


def forget_marks(layout: Layout) -> None:
    """A new cluster starts with every instance in: drop a last run's marks."""
    for file in (HUNG, TAKEN_OUT):
        (layout.var_dir / "nginx" / file).unlink(missing_ok=True)


def set_upstream(layout: Layout, rpc: Any, down: set[str]) -> None:
    """Take `down` out of nginx (for `ctl`: about to stop; empty to put them back), with
    every stopped or hung app, and reload nginx."""
    with locked(layout):
        _keep(layout, TAKEN_OUT, down)
        _write(layout, rpc, down)


def _write(layout: Layout, rpc: Any, down: set[str]) -> None:
    states = process_states(layout)
    stopped = {name for name in layout.apps
               if states.get(name, {}).get("statename") != "RUNNING"}
    out = down | stopped
    sick = hung(layout) - out
    if sick and not set(layout.apps) - out - sick:
        sick = set(sorted(sick)[:-1])  # keep one: a slow instance beats none at all
    text = upstream_block(layout, frozenset(out | sick))
    if layout.upstream_conf.exists() and layout.upstream_conf.read_text() == text:
        return  # nothing changed: no reload
    write_whole(layout.upstream_conf, text)  # nginx may be reloading meanwhile
    if states.get("nginx", {}).get("statename") == "RUNNING":
        rpc.supervisor.signalProcess("nginx", "HUP")
        time.sleep(NGINX_RELOAD_SETTLE_S)
