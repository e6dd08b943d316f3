"""`python -m service drill NAME|all`: a runbook exercise under load, with a verdict.

For each drill: the load suite starts in the background; after `--duration` of load the
Chaos Toolkit experiment deploy/drills/NAME.json runs (steady state, fault, steady state,
rollbacks always); after another `--duration` the load stops, the shop is read back, the
load's holds are released, and the judge writes DIR/NAME/summary.json, journal.json and
timeline.png. Exit codes: 0 every drill passed, 1 one failed (the figure is named), 2 bad
input or a cluster not fit for the drill (nothing was injected).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import importlib.util
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from service.drills import chart, figures
from service.drills.background import BackgroundLoad, DrillLoadError
from service.drills.catalog import DRILLS, Drill
from service.drills.judge import Budgets, Window, add_budget_flags, budgets_for, judge
from service.load.command import LoadError
from service.load.command import count as load_count
from service.load.options import parse_duration
from service.load.shop import ShopUnreachable, page_timing, release, state_after
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import is_ready
from service.ops.redis_ha import redis_settings
from service.ops.supervisor import process_states

USERS = {"shoppers": 20, "ws_watchers": 60, "lp_watchers": 20, "rate_readers": 4}
READY_SAMPLE_S = 0.25
HOLD_TTL_MS = 900_000  # the cluster's BB_HOLD_TTL_S (`up` keeps the default)


# what a drill made for one kind of Redis needs, and each replicated kind's own drill
NEEDS = {"single": "a single Redis", "sentinel": "a cluster started with `up --redis-ha`",
         "cluster": "a cluster started with `up --redis-cluster`"}
FAILOVER_HINT = {"sentinel": " (with Sentinel, run redis-failover)",
                 "cluster": " (on a Redis Cluster, run shard-failover)"}


class DrillError(RuntimeError):
    """Bad input or a cluster unfit for the drill (exit code 2): nothing was injected."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=[*DRILLS, "all"], metavar="NAME|all",
                        help="one of: " + ", ".join(DRILLS) + "; or all of them")
    parser.add_argument("--var-dir", default="var",
                        help="the running cluster's folder (`up --var-dir`; default var)")
    parser.add_argument("--duration", type=parse_duration, default=20.0,
                        help="load before the fault and again after it (default 20s)")
    parser.add_argument("--settle", type=parse_duration, default=3.0,
                        help="how long watchers listen after the load (default 3s)")
    parser.add_argument("--out", default="var/drills",
                        help="reports go to OUT/NAME/ (default var/drills)")
    parser.add_argument("--experiment", metavar="FILE", type=Path,
                        help="run this Chaos Toolkit experiment instead of NAME's own, "
                             "judged by NAME's budgets (a variant of a drill)")
    for name, default in USERS.items():  # the load tool's user flags, with drill defaults
        parser.add_argument(f"--{name.replace('_', '-')}", type=load_count, default=default,
                            metavar="N", help=f"(default {default})")
    add_budget_flags(parser)


