"""`python -m service load`: prepare the shop, run Locust headless, judge, report.

Exit codes: 0 pass, 1 fail (the reason is the last line), 2 bad arguments or a shop
that cannot be prepared (nothing was changed or loaded).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from service.arguments import bounded
from service.load import judge as judging
from service.load import report
from service.load.options import FLUSH_S, add_slo_flags, parse_duration, slos_from
from service.load.shop import ShopUnreachable, check, release, state_after
from service.paths import DEFAULT_VAR_DIR

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEMO_REDIS_URL = "redis://127.0.0.1:6390/0"  # `make demo`'s
DEMO_PASSWORD_FILE = DEFAULT_VAR_DIR / "redis_password"  # kept there by `up`
COUNTS = ("shoppers", "ws_watchers", "lp_watchers", "rate_readers")
DEFAULTS = {"shoppers": 40, "ws_watchers": 100, "lp_watchers": 20, "rate_readers": 4}


class LoadError(RuntimeError):
    """The run cannot start; the message names the fix (exit code 2)."""


count = bounded(int, 0, 100_000)


def processes(text: str) -> int:
    value = count(text) if text != "-1" else -1
    if value == 0:
        raise argparse.ArgumentTypeError("0 processes would run nothing: give 1 or more, "
                                         "or -1 for one per core")
    return value


def workers(text: str) -> int:
    value = count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("a master needs at least 1 worker")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000",
                        help="the shop (default: `make demo`'s nginx, http://127.0.0.1:8000)")
    parser.add_argument("--duration", type=parse_duration, default=60.0,
                        help="how long shoppers change carts, e.g. 30s, 2m (default 60s)")
    parser.add_argument("--settle", type=parse_duration, default=3.0,
                        help="how long watchers keep listening after the load (default 3s)")
    for name in COUNTS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=count, default=DEFAULTS[name],
                            metavar="N", help=f"(default {DEFAULTS[name]})")
    parser.add_argument("--think", type=parse_duration, default=0.9,
                        help="a shopper's mean think time between actions (uniform from a "
                             "third to five thirds of it; default 0.9s)")
    parser.add_argument("--processes", type=processes, default=None, metavar="P",
                        help="load processes on this machine (Locust's --processes; -1: one "
                             "per core)")
    parser.add_argument("--out", default="var/load", help="report folder (default var/load)")
    parser.add_argument("--redis-url", default=os.environ.get("BB_REDIS_URL", DEMO_REDIS_URL),
                        help="the shop's Redis, for `stock reset` before the load "
                             "(default BB_REDIS_URL or make demo's)")
    parser.add_argument("--redis-sentinels", metavar="HOST:PORT,…",
                        default=os.environ.get("BB_REDIS_SENTINELS"),
                        help="the shop's sentinels, used instead of --redis-url (default "
                             "BB_REDIS_SENTINELS; the master name is BB_REDIS_SERVICE's)")
    parser.add_argument("--redis-cluster", metavar="HOST:PORT,…",
                        default=os.environ.get("BB_REDIS_CLUSTER"),
                        help="the shop's Redis Cluster nodes, used instead of --redis-url "
                             "(default BB_REDIS_CLUSTER)")
    parser.add_argument("--redis-password-file", metavar="FILE",
                        default=os.environ.get("BB_REDIS_PASSWORD_FILE"),
                        help="a file holding that Redis's password (default "
                             "BB_REDIS_PASSWORD_FILE; for make demo's Redis, var/redis_password)")
    parser.add_argument("--per-book", type=count, default=None, metavar="N",
                        help="stock of every book after the reset (default: the catalog's)")
    parser.add_argument("--no-reset", action="store_true",
                        help="do not reset the stock first (a shop whose Redis is out of reach)")
    parser.add_argument("--hold-ttl", type=parse_duration, default=900.0,
                        help="the shop's BB_HOLD_TTL_S: older holds may have expired "
                             "(default 15m)")
    parser.add_argument("--clock-offset-ms", type=float, default=0.0,
                        help="the shop's clock minus this machine's, for delivery lag "
                             "(default 0: clocks agree)")
    parser.add_argument("--no-bind-sources", action="store_true",
                        help="all users from one address (default: one 127.x.y.z each)")
    parser.add_argument("--master", action="store_true",
                        help="run no users here: wait for --expect-workers Locust workers "
                             "(`python -m service load --worker --master-host HOST` elsewhere)")
    parser.add_argument("--expect-workers", type=workers, default=1, metavar="N",
                        help="with --master: how many workers to wait for (default 1)")
    parser.add_argument("--worker", action="store_true", help="be a worker of a master")
    parser.add_argument("--master-host", default="127.0.0.1")
    add_slo_flags(parser)


def run(args: argparse.Namespace) -> int:
    """The whole run; returns the exit code."""
    base = args.url.rstrip("/")
    target = urlsplit(base)
    if target.scheme != "http" or not target.hostname:
        raise LoadError(f"--url {args.url!r} is not an http:// URL of a shop")
    users = {name: getattr(args, name) for name in COUNTS}
    if importlib.util.find_spec("locust") is None:
        raise LoadError("Locust is not installed: run `make venv` (pip install -e '.[load]')")
    if args.worker:
        return subprocess.call(locust_command(args, base, users, Path(args.out)))
    if not sum(users.values()):
        raise LoadError("every user count is 0: give some --shoppers or watchers")
    books = check(base)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("records.json", "summary.json"):
        (out / stale).unlink(missing_ok=True)
    if not args.no_reset:
        reset_stock(args)
    print(f"load: {sum(users.values())} users {users} against {base} ({books} books) for "
          f"{args.duration:g}s + {args.settle:g}s settle; reports in {out}", flush=True)
    started = time.monotonic()
    code = subprocess.call(locust_command(args, base, users, out))
    if not (out / "records.json").exists():
        print(f"verdict: fail: Locust ended (exit code {code}) without any records: see its "
              "output above", flush=True)
        return 1
    records = json.loads((out / "records.json").read_text())
    try:
        shop = state_after(base, list(records["holds"]))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        print(f"verdict: fail: the shop did not answer after the load, so nothing could be "
              f"checked ({type(exc).__name__}: {exc})", flush=True)
        return 1
    stats = judging.read_stats(out / "stats_stats.csv")
    summary = judging.judge(records, stats, shop, slos_from(args), users, args.duration,
                            int(args.hold_ttl * 1000))
    summary["released_after"] = release(base, records["holds"], shop.carts,
                                        bind_sources=not args.no_bind_sources)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(report.lines(summary)))
    print(f"Released {summary['released_after']} hold(s) the run still had. "
          f"Reports: {out}/report.html, {out}/summary.json, {out}/stats*.csv")
    print(f"verdict: {summary['verdict']}: {summary['reason']}", flush=True)
    return 0 if summary["verdict"] == "pass" else 1


def locust_command(args: argparse.Namespace, base: str, users: dict[str, int],
                   out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """Locust's command line for this run; `extra`: more --bb-* options (the drills')."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", base, *extra,
               "--bb-load-s", str(args.duration), "--bb-settle-s", str(args.settle),
               "--bb-clock-offset-ms", str(args.clock_offset_ms),
               "--bb-think-s", str(args.think)]
    command += [arg for name, n in users.items() for arg in (f"--bb-{name.replace('_', '-')}",
                                                             str(n))]
    if not args.no_bind_sources:
        command.append("--bb-bind-sources")
    if args.worker:
        return [*command, "--worker", "--master-host", args.master_host]
    total = sum(users.values())
    run_time_s = math.ceil(args.duration + args.settle + FLUSH_S)
    command += ["--headless", "-u", str(total), "-r", str(max(total, 1)),
                "--run-time", f"{run_time_s}s", "--stop-timeout", "1", "--only-summary",
                # the figures start once every user has started: the spawn burst (every
                # session, page and socket opened in the same second) is not steady state
                "--reset-stats",
                "--csv", str(out / "stats"), "--html", str(out / "report.html"),
                "--bb-records", str(out / "records.json"), "--loglevel", "WARNING"]
    if args.processes is not None:
        command += ["--processes", str(args.processes)]
    if args.master:
        command += ["--master", "--expect-workers", str(args.expect_workers)]
    return command


def reset_stock(args: argparse.Namespace) -> None:
    """`python -m service stock reset`: every hold released, every book's stock set."""
    command = [sys.executable, "-m", "service", "stock", "reset"]
    if args.per_book is not None:
        command += ["--per-book", str(args.per_book)]
    env = {**os.environ, "BB_REDIS_URL": args.redis_url}
    where = args.redis_url
    if args.redis_sentinels:
        env["BB_REDIS_SENTINELS"] = where = args.redis_sentinels
    if args.redis_cluster:
        env["BB_REDIS_CLUSTER"] = where = args.redis_cluster
    password_file = args.redis_password_file
    if password_file is None and args.redis_url == DEMO_REDIS_URL and \
            "BB_REDIS_PASSWORD" not in env and DEMO_PASSWORD_FILE.exists():
        password_file = str(DEMO_PASSWORD_FILE)
    if password_file:
        env["BB_REDIS_PASSWORD_FILE"] = password_file
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise LoadError(f"could not reset the stock at {where}: "
                        f"{done.stderr.strip() or done.stdout.strip()} (give the shop's "
                        "--redis-url, --redis-sentinels or --redis-cluster, or --no-reset)")
    print(done.stdout.strip(), flush=True)


def main(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except (LoadError, ShopUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
