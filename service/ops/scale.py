"""`python -m service ctl scale N`: more or fewer instances, under load, dropping nothing.

Up: the new instances' programs are rendered into supervisord's config, added and started
under supervisor, and put into nginx once ready. Down: the last instances are taken out
of nginx first, then drained (WebSockets close with 1001, long-polls answer) and stopped,
then removed from supervisor's config. Everything is checked before anything changes.
"""

from __future__ import annotations

import dataclasses
import xmlrpc.client
from collections.abc import Callable
from typing import Any, Protocol

from service.ops.errors import OpsError
from service.ops.layout import MAX_INSTANCES, Layout
from service.ops.probes import is_ready, port_is_free, wait_until
from service.ops.render import rewrite_supervisor_conf
from service.ops.supervisor import process_states


class Controller(Protocol):
    """What scaling needs of `ctl`'s controller (service.ops.ctl.Controller)."""

    layout: Layout
    rpc: Any  # supervisord's XML-RPC proxy
    out: Callable[[str], None]

    def set_upstream(self, down: set[str]) -> None:
        """Rewrite nginx's upstream with `down` out, and reload nginx."""

START_TIMEOUT_S = 60


def parse_count(text: str | None) -> int:
    """The N of `ctl scale N`; OpsError for anything but a whole number in range."""
    if text is None or not (text.isascii() and text.isdigit()):
        raise OpsError(f"`ctl scale` needs a number of instances, e.g. `ctl scale 3` "
                       f"(got {text!r})")
    count = int(text)
    if not 1 <= count <= MAX_INSTANCES:
        raise OpsError(f"`ctl scale {count}`: the cluster runs 1 to {MAX_INSTANCES} instances")
    return count


def scale(controller: Controller, target: int) -> None:
    """Run `target` instances; OpsError, before any change, when it cannot be done."""
    layout = controller.layout
    process_states(layout)  # a running cluster, or a clear error
    if target == layout.instances:
        controller.out(f"already {target} instance(s)")
        return
    try:
        wanted = dataclasses.replace(layout, instances=target)
    except OpsError as exc:  # ports overlapping or out of range
        raise OpsError(f"cannot run {target} instances here: {exc}") from None
    added = [name for name in wanted.apps if name not in layout.apps]
    busy = [f"{name} {wanted.apps[name]}" for name in added if not port_is_free(wanted.apps[name])]
    if busy:
        raise OpsError(f"the new instances' ports are in use ({', '.join(busy)}): stop what "
                       "uses them, or restart the cluster with another --first-port")
    rewrite_supervisor_conf(wanted, dry_run=True)
    if added:
        _scale_up(controller, wanted, added)
    else:
        _scale_down(controller, wanted, [name for name in layout.apps if name not in wanted.apps])
    controller.out(f"now {target} instance(s)")


def _scale_up(controller: Controller, wanted: Layout, added: list[str]) -> None:
    rewrite_supervisor_conf(wanted)
    controller.rpc.supervisor.reloadConfig()
    # saved before the waiting: an instance that never gets ready leaves a cluster of
    # `wanted` with one broken instance, which `ctl scale` back down removes
    wanted.save()
    controller.layout = wanted
    for name in added:
        controller.out(f"{name}: starting on port {wanted.apps[name]}…")
        try:
            controller.rpc.supervisor.addProcessGroup(name)  # starts it (autostart)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_ADDED" not in fault.faultString:
                raise OpsError(f"{name}: {fault.faultString}") from None
        _wait_running_and_ready(wanted, name)
    controller.set_upstream(set())
    controller.out(f"{', '.join(added)}: ready and in nginx")


def _wait_running_and_ready(layout: Layout, name: str) -> None:
    """Until supervisor counts the instance RUNNING (past its startsecs) and it is ready."""
    def up() -> bool:
        running = process_states(layout).get(name, {}).get("statename") == "RUNNING"
        return running and is_ready(layout.apps[name])
    wait_until(up, START_TIMEOUT_S, f"{name} becoming ready")


def _scale_down(controller: Controller, wanted: Layout, removed: list[str]) -> None:
    controller.out(f"taking {', '.join(removed)} out of nginx")
    controller.set_upstream(set(removed))
    for name in removed:
        controller.out(f"{name}: stopping (draining)…")
        try:
            controller.rpc.supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise OpsError(f"{name}: {fault.faultString}") from None
    rewrite_supervisor_conf(wanted)
    controller.rpc.supervisor.reloadConfig()
    for name in removed:
        controller.rpc.supervisor.removeProcessGroup(name)
    wanted.save()
    controller.layout = wanted
    controller.set_upstream(set())
