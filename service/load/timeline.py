"""When things happened during a load run, for the drills' judge and chart: requests and
failures per second, delivery lag per second, every version each watcher held and when,
and every change any client saw. Recorded only when asked (`--bb-timeline`): a plain
load run judges totals and does not pay for it.

Times are the load machine's wall clock in ms (with the run's clock offset, the shop's
clock, for what is compared with `changedAt`).
"""

from __future__ import annotations

import collections
from typing import Any

MAX_FAILURES = 5_000  # failure events kept (each: when, what, how)
MAX_LAGS_PER_SECOND = 500  # delivery lags kept per second (for the p99 of that second)
MAX_WRITES = 200_000  # answered cart changes kept (when)


class Timeline:
    """One load process's events in time; `to_dict` / `merge_timelines` carry it."""

    def __init__(self) -> None:
        # second -> outcome -> requests
        self.requests: dict[int, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        self.failures: list[list[Any]] = []  # [ms, request kind, outcome]
        self.lags: dict[int, list[float]] = collections.defaultdict(list)  # second -> lags
        # watcher -> [[arrived ms, sku, changedAt of the version it now holds], ...]
        self.held: dict[str, list[list[Any]]] = collections.defaultdict(list)
        self.changes: dict[str, set[int]] = collections.defaultdict(set)  # sku -> changedAt
        self.writes: list[int] = []  # ms of every cart change the shop answered (2xx/409)

    def request(self, at_ms: float, kind: str, outcome: str) -> None:
        self.requests[int(at_ms // 1000)][outcome] += 1
        if outcome != "ok" and len(self.failures) < MAX_FAILURES:
            self.failures.append([round(at_ms), kind, outcome])
        elif outcome == "ok" and kind.startswith("cart") and len(self.writes) < MAX_WRITES:
            self.writes.append(round(at_ms))

    def delivery(self, at_ms: float, lag_ms: float) -> None:
        lags = self.lags[int(at_ms // 1000)]
        if len(lags) < MAX_LAGS_PER_SECOND:
            lags.append(round(lag_ms, 1))

    def change(self, sku: str, changed_at_ms: int) -> None:
        if changed_at_ms:
            self.changes[sku].add(changed_at_ms)

    def holds(self, watcher: str, sku: str, changed_at_ms: int, arrived_ms: float) -> None:
        """The watcher now shows `sku` as of its change at changed_at_ms."""
        self.held[watcher].append([round(arrived_ms), sku, changed_at_ms])

    def to_dict(self) -> dict[str, Any]:
        return {"requests": {str(s): dict(c) for s, c in self.requests.items()},
                "failures": self.failures,
                "writes": self.writes,
                "lags": {str(s): lags for s, lags in self.lags.items()},
                "held": dict(self.held),
                "changes": {sku: sorted(times) for sku, times in self.changes.items()}}


def merge_timelines(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The timelines of every load process as one."""
    requests: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    lags: dict[str, list[float]] = collections.defaultdict(list)
    changes: dict[str, set[int]] = collections.defaultdict(set)
    merged: dict[str, Any] = {"failures": [], "held": {}, "writes": []}
    for part in parts:
        for second, counts in part["requests"].items():
            requests[second].update(counts)
        for second, values in part["lags"].items():
            lags[second] += values
        for sku, times in part["changes"].items():
            changes[sku].update(times)
        merged["failures"] += part["failures"]
        merged["writes"] += part.get("writes", [])
        merged["held"].update(part["held"])
    merged["failures"].sort()
    merged["writes"].sort()
    merged["requests"] = {second: dict(counts) for second, counts in requests.items()}
    merged["lags"] = dict(lags)
    merged["changes"] = {sku: sorted(times) for sku, times in changes.items()}
    return merged
