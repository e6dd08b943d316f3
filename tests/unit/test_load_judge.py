"""The load tool's pure parts: outcome classes, durations, popularity, and the judge,
which must be able to say `fail` for every reason it knows."""

import argparse
import random

import pytest

from service.load.judge import ShopState, judge
from service.load.options import Slo, parse_duration
from service.load.outcomes import Outcome, classify
from service.load.popularity import Popularity
from service.load.records import Records, Watcher, merge

STATS = {("POST", "/cart"): {"Request Count": "10", "50%": "8", "95%": "20", "99%": "30",
                             "Max Response Time": "31"},
         ("WS", "deliver"): {"Request Count": "5", "50%": "4", "95%": "9", "99%": "12",
                             "Max Response Time": "12"},
         ("LP", "deliver"): {"Request Count": "3", "50%": "5", "95%": "9", "99%": "15",
                             "Max Response Time": "15"}}
USERS = {"shoppers": 1, "ws_watchers": 1, "lp_watchers": 1, "rate_readers": 0}


def observed() -> Records:
    """One shopper with one acknowledged hold, and a watcher per transport, up to date."""
    records = Records()
    records.outcome("cart add", Outcome.OK, "app-1")
    records.hold("tok-1", "internet", "acked", 1_000)
    for transport in ("websocket", "longpoll"):
        records.watchers[transport] = watcher = Watcher(transport, ["internet"])
        watcher.connected, watcher.instance = True, "app-2"
        records.saw(transport, {"sku": "internet", "inventoryCount": 9, "version": 7,
                                "epoch": "e1"})
    return records


def shop(carts=None, version=7) -> ShopState:
    return ShopState({"internet": ("e1", version)},
                     {"tok-1": {"internet"}} if carts is None else carts, 2_000)


def verdict(records: Records, state: ShopState, slos=(), stats=STATS, ttl_ms=900_000):
    data = {**merge([records.to_dict()]), "final_from": 1}
    return judge(data, stats, state, list(slos), USERS, 10.0, ttl_ms)


def test_everything_held_passes():
    summary = verdict(observed(), shop())
    assert summary["verdict"] == "pass", summary["reason"]
    assert summary["cart"]["p99_ms"] == 30 and summary["delivery_lag_ms"]["longpoll"]["p99"] == 15


def test_a_hold_the_shop_no_longer_lists_is_lost_unless_it_could_have_expired():
    assert verdict(observed(), shop(carts={}))["invariants"]["lost_acked_holds"] == 1
    assert verdict(observed(), shop(carts={}), ttl_ms=500)["verdict"] == "pass"


def test_a_watcher_behind_the_shop_is_unconverged():
    summary = verdict(observed(), shop(version=8))
    assert summary["invariants"]["unconverged_watchers"] == 2
    assert summary["verdict"] == "fail" and "unconverged_watchers 2" in summary["reason"]


def test_negative_counts_and_regressions_are_counted_per_client():
    records = observed()
    records.saw("websocket", {"sku": "internet", "inventoryCount": -1, "version": 8,
                              "epoch": "e1"})
    records.saw("websocket", {"sku": "internet", "inventoryCount": 3, "version": 5,
                              "epoch": "e1"})
    records.saw("websocket", {"sku": "internet", "inventoryCount": 3, "version": 1,
                              "epoch": "e2"})  # a new epoch starts over: no regression
    summary = verdict(records, shop())
    assert summary["invariants"]["negative_counts"] == 1
    assert summary["invariants"]["version_regressions"] == 1


@pytest.mark.parametrize("spoil, reason", [
    (lambda r: r.holds.clear(), "no hold was acknowledged"),
    (lambda r: setattr(r.watchers["websocket"], "connected", False), "never connected"),
])
def test_too_little_observed_fails(spoil, reason):
    records = observed()
    spoil(records)
    summary = verdict(records, shop())
    assert summary["verdict"] == "fail" and reason in summary["reason"], summary["reason"]


def test_a_transport_without_deliveries_fails():
    stats = {key: row for key, row in STATS.items() if key != ("LP", "deliver")}
    summary = verdict(observed(), shop(), stats=stats)
    assert "no longpoll delivery" in summary["reason"]


def test_an_unmet_slo_fails_and_a_met_one_passes():
    summary = verdict(observed(), shop(), slos=[Slo("cart_p99_ms", 20, "ms")])
    assert summary["verdict"] == "fail" and "cart_p99_ms 30.0 > 20" in summary["reason"]
    summary = verdict(observed(), shop(), slos=[Slo("lag_p99_ms", 15, "ms"),
                                                Slo("failure_ratio", 0, "")])
    assert summary["verdict"] == "pass", summary["reason"]


def test_records_from_a_process_that_never_sent_its_last_fail_the_run():
    data = {**merge([observed().to_dict(), Records().to_dict()]), "final_from": 1}
    summary = judge(data, STATS, shop(), [], USERS, 10.0, 900_000)
    assert "final records of 1 load process" in summary["reason"]


def test_outcome_classes():
    assert [classify(s, r) for s, r in [(200, None), (409, None), (429, None), (503, "1"),
                                        (503, None), (None, None), (500, None)]] == [
        Outcome.OK, Outcome.OK, Outcome.LIMITED, Outcome.UNCONFIRMED, Outcome.FAILED,
        Outcome.RETRYABLE, Outcome.FAILED]


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("2m", 120), ("1h30m", 5400),
                                           ("1m30s", 90), ("500ms", 0.5), ("12", 12)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-3s", "0s", "m", "25h"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_popularity_is_skewed_and_the_same_in_every_process():
    skus = [f"demo-{i:05d}" for i in range(2000)]
    first, second = Popularity(skus), Popularity(list(reversed(skus)))
    assert first.ranked == second.ranked
    rng = random.Random(1)
    picks = [first.pick(rng) for _ in range(10_000)]
    top = sum(1 for sku in picks if sku in first.ranked[:20])
    assert top > 3_000  # 1% of the books draw well over a third of the picks
    assert len(set(picks)) > 500  # and the long tail is visited
