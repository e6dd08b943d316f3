"""What a request's answer means to a client: the outcome classes, defined once for the
load tool and the drills.

* ok: 2xx; and 409 for a sold-out book or a hold not held, a correct answer to a race
* limited: 429, the shop asked the client to slow down
* unconfirmed: 503 with Retry-After, the change may or may not have been kept
* retryable: the connection closed before any response byte (the client retries once,
  as browsers do, and the retry's outcome counts)
* failed: everything else
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    OK = "ok"
    LIMITED = "limited"
    UNCONFIRMED = "unconfirmed"
    RETRYABLE = "retryable"
    FAILED = "failed"


def classify(status: int | None, retry_after: str | None = None) -> Outcome:
    """The outcome of an answer with this status (None: no response byte arrived)."""
    if status is None or status == 0:
        return Outcome.RETRYABLE
    if 200 <= status < 300 or status == 409:
        return Outcome.OK
    if status == 429:
        return Outcome.LIMITED
    if status == 503 and retry_after:
        return Outcome.UNCONFIRMED
    return Outcome.FAILED
