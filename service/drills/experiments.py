"""The Chaos Toolkit experiments of the drills, written out as deploy/drills/NAME.json.

Every drill shares its steady-state hypothesis and its rollback, so the files are made
here rather than copied by hand: `python -m service.drills.experiments` writes them, and
a test fails when a committed file differs from what this module makes. Read the files
(or `chaos run --rollback-strategy=always deploy/drills/NAME.json`) as any other
experiment.
"""

from __future__ import annotations

import json
from typing import Any

from service.drills.catalog import DRILLS

STEADY = "service.drills.steady"
FAULTS = "service.drills.faults"

CONFIGURATION = {
    "var_dir": {"type": "env", "key": "BB_VAR_DIR", "default": "var"},
    # `python -m service drill` points these at its load; a plain `chaos run` has none
    "load_records": {"type": "env", "key": "BB_DRILL_LOAD_RECORDS", "default": ""},
    "failure_budget": {"type": "env", "key": "BB_DRILL_FAILURE_BUDGET", "default": "0.005"},
}


def _provider(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": module, "func": func,
            "arguments": {"var_dir": "${var_dir}", **arguments}}


def _action(title: str, func: str, pause_after_s: float = 0, **arguments: Any) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "action", "name": title,
                              "provider": _provider(FAULTS, func, **arguments)}
    if pause_after_s:
        action["pauses"] = {"after": pause_after_s}
    return action


HYPOTHESIS = {
    "title": "Every instance is ready, every instance's live counts agree with Redis, and "
             "the load's failures are within budget",
    "probes": [
        {"type": "probe", "name": "every-instance-ready", "tolerance": True,
         "provider": _provider(STEADY, "instances_ready", within_s=30)},
        {"type": "probe", "name": "live-counts-agree-with-redis", "tolerance": True,
         "provider": _provider(STEADY, "counts_consistent", within_s=15)},
        {"type": "probe", "name": "load-failures-within-budget", "tolerance": True,
         "provider": {"type": "python", "module": STEADY, "func": "load_failures_within",
                      "arguments": {"records": "${load_records}",
                                    "budget": "${failure_budget}"}}},
    ],
}

ROLLBACKS = [_action("restore-the-cluster", "restore")]

METHODS: dict[str, list[dict[str, Any]]] = {
    "kill-node": [_action("kill-9-the-last-instance", "kill_process")],
    "hung-node": [_action("sigstop-the-last-instance-for-20s", "pause_process", seconds=20)],
    "roll-deploy": [_action("rolling-restart-of-every-instance", "restart_all")],
    "restart-redis": [_action("kill-9-redis", "kill_process", name="redis")],
    "pause-redis": [_action("sigstop-redis-for-5s", "pause_process", name="redis", seconds=5)],
    "drop-subscriptions": [_action("client-kill-type-pubsub", "drop_subscriptions")],
    "nginx-restart": [_action("ctl-restart-nginx", "restart", name="nginx")],
    "upstream-outage": [_action("upstream-fails-for-20s", "upstream_outage", seconds=20)],
    "scale-out": [_action("scale-out-by-one", "scale_by", pause_after_s=5, delta=1),
                  _action("scale-back-in-by-one", "scale_by", delta=-1)],
    # the catalog's converge_from names the second action: watchers are judged from the
    # moment a replica answers as the primary
    "redis-failover": [_action("kill-9-the-redis-primary", "kill_primary"),
                       _action("wait-for-the-promotion", "wait_for_promotion",
                               pause_after_s=5),
                       _action("old-primary-back-as-a-replica", "bring_back")],
    # a shard's one replica is its only copy: the old primary is brought back at once
    "shard-failover": [_action("kill-9-the-first-shards-primary", "kill_primary"),
                       _action("wait-for-the-promotion", "wait_for_promotion"),
                       _action("old-primary-back-as-a-replica", "bring_back")],
}

# with Sentinel or a Redis Cluster, the steady state also has every data node
# replicating from its primary
REPLICATION_PROBE = {
    "type": "probe", "name": "every-redis-node-replicating", "tolerance": True,
    "provider": _provider(STEADY, "redis_replicating", within_s=30)}


def experiment(name: str) -> dict[str, Any]:
    drill = DRILLS[name]
    return {
        "version": "1.0.0",
        "title": f"Burt's Books live under load: {name}",
        "description": f"{drill.fault}. Run it under load with a verdict: "
                       f"`python -m service drill {name}` (deploy/RUNBOOK.md).",
        "tags": ["burts-books", "drill", name],
        "configuration": CONFIGURATION,
        "steady-state-hypothesis": HYPOTHESIS if drill.redis not in ("sentinel", "cluster") else
        {**HYPOTHESIS, "probes": [*HYPOTHESIS["probes"], REPLICATION_PROBE]},
        "method": METHODS[name],
        "rollbacks": ROLLBACKS,
    }


def text(name: str) -> str:
    return json.dumps(experiment(name), indent=2) + "\n"


def write_all() -> None:
    for name, drill in DRILLS.items():
        drill.experiment.write_text(text(name))
        print(f"wrote {drill.experiment}")


if __name__ == "__main__":
    write_all()
