"""The drills' judge: figures from a timeline, budgets, and a verdict that can fail."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.drills import figures
from service.drills.catalog import DRILLS
from service.drills.command import fault_window
from service.drills.experiments import text
from service.drills.judge import Window, add_budget_flags, budgets_for, judge
from service.load.judge import ShopState
from service.load.outcomes import Outcome
from service.load.records import Records, Watcher, merge
from service.load.timeline import Timeline
from service.ops.errors import OpsError

T0 = 1_000_000_000_000  # ms: the load starts here; the fault is from +10 s to +12 s
# watchers judged from the fault's end, as most drills do
WINDOW = Window(T0, T0 + 30_000, T0 + 10_000, T0 + 12_000, T0 + 12_000)


def budget_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_budget_flags(parser)
    return parser.parse_args(list(argv))


def recorded(ws_arrivals=(1.0, 13.0), failures=(), hold_state="acked", writes=()) -> Records:
    """One shopper's hold, two changes of one book (at +1 s and +11 s), one WebSocket
    watcher that showed them at the given seconds, one long-poll watcher on time."""
    records = Records()
    records.timeline = Timeline()
    records.hold("tok-1", "internet", hold_state, T0)
    for at_s, kind, outcome in failures:
        records.timeline.request(T0 + at_s * 1000, kind, outcome)
        records.outcomes[kind][outcome] += 1
    records.outcomes["cart add"]["ok"] += 1000
    for at_s in writes:
        records.timeline.request(T0 + at_s * 1000, "cart add", Outcome.OK.value)
    changes = [T0 + 1_000, T0 + 11_000]
    for changed in changes:
        records.timeline.change("internet", changed)
    for transport, arrivals in (("websocket", ws_arrivals), ("longpoll", (1.0, 12.5))):
        watcher_id = f"{transport}-1"
        records.watchers[watcher_id] = watcher = Watcher(transport, ["internet"])
        watcher.connected, watcher.deliveries = True, 2
        records.timeline.holds(watcher_id, "internet", T0 - 5_000, T0)  # on open
        for changed, arrived_s in zip(changes, arrivals):
            records.timeline.holds(watcher_id, "internet", changed, T0 + arrived_s * 1000)
    return records


def verdict(records: Records, drill="kill-node", budgets=None, carts=None, ready=None,
            steady=True, window=WINDOW):
    data = {**merge([records.to_dict()]), "final_from": 1}
    shop = ShopState({}, {"tok-1": {"internet"}} if carts is None else carts, T0 + 30_000)
    samples = ready if ready is not None else [(T0 + 11_000, False), (T0 + 13_000, True)]
    return judge(DRILLS[drill], data, shop, window, samples,
                 budgets or budgets_for(DRILLS[drill], budget_args(), 25.0), 900_000,
                 {"held": steady, "problems": [] if steady else ["after: every-instance-ready"]})


def test_a_drill_within_every_budget_passes_with_every_figure():
    summary = verdict(recorded())
    assert summary["verdict"] == "pass", summary["reason"]
    assert set(summary["figures"]) == {
        "steady_state", "lost_acked_holds", "negative_counts", "version_regressions",
        "failure_ratio", "longest_failure_window_s", "ws_converge_s", "lp_converge_s",
        "ready_after_s"}
    # the change at +11 s, shown at +13 s: 1 s after the fault ended at +12 s
    assert summary["figures"]["ws_converge_s"]["value"] == 1.0
    assert summary["figures"]["ready_after_s"]["value"] == 1.0


def test_a_watcher_late_beyond_the_budget_fails_and_is_named():
    summary = verdict(recorded(ws_arrivals=(1.0, 16.5)))
    assert summary["verdict"] == "fail"
    assert "ws_converge_s 4.5" in summary["reason"]
    assert "websocket-1" in summary["examples"]["late_websocket"][0]


def test_a_watcher_that_never_shows_a_change_fails():
    summary = verdict(recorded(ws_arrivals=(1.0,)))
    assert summary["figures"]["ws_converge_s"] == {"value": None, "budget": 3.0, "met": False}


def test_a_hung_node_is_judged_from_the_start_of_the_fault():
    # shown 1.5 s after the change (at +11 s): 2.5 s after the fault ended is fine, but
    # the hang started at +10 s, so 2.5 s after its start too
    hung = Window(T0, T0 + 30_000, T0 + 10_000, T0 + 12_000, T0 + 10_000)
    summary = verdict(recorded(ws_arrivals=(1.0, 12.5)), drill="hung-node", window=hung)
    assert summary["figures"]["ws_converge_s"]["value"] == 1.5


def journal_of(*activities: tuple[str, str, str]) -> dict:
    return {"status": "completed", "run": [
        {"activity": {"type": "action", "name": name}, "start": start, "end": end}
        for name, start, end in activities]}


def test_each_drill_names_the_moment_its_watchers_are_judged_from():
    journal = journal_of(("kill-9-the-redis-primary", "2026-11-30T10:00:00", "2026-11-30T10:00:01"),
                         ("wait-for-the-promotion", "2026-11-30T10:00:01", "2026-11-30T10:00:04"),
                         ("old-primary-back-as-a-replica", "2026-11-30T10:00:09",
                          "2026-11-30T10:00:15"))
    start, end, converge = fault_window(journal, DRILLS["redis-failover"].converge_from)
    assert (end - start, converge - start) == (15_000, 4_000)
    assert fault_window(journal, DRILLS["hung-node"].converge_from)[2] == start
    assert fault_window(journal, DRILLS["kill-node"].converge_from)[2] == end
    with pytest.raises(OpsError, match="no activity 'promotion'"):
        fault_window(journal, "promotion")
    for drill in DRILLS.values():  # every name the catalog gives is an activity of its drill
        if drill.converge_from not in ("start", "end"):
            names = [a["name"] for a in json.loads(drill.experiment.read_text())["method"]]
            assert drill.converge_from in names, drill.name


def test_a_failover_is_judged_by_its_longest_time_without_an_answered_write():
    steady_writes = [at / 2 for at in range(60)]  # one every 0.5 s
    gap = [at for at in steady_writes if not 10.0 <= at < 13.5]  # none from +10 s to 13.5 s
    summary = verdict(recorded(writes=gap), drill="redis-failover")
    figure = summary["figures"]["longest_write_gap_s"]
    assert figure == {"value": 3.5, "budget": 5.0, "met": True}, figure
    assert summary["verdict"] == "pass", summary["reason"]
    longer = [at for at in steady_writes if not 10.0 <= at < 16.0]
    summary = verdict(recorded(writes=longer), drill="redis-failover")
    assert summary["verdict"] == "fail" and "longest_write_gap_s 6.0" in summary["reason"]
    never = [at for at in steady_writes if at < 10.0]  # no write answered after the kill
    assert verdict(recorded(writes=never), drill="redis-failover")["figures"][
        "longest_write_gap_s"]["value"] is None
    assert "longest_write_gap_s" not in verdict(recorded())["figures"]  # not kill-node's


def test_the_sentinel_drill_and_the_single_redis_drills_know_their_cluster():
    assert DRILLS["redis-failover"].fits("sentinel")
    assert not DRILLS["redis-failover"].fits("single")
    assert not DRILLS["restart-redis"].fits("sentinel")
    assert not DRILLS["restart-redis"].fits("cluster")  # no process named redis to kill
    assert all(DRILLS["kill-node"].fits(mode) for mode in ("single", "sentinel", "cluster"))
    probes = json.loads(DRILLS["redis-failover"].experiment.read_text())[
        "steady-state-hypothesis"]["probes"]
    assert "every-redis-node-replicating" in [probe["name"] for probe in probes]


def test_failures_make_windows_and_a_ratio_and_a_planned_drill_allows_none():
    failures = [(10.0, "cart add", "failed"), (10.5, "cart add", "unconfirmed"),
                (11.4, "api books", "failed"), (20.0, "cart remove", "limited"),
                (21.0, "cart add", "retryable")]
    summary = verdict(recorded(failures=failures))
    assert summary["failure_windows"][0] == {"start_s": 10.0, "end_s": 11.4, "failures": 3}
    assert summary["figures"]["longest_failure_window_s"]["value"] == 1.4
    assert summary["failures_by_kind"]["cart add: unconfirmed"] == 1
    assert summary["requests"]["failed"] == 4  # a retryable request counts by its retry
    assert summary["verdict"] == "pass", summary["reason"]
    planned = verdict(recorded(failures=failures), drill="roll-deploy")
    assert planned["verdict"] == "fail" and "failed_requests 4" in planned["reason"]


def test_an_impossible_budget_fails():
    budgets = budgets_for(DRILLS["kill-node"], budget_args("--budget-failure-ratio", "0"), 25)
    summary = verdict(recorded(failures=[(10.0, "cart add", "failed")]), budgets=budgets)
    assert summary["verdict"] == "fail" and "failure_ratio" in summary["reason"]


@pytest.mark.parametrize("broken", ["lost hold", "steady state", "never ready"])
def test_each_broken_invariant_fails(broken):
    summary = verdict(recorded(), carts={} if broken == "lost hold" else None,
                      steady=broken != "steady state",
                      ready=[(T0 + 13_000, False)] if broken == "never ready" else None)
    assert summary["verdict"] == "fail", broken


def test_too_little_observed_fails():
    summary = verdict(recorded(hold_state="released"))
    assert summary["verdict"] == "fail" and "no hold was acknowledged" in summary["reason"]


def test_budgets_relax_time_but_not_invariants_and_flags_override():
    relaxed = budgets_for(DRILLS["kill-node"], budget_args("--relax", "3"), 25.0)
    assert (relaxed.ws_converge_s, relaxed.lp_converge_s, relaxed.failure_window_s) == \
        (9.0, 90.0, 6.0)
    assert relaxed.failure_ratio == 0.005
    given = budgets_for(DRILLS["roll-deploy"],
                        budget_args("--budget-failure-window", "1s", "--relax", "3"), 25.0)
    assert given.failure_window_s == 1.0 and given.failed_requests is None
    assert budgets_for(DRILLS["roll-deploy"], budget_args(), 25.0).failed_requests == 0


def test_failure_windows_split_on_gaps():
    events = [[0, "a", "failed"], [900, "a", "failed"], [2_500, "a", "failed"]]
    assert [w["failures"] for w in figures.failure_windows(events)] == [2, 1]


def test_per_second_series_counts_failures_and_lag():
    timeline = Timeline()
    timeline.request(T0 + 100, "cart add", Outcome.OK.value)
    timeline.request(T0 + 200, "cart add", Outcome.FAILED.value)
    timeline.delivery(T0 + 300, 12.0)
    series = figures.per_second(timeline.to_dict(), T0, T0 + 1_500)
    assert series["requests"][:2] == [2, 0] and series["failures"][0] == 1
    assert series["lag_p99_ms"] == [12.0, None]


def test_every_committed_experiment_is_the_generated_one_and_chaos_validates_it():
    chaos = Path(sys.executable).parent / "chaos"
    for name, drill in DRILLS.items():
        assert drill.experiment.read_text() == text(name), \
            f"{drill.experiment} is stale: run `python -m service.drills.experiments`"
        done = subprocess.run([str(chaos), "--no-log-file", "validate", str(drill.experiment)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(drill.experiment.read_text())["rollbacks"]


def test_the_steady_state_probes_say_when_the_cluster_is_inconsistent(tmp_path):
    import time as clock

    from service.drills.steady import _disagreement, load_failures_within
    old = clock.time() * 1000 - 5_000
    row = {"sku": "internet", "inventoryCount": 4, "version": 7, "epoch": "e1", "changedAt": old}
    truth = {"internet": row}
    assert _disagreement({"app-1": {"internet": row}}, truth) is None
    assert "count 5" in _disagreement({"app-1": {"internet": {**row, "inventoryCount": 5}}},
                                      truth)
    assert "version 6" in _disagreement({"app-1": {"internet": {**row, "version": 6}}}, truth)
    in_flight = {"internet": {**row, "changedAt": clock.time() * 1000}}
    assert _disagreement({"app-1": {"internet": {**row, "version": 6}}}, in_flight) is None
    assert "negative" in _disagreement({}, {"internet": {**row, "inventoryCount": -1}})
    records = tmp_path / "records.json"
    records.write_text(json.dumps({"outcomes": {"cart add": {"ok": 99, "failed": 1}}}))
    assert load_failures_within(str(records), 0.02) is True
    assert load_failures_within(str(records), 0.005) is False
