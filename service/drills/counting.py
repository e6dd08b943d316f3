"""How a drill counts failed requests, in one place for the steady-state probe and the
judge: the load tool's outcome classes, where a *limited* or *unconfirmed* answer is a
failure too (no drill is about them), and a *retryable* one counts by its retry."""

from __future__ import annotations

from service.load.outcomes import Outcome

FAILURES = (Outcome.FAILED, Outcome.LIMITED, Outcome.UNCONFIRMED)


def failure_counts(outcomes: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(failed requests, requests) over every request kind; a retried request is one."""
    failed = total = 0
    for counts in outcomes.values():
        failed += sum(counts.get(outcome.value, 0) for outcome in FAILURES)
        total += sum(n for outcome, n in counts.items() if outcome != Outcome.RETRYABLE.value)
    return failed, total


def is_failure(outcome: str) -> bool:
    return outcome in {o.value for o in FAILURES}
