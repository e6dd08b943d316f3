"""The summary of a load run, for people (summary.json has the same figures)."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def lines(summary: dict[str, Any]) -> list[str]:
    """The summary as printed at the end of `python -m service load`."""
    out = [f"Load run: {summary['duration_s']:.0f} s, users {summary['users']}, "
           f"{summary['processes']} load process(es)", "", "Requests by kind (outcome classes):"]
    for kind, counts in sorted(summary["requests"].items()):
        total = sum(counts.values())
        detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        out.append(f"  {kind:<18} {total:>8}   {detail}")
    cart = summary["cart"]
    out += ["", f"Cart POSTs: {cart['ops']} ({cart['ops_per_s']}/s), failed {cart['failures']}; "
                f"p50 {_ms(cart['p50_ms'])}, p95 {_ms(cart['p95_ms'])}, p99 {_ms(cart['p99_ms'])}"]
    for transport, lag in summary["delivery_lag_ms"].items():
        out.append(f"Delivery lag, {transport:<9}: {lag['count']} deliveries; p50 {_ms(lag['p50'])}"
                   f", p95 {_ms(lag['p95'])}, p99 {_ms(lag['p99'])}, max {_ms(lag['max'])}")
    out += ["", "Requests per instance (share):"]
    for instance, share in summary["instance_share"].items():
        out.append(f"  {instance:<16} {summary['instances'][instance]:>8}  {share:.1%}")
    out.append("Watchers per instance: " + ", ".join(
        f"{name} {n}" for name, n in summary["watchers_per_instance"].items()))
    if summary["cache"]:
        out.append("Tweet-rate cache: " + ", ".join(
            f"{name} {n}" for name, n in sorted(summary["cache"].items())))
    holds = summary["holds"]
    out += [f"Holds: {holds['acknowledged']} acknowledged, {holds['released']} released, "
            f"{holds['unknown']} unknown (over {holds['books']} books)", "", "Invariants:"]
    for name, value in summary["invariants"].items():
        out.append(f"  {name:<22} {value:>6}  {'ok' if value == 0 else 'BROKEN'}")
    for name, examples in summary["examples"].items():
        out += [f"    {name}: {example}" for example in examples[:3]]
    if summary["slo"]:
        out.append("SLOs:")
        for name, result in summary["slo"].items():
            out.append(f"  {name:<22} {result['value']} <= {result['limit']}: "
                       f"{'met' if result['met'] else 'NOT MET'}")
    return out
