"""What the virtual users of one load process saw, kept small enough to send to the
master (Locust's worker-to-master messages) and merged there for the judge.

Nothing here imports Locust: the judge reads the merged records in a plain process.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

from service.load.outcomes import Outcome
from service.load.timeline import Timeline, merge_timelines

ACKED, RELEASED, UNKNOWN = "acked", "released", "unknown"


@dataclasses.dataclass
class SkuView:
    """What one client last saw of one book."""
    epoch: str
    version: int
    count: int


@dataclasses.dataclass
class Watcher:
    transport: str  # "websocket" or "longpoll"
    skus: list[str]
    connected: bool = False  # ever connected
    instance: str = ""  # the instance it is (last) connected to
    deliveries: int = 0


class Records:
    """Everything one load process observed; `to_dict` / `merge` carry it to the judge."""

    def __init__(self) -> None:
        # session token -> sku -> [state, server ms of the last acknowledged add]
        self.holds: dict[str, dict[str, list[Any]]] = {}
        self.watchers: dict[str, Watcher] = {}
        # client id -> sku -> what it saw last (for regressions; watchers' for convergence)
        self.views: dict[str, dict[str, SkuView]] = collections.defaultdict(dict)
        self.negative_counts = 0
        self.regressions = 0
        self.examples: list[str] = []  # a few of each problem, to show the user
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        self.instances: collections.Counter[str] = collections.Counter()
        self.cache: collections.Counter[str] = collections.Counter()
        self.clock_offsets_ms: list[float] = []
        self.timeline: Timeline | None = None  # kept when the run asks (the drills do)

    # ------------------------------------------------------------ recording

    def outcome(self, kind: str, outcome: Outcome, instance: str | None) -> None:
        self.outcomes[kind][outcome.value] += 1
        if instance:
            self.instances[instance] += 1
        if self.timeline is not None:
            self.timeline.request(time.time() * 1000, kind, outcome.value)

    def hold(self, session: str, sku: str, state: str, server_ms: int = 0) -> None:
        """The session's hold of `sku` is now acked, released or unknown."""
        self.holds.setdefault(session, {})[sku] = [state, server_ms]

    def saw(self, client: str, snapshot: dict[str, Any]) -> bool:
        """A client saw a snapshot; returns whether it was news to it (a newer version)."""
        sku, count = snapshot["sku"], int(snapshot["inventoryCount"])
        epoch, version = str(snapshot["epoch"]), int(snapshot["version"])
        if self.timeline is not None:
            self.timeline.change(sku, int(snapshot.get("changedAt") or 0))
        if count < 0:
            self.negative_counts += 1
            self._example(f"{client} saw {sku} at count {count} (version {version})")
        seen = self.views[client].get(sku)
        if seen is not None and seen.epoch == epoch and version < seen.version:
            self.regressions += 1
            self._example(f"{client} saw {sku} go back from version {seen.version} to {version}")
            return False
        if seen is not None and seen.epoch == epoch and version == seen.version:
            return False
        self.views[client][sku] = SkuView(epoch, version, count)
        return True

    def clock_sample(self, server_time_ms: float, local_ms: float) -> None:
        """serverTime of a reply against the local time it arrived (offset to the shop)."""
        self.clock_offsets_ms = [*self.clock_offsets_ms, server_time_ms - local_ms][-50:]

    def _example(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)

    # ------------------------------------------------------------ transport

    def to_dict(self) -> dict[str, Any]:
        watched = {wid: self.views.get(wid, {}) for wid in self.watchers}
        return {
            "holds": self.holds,
            "watchers": {wid: {**dataclasses.asdict(w),
                               "seen": {sku: dataclasses.asdict(v)
                                        for sku, v in watched[wid].items()}}
                         for wid, w in self.watchers.items()},
            "negative_counts": self.negative_counts,
            "regressions": self.regressions,
            "examples": self.examples,
            "outcomes": {kind: dict(counts) for kind, counts in self.outcomes.items()},
            "instances": dict(self.instances),
            "cache": dict(self.cache),
            "clock_offsets_ms": self.clock_offsets_ms,
            "timeline": self.timeline.to_dict() if self.timeline is not None else None,
        }


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One view of the records of every load process (their sessions and watchers are
    their own; counters add up)."""
    merged: dict[str, Any] = {"holds": {}, "watchers": {}, "negative_counts": 0,
                              "regressions": 0, "examples": [], "outcomes": {},
                              "instances": collections.Counter(), "cache": collections.Counter(),
                              "clock_offsets_ms": [], "processes": len(parts)}
    for part in parts:
        merged["holds"].update(part["holds"])
        merged["watchers"].update(part["watchers"])
        merged["negative_counts"] += part["negative_counts"]
        merged["regressions"] += part["regressions"]
        merged["examples"] += part["examples"]
        for kind, counts in part["outcomes"].items():
            merged["outcomes"].setdefault(kind, collections.Counter()).update(counts)
        merged["instances"].update(part["instances"])
        merged["cache"].update(part["cache"])
        merged["clock_offsets_ms"] += part["clock_offsets_ms"]
    merged["instances"] = dict(merged["instances"])
    merged["cache"] = dict(merged["cache"])
    merged["outcomes"] = {kind: dict(counts) for kind, counts in merged["outcomes"].items()}
    timelines = [part["timeline"] for part in parts if part.get("timeline")]
    merged["timeline"] = merge_timelines(timelines) if timelines else None
    return merged
