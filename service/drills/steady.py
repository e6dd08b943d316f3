"""The drills' steady state, as Chaos Toolkit probes (checked before and after the
fault): every instance ready, every instance's live view of the counts agreeing with
Redis, and the running load's failures under budget.

Each probe waits up to `within_s` for the state to hold (right after a fault the
cluster may still be recovering, which is what the budget of the drill judges) and
returns a bool; the experiments' tolerance is `true`.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from service.drills.counting import failure_counts
from service.ops.cluster_slots import pair_problem
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import is_ready
from service.ops.redis_ha import replication_problem

log = logging.getLogger("chaostoolkit")
POLL_S = 0.5
# a change this recent may still be on its way to an instance's live view
IN_FLIGHT_MS = 1_000
# the most books one request may name (the shop's limits.MAX_SKUS_PER_REQUEST; the drills
# talk to the shop over HTTP only, as its users do)
MAX_SKUS_PER_REQUEST = 50


def _eventually(check: Any, within_s: float) -> bool:
    deadline = time.monotonic() + float(within_s)
    while True:
        problem = check()
        if problem is None:
            return True
        if time.monotonic() >= deadline:
            log.warning("steady state not met after %gs: %s", float(within_s), problem)
            return False
        time.sleep(POLL_S)


def instances_ready(var_dir: str, within_s: float = 30.0) -> bool:
    """Every instance of the cluster answers /readyz, and nginx answers /api/books."""
    def problem() -> str | None:
        try:
            layout = Layout.load(Path(var_dir))  # read again: a scale changes it
        except OpsError as exc:
            return str(exc)
        not_ready = [name for name, port in layout.apps.items() if not is_ready(port)]
        if not_ready:
            return f"not ready: {', '.join(not_ready)}"
        try:
            _get_json(f"http://127.0.0.1:{layout.http_port}/api/books?per_page=1")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return f"nginx does not serve /api/books ({exc})"
        return None
    return _eventually(problem, within_s)


def counts_consistent(var_dir: str, within_s: float = 15.0) -> bool:
    """Every instance's live view (what its sockets and long-polls are told) has the
    version and count Redis has (read through nginx's /api/books), but for changes
    still in flight; and no count is negative."""
    def problem() -> str | None:
        layout = Layout.load(Path(var_dir))
        try:
            base = f"http://127.0.0.1:{layout.http_port}"
            skus = list(_api_books(base))
            views = {name: _live_view(port, skus) for name, port in layout.apps.items()}
            # Redis read after the views: a view may lag it (a change in flight), never lead
            truth = _api_books(base)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            return f"could not read the counts ({exc})"
        return _disagreement(views, truth)
    return _eventually(problem, within_s)


def redis_replicating(var_dir: str, within_s: float = 30.0) -> bool:
    """Every Redis node in its place: with Sentinel, the primary the sentinels name takes
    writes and every other data node replicates from it; on a Redis Cluster, each shard
    has a primary and its partner replicates from it (links up)."""
    return _eventually(lambda: replication_problem_of(Layout.load(Path(var_dir))), within_s)


def replication_problem_of(layout: Layout) -> str | None:
    """What keeps the replicated Redis of `layout` from being whole (None: nothing)."""
    return pair_problem(layout) if layout.redis_mode == "cluster" \
        else replication_problem(layout)


def _disagreement(views: dict[str, dict[str, dict[str, Any]]],
                  truth: dict[str, dict[str, Any]]) -> str | None:
    now_ms = time.time() * 1000  # Redis's clock is this machine's (the cluster is local)
    for sku, row in truth.items():
        if row["inventoryCount"] < 0:
            return f"{sku} has a negative count ({row['inventoryCount']})"
        for name, view in views.items():
            seen = view.get(sku)
            if seen is None:
                return f"{name} has no live view of {sku}"
            same = (seen["epoch"], seen["version"]) == (row["epoch"], row["version"])
            if same and seen["inventoryCount"] != row["inventoryCount"]:
                return (f"{name} shows {sku} at count {seen['inventoryCount']}, Redis at "
                        f"{row['inventoryCount']}, both version {row['version']}")
            if not same and now_ms - row["changedAt"] > IN_FLIGHT_MS:
                return (f"{name} shows {sku} at version {seen['version']}, Redis has "
                        f"{row['version']} since {now_ms - row['changedAt']} ms")
    return None


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def _api_books(base: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    page = 1
    while True:
        batch = _get_json(f"{base}/api/books?page={page}&per_page=200")
        rows.update((row["sku"], row) for row in batch)
        if len(batch) < 200:
            return rows
        page += 1


def _live_view(port: int, skus: list[str]) -> dict[str, dict[str, Any]]:
    """An instance's live view of these books: long-polls with a cursor behind every
    version answer at once from what the instance holds in memory."""
    base = f"http://127.0.0.1:{port}"
    view: dict[str, dict[str, Any]] = {}
    for start in range(0, len(skus), MAX_SKUS_PER_REQUEST):
        chunk = skus[start:start + MAX_SKUS_PER_REQUEST]
        query = [*(("sku", sku) for sku in chunk), ("since", ",".join("0" for _ in chunk))]
        body = _get_json(f"{base}/cart/status?{urlencode(query)}")
        view.update((row["sku"], row) for row in body.get("books", [body]))
    return view


def load_failures_within(records: str = "", budget: float = 0.005) -> bool:
    """The running load's failure ratio (of `records`, the records file the drill's load
    writes every second) is within `budget`. With no load running (a plain `chaos run`),
    there is nothing to judge and the probe holds."""
    if not records or not Path(records).exists():
        log.info("no load records at %r: the load's failure ratio is not checked", records)
        return True
    try:
        outcomes = json.loads(Path(records).read_text())["outcomes"]
    except (OSError, ValueError, KeyError) as exc:
        log.warning("unreadable load records %s: %s", records, exc)
        return False
    failed, total = failure_counts(outcomes)
    ratio = failed / total if total else 0.0
    log.info("load so far: %d of %d requests failed (%.4f; budget %g)", failed, total, ratio,
             float(budget))
    return ratio <= float(budget)
