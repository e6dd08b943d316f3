"""`python -m service load` against a real cluster of `up` (two instances, a generated
2,000-book catalog): a pass, a pass with two load processes, and for each invariant a run
in which the test breaks it behind the tool's back (straight in Redis) and the verdict
is `fail` with that invariant named. Bad arguments exit 2 before anything changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service import redis_keys as keys
from support.deployment import ROOT, Deployment

pytestmark = pytest.mark.timeout(120)

BOOKS = 2000
SUMMARY_KEYS = {"duration_s", "instances", "cart", "delivery_lag_ms", "invariants", "slo",
                "verdict"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("load") / "var", instances=2,
                            up_args=("--books", str(BOOKS)))
    deployment.start()
    yield deployment
    deployment.stop()


def load(shop: Deployment, out: Path, *args: str, during=None, duration_s: float = 4,
         settle_s: float = 3) -> tuple[int, str, dict | None]:
    """Run the load tool; `during(started)` runs once Locust's records first appear."""
    command = [sys.executable, "-m", "service", "load", "--url", shop.base,
               "--redis-url", shop.redis_url, "--redis-password-file",
               str(shop.redis_password_file), "--out", str(out), "--duration", f"{duration_s}s", "--settle", f"{settle_s}s", *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ))
    injector = None
    if during is not None:
        injector = threading.Thread(target=_when_running, args=(out, during), daemon=True)
        injector.start()
    output, _ = proc.communicate(timeout=100)
    if injector is not None:
        injector.join(10)
    summary_file = out / "summary.json"
    return proc.returncode, output, json.loads(summary_file.read_text()) \
        if summary_file.exists() else None


