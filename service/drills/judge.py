"""A drill's verdict: every figure beside its budget. Pure functions of what the load
recorded, what the shop said afterwards, and when the fault happened."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from service.drills import figures
from service.drills.catalog import Drill
from service.drills.counting import failure_counts
from service.load.judge import ShopState, lost_holds
from service.load.options import parse_duration
from service.load.records import ACKED

DEFAULT_READY_S = 30.0
LONGPOLL_MARGIN_S = 5.0  # a long-poll watcher converges within the hold time plus this


@dataclasses.dataclass(frozen=True)
class Budgets:
    failure_ratio: float
    failure_window_s: float
    ws_converge_s: float
    lp_converge_s: float
    ready_s: float
    failed_requests: int | None  # a planned operation fails none; None: not counted
    write_gap_s: float | None  # the longest time without an answered cart change


def budget_duration(text: str) -> float:
    """A budget of time: a duration (2s, 500ms, 1m) or 0."""
    return 0.0 if text.strip() in ("0", "0s") else parse_duration(text)


def add_budget_flags(parser: argparse.ArgumentParser) -> None:
    """--budget-*: each replaces one default budget (for every drill of the run)."""
    group = parser.add_argument_group("budgets (defaults per drill; see deploy/RUNBOOK.md)")
    group.add_argument("--budget-failure-ratio", type=float, metavar="R",
                       help="failed / all requests (default 0.005; redis-failover and "
                            "shard-failover 0.05)")
    group.add_argument("--budget-failure-window", type=budget_duration, metavar="D",
                       help="the longest window with failures (default 2s; "
                            "redis-failover and shard-failover 5s; planned operations: "
                            "none)")
    group.add_argument("--budget-ws-converge", type=budget_duration, metavar="D",
                       help="WebSocket watchers show every change within D of the fault's "
                            "end (default 3s; hung-node: 5s from its start; redis-failover, "
                            "shard-failover: 3s from the promotion)")
    group.add_argument("--budget-lp-converge", type=budget_duration, metavar="D",
                       help="long-poll watchers likewise (default: the shop's hold time "
                            "+ 5s; redis-failover, shard-failover: 3s from the promotion)")
    group.add_argument("--budget-write-gap", type=budget_duration, metavar="D",
                       help="the longest time without an answered cart change from the "
                            "fault on (redis-failover's figure; default 5s)")
    group.add_argument("--budget-ready", type=budget_duration, metavar="D",
                       help=f"every instance ready again (default {DEFAULT_READY_S:g}s)")
    group.add_argument("--relax", type=float, default=1.0, metavar="F",
                       help="multiply the default time budgets by F (a shared, slow "
                            "machine; `make test` uses 3)")


def budgets_for(drill: Drill, args: argparse.Namespace, longpoll_s: float) -> Budgets:
    relax = args.relax

    def pick(given: float | None, default: float) -> float:
        return given if given is not None else default * relax

    ratio = args.budget_failure_ratio
    return Budgets(
        failure_ratio=ratio if ratio is not None else drill.failure_ratio,
        failure_window_s=pick(args.budget_failure_window,
                              0.0 if drill.planned else drill.failure_window_s),
        ws_converge_s=pick(args.budget_ws_converge, drill.ws_converge_s),
        lp_converge_s=pick(args.budget_lp_converge, longpoll_s + LONGPOLL_MARGIN_S
                           if drill.lp_converge_s is None else drill.lp_converge_s),
        ready_s=pick(args.budget_ready, DEFAULT_READY_S),
        write_gap_s=None if drill.write_gap_s is None else
        pick(args.budget_write_gap, drill.write_gap_s),
        # "no window with failures" of a planned operation is: no failed request at all,
        # unless a window is allowed on the command line
        failed_requests=0 if drill.planned and args.budget_failure_window is None else None)


@dataclasses.dataclass(frozen=True)
class Window:
    """When the load ran and when the fault did (ms of this machine's clock)."""
    load_start_ms: float
    load_end_ms: float
    fault_start_ms: float
    fault_end_ms: float
    converge_from_ms: float  # watchers are judged from here (the drill's converge_from)


def judge(drill: Drill, records: dict[str, Any], shop: ShopState, window: Window,
          ready_samples: list[tuple[float, bool]], budgets: Budgets, hold_ttl_ms: int,
          steady: dict[str, Any]) -> dict[str, Any]:
    """The drill's summary: figures, budgets, verdict."""
    timeline = records["timeline"]
    events = figures.failure_events(timeline)
    windows = figures.failure_windows(events)
    failed, total = failure_counts(records["outcomes"])
    ws_s, ws_late = figures.catch_up(timeline, records["watchers"], "websocket",
                                     window.converge_from_ms)
    lp_s, lp_late = figures.catch_up(timeline, records["watchers"], "longpoll",
                                     window.converge_from_ms)
    lost = lost_holds(records, shop, hold_ttl_ms)
    longest = max((w["end_ms"] - w["start_ms"] for w in windows), default=0) / 1000
    checks = {
        "steady_state": (steady["held"], True),
        "lost_acked_holds": (len(lost), 0),
        "negative_counts": (records["negative_counts"], 0),
        "version_regressions": (records["regressions"], 0),
        "failure_ratio": (round(failed / total, 5) if total else None, budgets.failure_ratio),
        "longest_failure_window_s": (round(longest, 2), budgets.failure_window_s),
        "ws_converge_s": (ws_s, budgets.ws_converge_s),
        "lp_converge_s": (lp_s, budgets.lp_converge_s),
        "ready_after_s": (figures.ready_after(ready_samples, window.fault_end_ms),
                          budgets.ready_s),
    }
    if budgets.failed_requests is not None:
        checks["failed_requests"] = (failed, budgets.failed_requests)
    if budgets.write_gap_s is not None:
        checks["longest_write_gap_s"] = (
            figures.longest_write_gap(timeline.get("writes", []), window.fault_start_ms,
                                      window.load_end_ms), budgets.write_gap_s)
    figures_out = {name: {"value": value, "budget": budget, "met": _met(value, budget)}
                   for name, (value, budget) in checks.items()}
    start = window.load_start_ms
    summary: dict[str, Any] = {
        "drill": drill.name,
        "fault": drill.fault,
        "window_s": {"load": round((window.load_end_ms - start) / 1000, 1),
                     "fault_start": round((window.fault_start_ms - start) / 1000, 2),
                     "fault_end": round((window.fault_end_ms - start) / 1000, 2),
                     "converge_from": round((window.converge_from_ms - start) / 1000, 2)},
        "figures": figures_out,
        "requests": {"total": total, "failed": failed},
        "failures_by_kind": figures.failures_by_kind(events),
        "failure_windows": [{"start_s": round((w["start_ms"] - start) / 1000, 2),
                             "end_s": round((w["end_ms"] - start) / 1000, 2),
                             "failures": w["failures"]} for w in windows],
        "examples": {"lost_acked_holds": lost[:5], "late_websocket": ws_late,
                     "late_longpoll": lp_late, "steady_state": steady["problems"][:5],
                     "other": records["examples"][:5]},
    }
    summary["verdict"], summary["reason"] = _verdict(summary, records)
    return summary


def _met(value: Any, budget: Any) -> bool:
    if isinstance(budget, bool):
        return bool(value is budget)
    return value is not None and value <= budget


def _verdict(summary: dict[str, Any], records: dict[str, Any]) -> tuple[str, str]:
    too_little = []
    states = [state for holds in records["holds"].values() for state, _ in holds.values()]
    if ACKED not in states:
        too_little.append("no hold was acknowledged")
    watchers = records["watchers"].values()
    for transport in ("websocket", "longpoll"):
        ours = [w for w in watchers if w["transport"] == transport]
        if ours and not any(w["deliveries"] for w in ours):
            too_little.append(f"no {transport} watcher received a change")
    if records.get("final_from", 0) < max(records.get("processes", 1),
                                          records.get("expected_processes", 1)):
        too_little.append("the load's final records never arrived")
    unmet = [f"{name} {result['value']} (budget {result['budget']})"
             for name, result in summary["figures"].items() if not result["met"]]
    if too_little:
        unmet.append("too little observed to judge: " + "; ".join(too_little))
    if unmet:
        return "fail", ", ".join(unmet)
    return "pass", "every figure within its budget"
