"""The health watcher of the local cluster (`python -m service health-watch`, a program of
supervisord): takes a hung instance out of nginx within about two seconds and puts it
back once it answers again.

nginx's own checks are passive: they notice a refused or reset connection, not a process
that accepts connections and never answers (SIGSTOP, a stuck loop), and its read timeout
is a minute. The watcher asks each instance's /healthz, which does not touch Redis, so a
Redis blip never takes every instance out at once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import http_ok
from service.ops.supervisor import process_states, supervisor
from service.ops.upstream import set_hung

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 0.5
# consecutive failed probes before an instance counts as hung, and answered ones before
# it is trusted again: about 1 to 1.5 s either way
FAILURES_TO_HUNG = 2
ANSWERS_TO_WELL = 2


def watch(var_dir: Path, rounds: int | None = None) -> None:
    """Probe every instance every INTERVAL_S; forever, or for `rounds` rounds."""
    failures: dict[str, int] = {}
    answers: dict[str, int] = {}
    sick: set[str] = set()
    done = 0
    while rounds is None or done < rounds:
        done += 1
        started = time.monotonic()
        try:
            layout = Layout.load(var_dir)  # `ctl scale` changes it
            states = process_states(layout)
        except OpsError as exc:
            log.warning("cannot see the cluster (%s); trying again", exc)
            time.sleep(1.0)
            continue
        before = set(sick)
        for name, port in layout.apps.items():
            if states.get(name, {}).get("statename") != "RUNNING":
                failures.pop(name, None)
                sick.discard(name)  # stopped on purpose: ctl's business, not ours
                continue
            if http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=PROBE_TIMEOUT_S):
                failures[name] = 0
                answers[name] = answers.get(name, 0) + 1
                if name in sick and answers[name] >= ANSWERS_TO_WELL:
                    sick.discard(name)
                    log.warning("%s answers again: back into nginx", name)
            else:
                answers[name] = 0
                failures[name] = failures.get(name, 0) + 1
                if name not in sick and failures[name] >= FAILURES_TO_HUNG:
                    sick.add(name)
                    log.warning("%s does not answer /healthz: out of nginx", name)
        sick &= set(layout.apps)
        if sick != before:
            set_hung(layout, supervisor(layout), sick)
        time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - started)))
