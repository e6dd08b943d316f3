"""What users felt during a drill, from the load's timeline: failures in time, how long
watchers showed an outdated count, and how long the cluster took to be ready again.
Pure functions of recorded data; times in ms of the load machine's clock."""

from __future__ import annotations

import bisect
import collections
import itertools
import math
from typing import Any

from service.drills.counting import is_failure

# failures closer together than this are one window of failures
FAILURE_GAP_MS = 1_000


def failure_events(timeline: dict[str, Any]) -> list[list[Any]]:
    """[ms, request kind, outcome] of every request that counts as failed."""
    return [event for event in timeline["failures"] if is_failure(event[2])]


def failure_windows(events: list[list[Any]], gap_ms: int = FAILURE_GAP_MS) -> list[dict[str, Any]]:
    """Failures grouped into windows (a gap over gap_ms starts a new one)."""
    windows: list[dict[str, Any]] = []
    for at_ms, _, _ in sorted(events):
        if windows and at_ms - windows[-1]["end_ms"] <= gap_ms:
            windows[-1]["end_ms"] = at_ms
            windows[-1]["failures"] += 1
        else:
            windows.append({"start_ms": at_ms, "end_ms": at_ms, "failures": 1})
    return windows


def failures_by_kind(events: list[list[Any]]) -> dict[str, int]:
    counts = collections.Counter(f"{kind}: {outcome}" for _, kind, outcome in events)
    return dict(sorted(counts.items()))


def catch_up(timeline: dict[str, Any], watchers: dict[str, Any], transport: str,
             from_ms: float) -> tuple[float | None, list[str]]:
    """How long after `from_ms` (or after the change, when later) the slowest watcher of
    `transport` showed a change, in seconds (0 when all did by then), and examples of the
    slowest. None when some watcher never showed a change it should have.

    Every change a watcher should show is one made after the first version it showed of
    that book; it shows it once it holds that version or a later one."""
    worst_s: float | None = 0.0
    late: list[tuple[float, str]] = []
    for watcher_id, watcher in watchers.items():
        if watcher["transport"] != transport:
            continue
        held = timeline["held"].get(watcher_id, [])
        for sku in watcher["skus"]:
            shown = [(arrived, changed) for arrived, s, changed in held if s == sku]
            if not shown:
                continue
            changes = timeline["changes"].get(sku, [])
            arrivals = [arrived for arrived, _ in shown]
            versions = [changed for _, changed in shown]
            # the running maximum: a later arrival never shows an older change (news only)
            for index in range(1, len(versions)):
                versions[index] = max(versions[index], versions[index - 1])
            for change_ms in changes[bisect.bisect_right(changes, versions[0]):]:
                at = bisect.bisect_left(versions, change_ms)
                if at == len(versions):
                    late.append((math.inf, f"{watcher_id} never showed the change of {sku} "
                                           f"at {change_ms}"))
                    worst_s = None
                    break
                excess_s = max(0.0, arrivals[at] - max(change_ms, from_ms)) / 1000
                if worst_s is not None:
                    worst_s = max(worst_s, excess_s)
                if excess_s > 0:
                    late.append((excess_s, f"{watcher_id} showed the change of {sku} "
                                           f"{excess_s:.2f}s late"))
    late.sort(reverse=True)
    return (None if worst_s is None else round(worst_s, 3)), [text for _, text in late[:3]]


def longest_write_gap(writes: list[int], from_ms: float, until_ms: float) -> float | None:
    """The longest time (s) without an answered cart change between `from_ms` and the
    last one before `until_ms` (the gap from `from_ms` to the first counts); None when
    none was answered after `from_ms`."""
    after = [at for at in writes if from_ms <= at <= until_ms]
    if not after:
        return None
    moments = [from_ms, *after]
    return round(max(b - a for a, b in itertools.pairwise(moments)) / 1000, 2)


def ready_after(samples: list[tuple[float, bool]], from_ms: float) -> float | None:
    """Seconds after `from_ms` until every instance was ready for good (0: they already
    were), from samples of (ms, every instance ready); None if they never were again."""
    not_ready = [at for at, ready in samples if not ready]
    if samples and not samples[-1][1]:
        return None
    if not not_ready:
        return 0.0
    ready_again = min(at for at, ready in samples if ready and at > not_ready[-1])
    return round(max(0.0, ready_again - from_ms) / 1000, 2)


def per_second(timeline: dict[str, Any], start_ms: float, end_ms: float) -> dict[str, list[Any]]:
    """The chart's series: seconds since start, requests/s, failures/s, delivery-lag p99."""
    series: dict[str, list[Any]] = {"t_s": [], "requests": [], "failures": [], "lag_p99_ms": []}
    for second in range(int(start_ms // 1000), int(end_ms // 1000) + 1):
        counts = timeline["requests"].get(str(second), {})
        lags = sorted(timeline["lags"].get(str(second), []))
        series["t_s"].append(second - start_ms / 1000)
        series["requests"].append(sum(counts.values()))
        series["failures"].append(sum(n for outcome, n in counts.items() if is_failure(outcome)))
        series["lag_p99_ms"].append(lags[min(len(lags) - 1, int(len(lags) * 0.99))]
                                    if lags else None)
    return series
