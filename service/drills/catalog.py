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
    # watchers must catch up within the budget of the fault's "end" (it is over), of its
    # "start" when the fault is a silent instance (they must move elsewhere meanwhile),
    # or of the end of the method's activity of that name (e.g. the promotion)
    converge_from: str = "end"
    # a planned operation must not fail a single request: no window with failures at all
    planned: bool = False
    ws_converge_s: float = 3.0  # the default budget of WebSocket watchers
    lp_converge_s: float | None = None  # of long-poll watchers (None: the hold time + 5 s)
    # the default budgets of failed requests: their share, and the longest window of them
    failure_ratio: float = 0.005
    failure_window_s: float = 2.0
    # the longest time without an answered cart change from the fault on (None: not a
    # figure of this drill)
    write_gap_s: float | None = None
    # the Redis it is for: "single", "sentinel" (`up --redis-ha`), "cluster"
    # (`up --redis-cluster`), or "any" (Layout.redis_mode)
    redis: str = "any"

    def fits(self, redis_mode: str) -> bool:
        return self.redis in ("any", redis_mode)

    @property
    def experiment(self) -> Path:
        return EXPERIMENTS / f"{self.name}.json"


DRILLS = {drill.name: drill for drill in (
    Drill("kill-node", "kill -9 one instance (supervisor starts it again)", min_instances=2),
    Drill("hung-node", "SIGSTOP one instance for 20 s, then SIGCONT", min_instances=2,
          converge_from="start", ws_converge_s=5.0),
    Drill("roll-deploy", "`ctl restart-all`: every instance drained and restarted in turn",
          min_instances=2, planned=True),
    Drill("restart-redis", "kill -9 redis-server (supervisor restarts it; AOF keeps the data)",
          redis="single"),
    Drill("pause-redis", "SIGSTOP redis-server for 5 s, then SIGCONT", redis="single"),
    Drill("drop-subscriptions", "CLIENT KILL TYPE pubsub: every instance loses its subscription"),
    Drill("nginx-restart", "`ctl restart nginx`"),
    Drill("upstream-outage", "the search API fails every request for 20 s"),
    Drill("scale-out", "`ctl scale` one instance more, then back, under load", planned=True),
    Drill("redis-failover", "kill -9 the Redis primary: the sentinels promote a replica; "
          "then the old primary comes back as a replica", redis="sentinel",
          converge_from="wait-for-the-promotion", write_gap_s=5.0, lp_converge_s=3.0,
          # until the promotion, every request that needs Redis fails (503): the time
          # without writes is the budget, the share of failures depends on the load's length
          failure_window_s=5.0, failure_ratio=0.05),
    Drill("shard-failover", "kill -9 the first shard's Redis primary: its replica is "
          "promoted; then the old primary comes back as its replica", redis="cluster",
          converge_from="wait-for-the-promotion", lp_converge_s=3.0,
          # the shard's books fail (503) until the promotion, and then until the old
          # primary has rejoined and copied the new one (min-replicas-to-write 1); the
          # other shards' books do not fail at all
          failure_window_s=5.0, failure_ratio=0.05),
)}
