"""The faults of the drills, as Chaos Toolkit actions (`"type": "python"` providers of
deploy/drills/*.json), and the rollback that puts the cluster back whatever happened.

Each takes the cluster's var/ folder (the experiments' `var_dir` configuration) and signals
only processes this cluster's supervisord started, by the PIDs it reports.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import time
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

import redis

from service.drills.steady import replication_problem_of
from service.ops.cluster_slots import partner
from service.ops.ctl import Controller
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import is_ready, wait_until
from service.ops.redis_ha import data_nodes, primary_port, role
from service.ops.scale import scale
from service.ops.supervisor import process_states

log = logging.getLogger("chaostoolkit")
SCALED_FROM = "drill-scaled-from.json"  # the instance count before scale_by, for restore
READY_TIMEOUT_S = 60.0
# well above the sentinels' down-after (1 s) plus their failover-timeout (10 s)
PROMOTION_TIMEOUT_S = 60.0
# the sentinels look at a returning node every 10 s, then it copies the primary's data
REPLICA_TIMEOUT_S = 60.0


def _layout(var_dir: str) -> Layout:
    return Layout.load(Path(var_dir))


def _target(layout: Layout, name: str) -> str:
    """The process a fault is for: `name`, or the last instance when none is given."""
    return name or list(layout.apps)[-1]


def _pid(layout: Layout, name: str) -> int:
    info = process_states(layout).get(name)
    if info is None or not info["pid"]:
        raise OpsError(f"{name} is not running, so the fault cannot be injected")
    return int(info["pid"])


def _controller(layout: Layout) -> Controller:
    return Controller(layout, out=log.info)


def kill_process(var_dir: str, name: str = "") -> dict[str, Any]:
    """kill -9 a process (default: the last instance); supervisor starts it again."""
    layout = _layout(var_dir)
    target = _target(layout, name)
    pid = _pid(layout, target)
    os.kill(pid, signal.SIGKILL)
    log.info("killed %s (pid %d) with SIGKILL", target, pid)
    return {"killed": target, "pid": pid}


def pause_process(var_dir: str, name: str = "", seconds: float = 20.0) -> dict[str, Any]:
    """SIGSTOP a process (default: the last instance) for `seconds`, then SIGCONT: a
    process that is there but answers nothing."""
    layout = _layout(var_dir)
    target = _target(layout, name)
    pid = _pid(layout, target)
    os.kill(pid, signal.SIGSTOP)
    log.info("stopped %s (pid %d) with SIGSTOP for %gs", target, pid, float(seconds))
    try:
        time.sleep(float(seconds))
    finally:
        os.kill(pid, signal.SIGCONT)
    return {"paused": target, "pid": pid, "seconds": float(seconds)}


def restart(var_dir: str, name: str) -> dict[str, Any]:
    """`ctl restart NAME` (nginx, redis, upstream-sim or an instance)."""
    started = time.monotonic()
    _controller(_layout(var_dir)).restart(name)
    return {"restarted": name, "seconds": round(time.monotonic() - started, 2)}


def restart_all(var_dir: str) -> dict[str, Any]:
    """`ctl restart-all`: the rolling restart of a deploy."""
    started = time.monotonic()
    _controller(_layout(var_dir)).restart_all()
    return {"seconds": round(time.monotonic() - started, 2)}


def drop_subscriptions(var_dir: str) -> dict[str, Any]:
    """CLIENT KILL TYPE pubsub on every primary: every instance's subscription connections
    are cut (with Sentinel, on the primary; on a Redis Cluster, one on each shard)."""
    layout = _layout(var_dir)
    primaries = [port for name, port in data_nodes(layout).items()
                 if role(layout, name) == "primary"] \
        if layout.redis_mode == "cluster" else [primary_port(layout)]
    with contextlib.ExitStack() as open_clients:
        clients = {port: open_clients.enter_context(contextlib.closing(redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=5, password=layout.redis_password())))
            for port in primaries}
        for client in clients.values():  # connected first: the kills then come together
            client.ping()
        killed = {port: int(client.client_kill_filter(_type="pubsub"))
                  for port, client in clients.items()}
    log.info("killed pub/sub connections, by primary's port: %s", killed)
    return {"killed": killed}


def _primary_to_kill(layout: Layout) -> str:
    """With Sentinel, the primary the sentinels name; on a Redis Cluster, the primary of
    the first shard (the demo catalog's featured book lives there)."""
    if layout.redis_mode == "cluster":
        first = next(iter(data_nodes(layout)))
        return first if role(layout, first) == "primary" else partner(first)
    port = primary_port(layout)
    return next(name for name, node in data_nodes(layout).items() if node == port)


def kill_primary(var_dir: str) -> dict[str, Any]:
    """kill -9 a Redis primary (`_primary_to_kill`), and keep it down.

    supervisord restarts a process that dies within a second, often before the
    sentinels' down-after period (or the cluster's node timeout): the old primary would
    be back with its data and no failover would happen. So it is stopped (SIGSTOP),
    supervisord is asked to stop it (which sends SIGTERM, held pending by the stop, and
    makes its exit expected), and then SIGKILL ends it before it could act on the
    SIGTERM: to Redis, a kill -9."""
    layout = _layout(var_dir)
    name = _primary_to_kill(layout)
    port, pid = layout.redis_nodes[name], _pid(layout, name)
    os.kill(pid, signal.SIGSTOP)
    try:
        _controller(layout).rpc.supervisor.stopProcess(name, False)
    finally:
        os.kill(pid, signal.SIGKILL)
    log.info("killed the primary %s (port %d, pid %d) with SIGKILL; it stays down", name,
             port, pid)
    return {"killed": name, "port": port, "pid": pid}


def _candidates(layout: Layout) -> list[str]:
    """The data nodes that may be promoted in place of the one killed: with Sentinel,
    any other than the one the sentinels name now (the killed primary: they name it
    until they have failed over); on a Redis Cluster, the stopped node's partner."""
    if layout.redis_mode == "cluster":
        return [partner(name) for name, info in process_states(layout).items()
                if name in data_nodes(layout) and info["statename"] != "RUNNING"]
    killed = primary_port(layout)
    return [name for name, port in data_nodes(layout).items() if port != killed]


def wait_for_promotion(var_dir: str) -> dict[str, Any]:
    """Until a replica has been promoted: one of the candidates answers as a primary.
    Its name and how long this waited; the drill judges its watchers from this moment,
    the earliest a client could have been told of the new primary."""
    layout = _layout(var_dir)
    candidates = _candidates(layout)  # once: the sentinels will name the new one later
    started = time.monotonic()
    promoted: list[str] = []

    def done() -> bool:
        promoted[:] = [name for name in candidates if role(layout, name) == "primary"]
        return bool(promoted)
    wait_until(done, PROMOTION_TIMEOUT_S, "a replica promoted in place of the killed primary")
    log.info("promoted: %s", promoted[0])
    return {"primary": promoted[0], "waited_s": round(time.monotonic() - started, 2)}


def bring_back(var_dir: str) -> dict[str, Any]:
    """Start every stopped Redis node again and wait until each replicates from its
    primary (a returning old primary is told by the sentinels, or by the cluster, to
    become a replica)."""
    layout = _layout(var_dir)
    started = [name for name, info in process_states(layout).items()
               if name in data_nodes(layout) and info["statename"] != "RUNNING"]
    for name in started:
        _controller(layout).rpc.supervisor.startProcess(name, True)
    wait_until(lambda: replication_problem_of(layout) is None, REPLICA_TIMEOUT_S,
               "every Redis node replicating from its primary")
    log.info("back, as replicas: %s", ", ".join(started) or "none was down")
    return {"started": started}


def _simulator(layout: Layout, mode: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{layout.upstream_port}/control", method="POST",
        data=json.dumps({"mode": mode, "extra_latency_ms": 0}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        reply.read()


def upstream_outage(var_dir: str, seconds: float = 20.0) -> dict[str, Any]:
    """The search API answers 500 to everything for `seconds`, then recovers."""
    layout = _layout(var_dir)
    _simulator(layout, "500")
    log.info("upstream failing for %gs", float(seconds))
    try:
        time.sleep(float(seconds))
    finally:
        _simulator(layout, "ok")
    return {"seconds": float(seconds)}


def scale_by(var_dir: str, delta: int) -> dict[str, Any]:
    """`ctl scale` to the current count plus `delta` (the first change of a drill
    remembers the count it started from, for restore)."""
    layout = _layout(var_dir)
    marker = layout.var_dir / SCALED_FROM
    if not marker.exists():
        marker.write_text(json.dumps({"instances": layout.instances}))
    target = layout.instances + int(delta)
    scale(_controller(layout), target)
    return {"instances": target}


def restore(var_dir: str) -> dict[str, Any]:
    """The rollback of every drill: every process continued and running, the search API
    healthy, the instance count the drill started from, every instance ready and in
    nginx. Safe to run when nothing is wrong."""
    layout = _layout(var_dir)
    controller = _controller(layout)
    for name, info in process_states(layout).items():
        if info["pid"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(info["pid"]), signal.SIGCONT)
        if info["statename"] not in ("RUNNING", "STARTING"):
            log.info("restore: starting %s (%s)", name, info["statename"])
            with contextlib.suppress(xmlrpc.client.Fault):
                controller.rpc.supervisor.startProcess(name, True)
    with contextlib.suppress(OSError):
        _simulator(layout, "ok")
    marker = layout.var_dir / SCALED_FROM
    if marker.exists():
        scale(controller, int(json.loads(marker.read_text())["instances"]))
        marker.unlink()
        layout = _layout(var_dir)
    if layout.redis_mode != "single":
        wait_until(lambda: replication_problem_of(layout) is None, REPLICA_TIMEOUT_S,
                   "every Redis node replicating from its primary")
    for name, port in layout.apps.items():
        wait_until(functools.partial(is_ready, port), READY_TIMEOUT_S, f"{name} becoming ready")
    controller.set_upstream(set())
    return {"instances": layout.instances}
