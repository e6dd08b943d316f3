"""The verdict of a load run: the invariants checked from outside, the SLOs, and the
figures of the summary. Pure functions of what was recorded and read back."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

from service.load.options import Slo
from service.load.records import ACKED, RELEASED, UNKNOWN

INVARIANTS = ("negative_counts", "lost_acked_holds", "unconverged_watchers",
              "version_regressions")
TRANSPORTS = {"websocket": "WS", "longpoll": "LP"}  # summary name -> Locust request type


@dataclasses.dataclass(frozen=True)
class ShopState:
    """What the shop said after the load: the latest (epoch, version) of every book, and
    the holds each of the run's sessions still has."""
    latest: dict[str, tuple[str, int]]
    carts: dict[str, set[str]]
    server_time_ms: int


def read_stats(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Locust's stats CSV, by (Type, Name)."""
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}


def _figure(row: dict[str, str] | None, column: str) -> float | None:
    if row is None or row.get(column) in (None, "", "N/A"):
        return None
    return float(row[column])


def percentiles(row: dict[str, str] | None) -> dict[str, float | None]:
    count = int(float(row["Request Count"])) if row else 0
    return {"count": count, "p50": _figure(row, "50%"), "p95": _figure(row, "95%"),
            "p99": _figure(row, "99%"), "max": _figure(row, "Max Response Time")}


def lost_holds(records: dict[str, Any], shop: ShopState, hold_ttl_ms: int) -> list[str]:
    """Holds the shop acknowledged, never released, and no longer lists (expiry aside)."""
    lost = []
    for session, holds in records["holds"].items():
        for sku, (state, acked_ms) in holds.items():
            expired = acked_ms and shop.server_time_ms > acked_ms + hold_ttl_ms
            if state == ACKED and not expired and sku not in shop.carts.get(session, set()):
                lost.append(f"{sku} for session …{session[-8:]}")
    return lost


def unconverged(records: dict[str, Any], shop: ShopState) -> list[str]:
    """Watchers that do not hold the latest version of every book they watch."""
    behind = []
    for watcher_id, watcher in records["watchers"].items():
        for sku in watcher["skus"]:
            seen = watcher["seen"].get(sku)
            latest = shop.latest.get(sku)
            if seen is None or latest is None or (seen["epoch"], seen["version"]) != latest:
                behind.append(f"{watcher_id} ({watcher['transport']}) has {sku} at "
                              f"{(seen or {}).get('version')}, the shop at "
                              f"{latest[1] if latest else '?'}")
                break
    return behind


def judge(records: dict[str, Any], stats: dict[tuple[str, str], dict[str, str]],
          shop: ShopState, slos: list[Slo], users: dict[str, int], duration_s: float,
          hold_ttl_ms: int) -> dict[str, Any]:
    """The summary of a run, with its verdict."""
    outcomes = records["outcomes"]
    cart_kinds = [kind for kind in outcomes if kind.startswith("cart ")]
    cart_ops = sum(sum(outcomes[kind].values()) for kind in cart_kinds)
    cart_failures = sum(outcomes[kind].get("failed", 0) for kind in cart_kinds)
    all_requests = sum(sum(counts.values()) for counts in outcomes.values())
    failures = sum(counts.get("failed", 0) for counts in outcomes.values())
    cart_row = stats.get(("POST", "/cart"))
    lag = {name: percentiles(stats.get((kind, "deliver"))) for name, kind in TRANSPORTS.items()}
    lost = lost_holds(records, shop, hold_ttl_ms)
    behind = unconverged(records, shop)
    invariants = {"negative_counts": records["negative_counts"], "lost_acked_holds": len(lost),
                  "unconverged_watchers": len(behind),
                  "version_regressions": records["regressions"]}
    states = [state for holds in records["holds"].values() for state, _ in holds.values()]
    total = sum(records["instances"].values()) or 1
    watchers = records["watchers"].values()
    summary: dict[str, Any] = {
        "duration_s": duration_s,
        "users": users,
        "processes": records.get("processes", 1),
        "requests": outcomes,
        "instances": records["instances"],
        "instance_share": {i: round(n / total, 3) for i, n in sorted(records["instances"].items())},
        "watchers_per_instance": _count(w["instance"] or "(never connected)" for w in watchers),
        "cart": {"ops": cart_ops, "failures": cart_failures,
                 "ops_per_s": round(cart_ops / duration_s, 1) if duration_s else None,
                 "p50_ms": _figure(cart_row, "50%"), "p95_ms": _figure(cart_row, "95%"),
                 "p99_ms": _figure(cart_row, "99%")},
        "delivery_lag_ms": lag,
        "cache": records["cache"],
        "holds": {"acknowledged": states.count(ACKED), "released": states.count(RELEASED),
                  "unknown": states.count(UNKNOWN),
                  "books": len({sku for h in records["holds"].values() for sku in h})},
        "failure_ratio": round(failures / all_requests, 5) if all_requests else None,
        "invariants": invariants,
        "examples": {"lost_acked_holds": lost[:5], "unconverged_watchers": behind[:5],
                     "other": records["examples"][:10]},
    }
    summary["slo"] = {slo.name: _slo(slo, summary, users) for slo in slos}
    summary["verdict"], summary["reason"] = _verdict(summary, records, users)
    return summary


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def _slo(slo: Slo, summary: dict[str, Any], users: dict[str, int]) -> dict[str, Any]:
    if slo.name == "cart_p99_ms":
        value = summary["cart"]["p99_ms"]
    elif slo.name == "failure_ratio":
        value = summary["failure_ratio"]
    else:  # lag: the worst transport that has watchers
        watched = [name for name in TRANSPORTS
                   if users.get("ws_watchers" if name == "websocket" else "lp_watchers")]
        if not watched:  # no watchers, nothing delivered: the SLO does not apply
            return {"limit": slo.limit, "value": None, "met": True, "applies": False}
        values = [summary["delivery_lag_ms"][name]["p99"] for name in watched]
        value = None if None in values else max(values)
    return {"limit": slo.limit, "value": value, "met": value is not None and value <= slo.limit}


def _verdict(summary: dict[str, Any], records: dict[str, Any],
             users: dict[str, int]) -> tuple[str, str]:
    """("pass" | "fail", the reason, for the last line)."""
    broken = [f"{name} {value}" for name, value in summary["invariants"].items() if value]
    if broken:
        return "fail", "invariant broken: " + ", ".join(broken)
    too_little = []
    if users.get("shoppers") and not summary["holds"]["acknowledged"]:
        too_little.append("no hold was acknowledged")
    for name, count_key in (("websocket", "ws_watchers"), ("longpoll", "lp_watchers")):
        if users.get(count_key) and not summary["delivery_lag_ms"][name]["count"]:
            too_little.append(f"no {name} delivery was seen")
    never = sum(1 for w in records["watchers"].values() if not w["connected"])
    if never:
        too_little.append(f"{never} watcher(s) never connected")
    if not users.get("shoppers") and not records["watchers"]:
        too_little.append("no shoppers and no watchers: nothing to judge")
    missing = (max(records.get("processes", 1), records.get("expected_processes", 1))
               - records.get("final_from", 0))
    if missing > 0:
        too_little.append(f"the final records of {missing} load process(es) never arrived")
    if too_little:
        return "fail", "too little observed to judge: " + "; ".join(too_little)
    unmet = [f"{name} {result['value']} > {result['limit']}"
             for name, result in summary["slo"].items() if not result["met"]]
    if unmet:
        return "fail", "SLO not met: " + ", ".join(unmet)
    return "pass", "every invariant held" + (" and every SLO was met" if summary["slo"] else "")
