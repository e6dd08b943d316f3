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

from service.ops.layout import Layout
from service.ops.probes import http_ok
from service.ops.supervisor import process_states, supervisor
from service.ops.upstream import hung, set_hung

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 0.5
# consecutive failed probes before an instance counts as hung, and answered ones before
# it is trusted again: about 1 to 1.5 s either way
FAILURES_TO_HUNG = 2
ANSWERS_TO_WELL = 2


def watch(var_dir: Path, rounds: int | None = None) -> None:
    """Probe every instance every INTERVAL_S; forever, or for `rounds` rounds. Nothing
    that goes wrong in a round stops the watcher: it logs and tries the next round."""
    state = Health(hung(Layout.load(var_dir)))  # a restarted watcher goes on where it was
    done = 0
    while rounds is None or done < rounds:
        done += 1
        started = time.monotonic()
        try:
            state.round(var_dir)
        except Exception as exc:
            log.warning("health round failed (%s: %s); next round as usual",
                        type(exc).__name__, exc)
        time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - started)))


class Health:
    """What the watcher knows between rounds: each instance's run of probe outcomes."""

    def __init__(self, sick: set[str]):
        self.sick = set(sick)
        self.failures: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.written: set[str] | None = None  # what nginx last heard from us

    def round(self, var_dir: Path) -> None:
        layout = Layout.load(var_dir)  # `ctl scale` changes it
        states = process_states(layout)
        for name, port in layout.apps.items():
            if states.get(name, {}).get("statename") != "RUNNING":
                self.failures.pop(name, None)
                self.sick.discard(name)  # stopped on purpose: ctl's business, not ours
            elif http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=PROBE_TIMEOUT_S):
                self.failures[name] = 0
                self.answers[name] = self.answers.get(name, 0) + 1
                if name in self.sick and self.answers[name] >= ANSWERS_TO_WELL:
                    self.sick.discard(name)
                    log.warning("%s answers again: back into nginx", name)
            else:
                self.answers[name] = 0
                self.failures[name] = self.failures.get(name, 0) + 1
                if name not in self.sick and self.failures[name] >= FAILURES_TO_HUNG:
                    self.sick.add(name)
                    log.warning("%s does not answer /healthz: out of nginx", name)
        self.sick &= set(layout.apps)
        if self.sick != self.written:
            set_hung(var_dir, supervisor(layout), self.sick)
            self.written = set(self.sick)
