"""The drills: what each one does to the cluster, what it needs, and how it is judged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from service.paths import ROOT

EXPERIMENTS = ROOT / "deploy" / "drills"


@dataclasses.dataclass(frozen=True)
class Drill:
    name: str
    fault: str  # one line, for the help and the report
    min_instances: int = 1  # a drill that takes an instance away needs another to serve
    # watchers must catch up within the budget of the fault's "end" (it is over) or, when
    # the fault is a silent instance, of its "start" (they must move elsewhere meanwhile)
    converge_from: str = "end"
    # a planned operation must not fail a single request: no window with failures at all
    planned: bool = False
    ws_converge_s: float = 3.0  # the default budget of WebSocket watchers

    @property
    def experiment(self) -> Path:
        return EXPERIMENTS / f"{self.name}.json"


DRILLS = {drill.name: drill for drill in (
    Drill("kill-node", "kill -9 one instance (supervisor starts it again)", min_instances=2),
    Drill("hung-node", "SIGSTOP one instance for 20 s, then SIGCONT", min_instances=2,
          converge_from="start", ws_converge_s=5.0),
    Drill("roll-deploy", "`ctl restart-all`: every instance drained and restarted in turn",
          min_instances=2, planned=True),
    Drill("restart-redis", "kill -9 redis-server (supervisor restarts it; AOF keeps the data)"),
    Drill("pause-redis", "SIGSTOP redis-server for 5 s, then SIGCONT"),
    Drill("drop-subscriptions", "CLIENT KILL TYPE pubsub: every instance loses its subscription"),
    Drill("nginx-restart", "`ctl restart nginx`"),
    Drill("upstream-outage", "the search API fails every request for 20 s"),
    Drill("scale-out", "`ctl scale` one instance more, then back, under load", planned=True),
)}