def _when_running(out: Path, during) -> None:
    deadline = time.monotonic() + 60
    while not (out / "records.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    during(time.monotonic())


def users(shoppers=20, ws=20, lp=8, rate=2) -> list[str]:
    return ["--shoppers", str(shoppers), "--ws-watchers", str(ws), "--lp-watchers", str(lp),
            "--rate-readers", str(rate)]


def test_a_short_run_passes_with_figures_from_both_instances(shop, tmp_path):
    code, output, summary = load(shop, tmp_path, *users())
    assert code == 0, output
    assert set(summary) >= SUMMARY_KEYS
    assert set(summary["instances"]) == {"app-1", "app-2"}, summary["instances"]
    for transport in ("websocket", "longpoll"):
        lag = summary["delivery_lag_ms"][transport]
        assert lag["count"] > 0 and lag["p99"] is not None, (transport, lag)
    assert summary["cart"]["ops"] > 0 and summary["cart"]["p99_ms"] is not None
    assert summary["invariants"] == {"negative_counts": 0, "lost_acked_holds": 0,
                                     "unconverged_watchers": 0, "version_regressions": 0}
    assert summary["holds"]["books"] >= 10, "holds should spread over many of 2,000 books"
    assert summary["verdict"] == "pass"
    assert output.strip().splitlines()[-1].startswith("verdict: pass")
    assert (tmp_path / "report.html").exists() and (tmp_path / "stats_stats.csv").exists()
    # the holds the run took were given back
    assert summary["released_after"] == summary["holds"]["acknowledged"]
    # every virtual user came from its own loopback address, as nginx saw it
    log = (shop.var_dir / "log" / "nginx-access.log").read_text().splitlines()
    addresses = {line.split()[0] for line in log if line.startswith("127.16.")}
    assert len(addresses) >= 20 + 20 + 8 + 2, len(addresses)


def test_records_of_two_load_processes_are_judged_together(shop, tmp_path):
    code, output, summary = load(shop, tmp_path, *users(), "--processes", "2")
    assert code == 0, output
    assert summary["processes"] == 2
    watchers = sum(summary["watchers_per_instance"].values())
    assert watchers == 20 + 8, summary["watchers_per_instance"]  # every watcher, both processes
    shoppers_kinds = summary["requests"]["book page"]
    assert sum(shoppers_kinds.values()) >= 20  # each of the 20 shoppers opened a book page


def every_book(shop: Deployment, change) -> None:
    """change(pipeline, sku) for every book in Redis, straight: no script, no publish."""
    redis = shop.redis()
    skus = [keys.sku_of_stock_key(key.decode())
            for key in redis.scan_iter(match=keys.stock_key("*"), count=1000)]
    assert len(skus) >= BOOKS
    with redis.pipeline(transaction=False) as pipe:
        for sku in skus:
            change(pipe, sku)
        pipe.execute()


def broken_by(shop: Deployment, tmp_path: Path, break_it, at_s: float,
              duration_s: float = 4) -> tuple[int, str, dict]:
    def during(started: float) -> None:
        time.sleep(max(0.0, started + at_s - time.monotonic()))
        break_it()
    code, output, summary = load(shop, tmp_path, *users(), during=during,
                                 duration_s=duration_s)
    return code, output, summary


# invariant -> (what the test does to every book straight in Redis, when (s after the
# load's start), seconds of load)
BREAKS = {
    # during the settle, when no shopper can take them again: every hold
    "lost_acked_holds": (lambda pipe, sku: pipe.delete(keys.holds_key(sku)), 4.8, 4),
    "negative_counts": (lambda pipe, sku: pipe.set(keys.stock_key(sku), 0), 1.5, 4),
    # only shoppers can see it (the instances' hubs take no older version): give them
    # time to look again
    "version_regressions": (lambda pipe, sku: pipe.set(keys.version_key(sku), 0), 1.0, 6),
    # during the settle: a newer version of every book that is never published
    "unconverged_watchers": (lambda pipe, sku: pipe.incr(keys.version_key(sku)), 4.8, 4),
}


@pytest.mark.parametrize("invariant", list(BREAKS))
def test_an_invariant_broken_behind_the_tools_back_fails_the_run(shop, tmp_path, invariant):
    change, at_s, duration_s = BREAKS[invariant]
    code, output, summary = broken_by(shop, tmp_path, lambda: every_book(shop, change),
                                      at_s=at_s, duration_s=duration_s)
    assert code == 1, output
    assert summary["invariants"][invariant] > 0, summary["invariants"]
    assert invariant in output.strip().splitlines()[-1]


def test_a_run_with_nothing_to_observe_fails(shop, tmp_path):
    code, output, summary = load(shop, tmp_path, *users(shoppers=0, ws=0, lp=0, rate=2),
                                 duration_s=2, settle_s=1)
    assert code == 1, output
    assert summary["verdict"] == "fail"
    assert "nothing to judge" in output.strip().splitlines()[-1]


@pytest.mark.parametrize("args, message", [
    (["--url", "http://127.0.0.1:9"], "does not answer"),
    (["--shoppers", "-1"], "out of range"),
    (["--bogus"], "unrecognized arguments"),
    (["--duration", "5x"], "not a duration"),
])
def test_bad_arguments_exit_2_before_anything_changes(shop, tmp_path, args, message):
    redis = shop.redis()
    redis.zadd(keys.holds_key("redis"), {"sentinel-session": time.time() * 1000 + 600_000})
    before = redis.zrange(keys.holds_key("redis"), 0, -1)
    result = subprocess.run([sys.executable, "-m", "service", "load", "--out", str(tmp_path),
                             "--redis-url", shop.redis_url, "--redis-password-file",
                             str(shop.redis_password_file), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert redis.zrange(keys.holds_key("redis"), 0, -1) == before  # no reset happened
    assert not (tmp_path / "summary.json").exists()
    redis.zrem(keys.holds_key("redis"), "sentinel-session")


def test_stock_reset_refuses_a_negative_count(shop):
    result = subprocess.run([sys.executable, "-m", "service", "stock", "reset", "--per-book",
                             "-1"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **shop.redis_env})
    assert result.returncode == 2 and "out of range" in result.stderr, result.stderr