def main(args: argparse.Namespace) -> int:
    try:
        layout, drills = check_cluster(Path(args.var_dir), args)
    except (DrillError, OpsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {}
    for drill in drills:
        try:
            results[drill.name] = run_drill(drill, layout, args)
        except (DrillLoadError, LoadError, ShopUnreachable, OpsError) as exc:
            print(f"drill {drill.name}: fail: {exc}", flush=True)
            results[drill.name] = {"verdict": "fail", "reason": str(exc)}
    if len(drills) > 1:
        print("\n".join(f"  {name:<20} {result['verdict']}" for name, result in results.items()))
    return 0 if all(r["verdict"] == "pass" for r in results.values()) else 1


def check_cluster(var_dir: Path, args: argparse.Namespace) -> tuple[Layout, list[Drill]]:
    """The cluster and the drills to run on it (`all`: every drill for its kind of
    Redis), everything they need checked before the first one starts."""
    if importlib.util.find_spec("chaoslib") is None or importlib.util.find_spec("locust") is None:
        raise DrillError("Chaos Toolkit or Locust is not installed: run `make venv` "
                         "(pip install -e '.[load]')")
    if args.shoppers <= 0:
        raise DrillError("a drill needs load: give at least one --shoppers")
    if args.relax <= 0 or (args.budget_failure_ratio is not None
                           and not 0 <= args.budget_failure_ratio <= 1):
        raise DrillError("--relax must be above 0 and --budget-failure-ratio from 0 to 1")
    layout = Layout.load(var_dir)
    drills = [drill for drill in DRILLS.values() if drill.fits(layout.redis_mode)] \
        if args.name == "all" else [DRILLS[args.name]]
    states = process_states(layout)  # OpsError when its supervisord does not answer
    down = [name for name, info in states.items() if info["statename"] != "RUNNING"]
    not_ready = [name for name, port in layout.apps.items() if not is_ready(port)]
    if down or not_ready:
        raise DrillError(f"the cluster of {var_dir} is not healthy (not running: "
                         f"{', '.join(down) or 'none'}; not ready: {', '.join(not_ready) or 'none'}"
                         "): fix it first (`python -m service ctl status`)")
    if args.experiment is not None and (len(drills) != 1 or not args.experiment.is_file()):
        raise DrillError(f"--experiment needs one drill NAME and an existing file "
                         f"(got {args.name} and {args.experiment})")
    for drill in drills:
        if not drill.fits(layout.redis_mode):
            raise DrillError(f"{drill.name} needs {NEEDS[drill.redis]}"
                             f"{FAILOVER_HINT.get(layout.redis_mode, '')}: see deploy/RUNBOOK.md")
        if layout.instances < drill.min_instances:
            raise DrillError(f"{drill.name} needs at least {drill.min_instances} instances "
                             f"(the cluster has {layout.instances}): `ctl scale "
                             f"{drill.min_instances}` first")
        load_experiment(args.experiment or drill.experiment)
    return layout, drills


class ReadySampler(threading.Thread):
    """Samples, a few times a second, whether every instance of the cluster is ready."""

    def __init__(self, var_dir: Path):
        super().__init__(daemon=True)
        self.var_dir = var_dir
        self.samples: list[tuple[float, bool]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                layout = Layout.load(self.var_dir)  # a scale changes it
                ready = all(is_ready(port) for port in layout.apps.values())
            except OpsError:
                ready = False
            self.samples.append((time.time() * 1000, ready))
            self.done.wait(READY_SAMPLE_S)


def load_experiment(path: Path) -> dict[str, Any]:
    """A Chaos Toolkit experiment, read and validated (DrillError if it is not one)."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment as chaos_load

    try:
        experiment: dict[str, Any] = chaos_load(str(path))
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise DrillError(f"{path} is not a valid experiment: {exc}") from None
    return experiment


def run_experiment(experiment: dict[str, Any], var_dir: Path, records: Path,
                   budgets: Budgets) -> dict[str, Any]:
    """The Chaos Toolkit experiment, through its library, rollbacks always played."""
    from chaoslib.experiment import run_experiment as chaos_run

    settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
    configuration = {"var_dir": str(var_dir), "load_records": str(records),
                     "failure_budget": budgets.failure_ratio}
    journal: dict[str, Any] = chaos_run(experiment, settings=settings,
                                        experiment_vars=(configuration, {}))
    return journal


def fault_window(journal: dict[str, Any], converge_from: str) -> tuple[float, float, float]:
    """(start, end, converge from) ms of the experiment's method: when the fault was
    injected, when the method's last activity (the fault's end, e.g. SIGCONT) returned,
    and the moment the drill's watchers are judged from (its `converge_from`: "start",
    "end", or the end of the method's activity of that name)."""
    runs = [run for run in journal.get("run", []) if run["activity"]["type"] == "action"]
    if not runs:
        raise OpsError(f"the experiment ran no action (status {journal.get('status')})")

    def ms(stamp: str) -> float:
        moment = datetime.datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp() * 1000
    start, end = ms(runs[0]["start"]), ms(runs[-1]["end"])
    if converge_from in ("start", "end"):
        return start, end, start if converge_from == "start" else end
    named = [run for run in runs if run["activity"]["name"] == converge_from]
    if not named:
        raise OpsError(f"the experiment has no activity {converge_from!r} (or it did not run)")
    return start, end, ms(named[0]["end"])


def steady_state(journal: dict[str, Any]) -> dict[str, Any]:
    """Whether the hypothesis held before and after, and what did not."""
    problems = []
    for phase in ("before", "after"):
        result = (journal.get("steady_states") or {}).get(phase)
        if result is None:
            problems.append(f"{phase}: not checked")
        elif not result.get("steady_state_met"):
            failed = [p["activity"]["name"] for p in result.get("probes", [])
                      if not p.get("tolerance_met")]
            problems.append(f"{phase}: {', '.join(failed) or 'not met'}")
    if journal.get("status") != "completed":
        problems.append(f"experiment {journal.get('status')}")
    if journal.get("deviated"):
        problems.append("the steady state deviated")
    return {"held": not problems, "problems": problems}


def run_drill(drill: Drill, layout: Layout, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out).resolve() / drill.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = f"http://127.0.0.1:{layout.http_port}"
    _, longpoll_s = page_timing(base)
    budgets = budgets_for(drill, args, longpoll_s)
    users = {name: getattr(args, name) for name in USERS}
    print(f"drill {drill.name}: {drill.fault}\n  load {users} against {base}: "
          f"{args.duration:g}s, the fault, {args.duration:g}s", flush=True)
    load = BackgroundLoad(base, redis_settings(layout), out / "load", users, args.settle)
    load_start_ms = time.time() * 1000
    load.start()
    sampler = ReadySampler(layout.var_dir)
    sampler.start()
    try:
        time.sleep(args.duration)
        print("  injecting the fault (Chaos Toolkit)…", flush=True)
        experiment = load_experiment(args.experiment or drill.experiment)
        journal = run_experiment(experiment, layout.var_dir, load.records_path, budgets)
        start_ms, end_ms, converge_ms = fault_window(journal, drill.converge_from)
        print(f"  fault over after {(end_ms - start_ms) / 1000:.1f}s; "
              f"experiment {journal['status']}; load for {args.duration:g}s more", flush=True)
        time.sleep(args.duration)
    finally:
        load_end_ms = time.time() * 1000 + args.settle * 1000  # the watchers' settle
        records = load.stop()
        sampler.done.set()
    (out / "journal.json").write_text(json.dumps(journal, indent=2, default=str) + "\n")
    try:
        shop = state_after(base, list(records["holds"]))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise OpsError(f"the shop did not answer after the drill ({exc})") from None
    window = Window(load_start_ms, load_end_ms, start_ms, end_ms, converge_ms)
    summary = judge(drill, records, shop, window, sampler.samples, budgets, HOLD_TTL_MS,
                    steady_state(journal))
    summary["released_after"] = release(base, records["holds"], shop.carts)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    series = figures.per_second(records["timeline"], load_start_ms, window.load_end_ms)
    chart.draw(series, (summary["window_s"]["fault_start"], summary["window_s"]["fault_end"]),
               f"drill {drill.name}: {summary['verdict']}", out / "timeline.png")
    for name, result in summary["figures"].items():
        mark = "ok  " if result["met"] else "FAIL"
        print(f"  {mark} {name:<26} {result['value']!s:>10}  budget {result['budget']}")
    print(f"drill {drill.name}: {summary['verdict']}: {summary['reason']} (reports: {out})",
          flush=True)
    return summary
