"""The load suite's Locust file: `python -m service load` runs it headless; `locust -f
service/load/locustfile.py --host http://127.0.0.1:8000` opens Locust's web UI on it.

Every load process (the master, each `--processes` worker, each worker on another
machine) keeps its own records; workers send theirs to the master every second and at
the end, and the master writes the merged records for the judge (`--bb-records`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import between, events
from locust.runners import MasterRunner, WorkerRunner

from service.load.client import Run
from service.load.options import FLUSH_S
from service.load.records import merge
from service.load.shoppers import RateReader, Shopper
from service.load.timeline import Timeline
from service.load.watchers import LongPollWatcher, WebSocketWatcher

__all__ = ["LongPollWatcher", "RateReader", "Shopper", "WebSocketWatcher"]

USER_CLASSES = {"shoppers": Shopper, "ws_watchers": WebSocketWatcher,
                "lp_watchers": LongPollWatcher, "rate_readers": RateReader}
RECORDS_MESSAGE = "bb_records"
SEND_INTERVAL_S = 1.0
STOP_POLL_S = 0.2
PROGRESS_INTERVAL_S = 2.0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("Burt's Books live (set by `python -m service load`)")
    for name in USER_CLASSES:
        group.add_argument(f"--bb-{name.replace('_', '-')}", type=int, default=None,
                           help=f"how many {name.replace('_', ' ')} (fixed count)")
    group.add_argument("--bb-load-s", type=float, default=0.0,
                       help="seconds of load; shoppers stop changing carts after it (0: never)")
    group.add_argument("--bb-settle-s", type=float, default=3.0,
                       help="seconds the watchers keep listening after the load")
    group.add_argument("--bb-records", default="", help="where the master writes the records")
    group.add_argument("--bb-think-s", type=float, default=0.9,
                       help="a shopper's mean think time, in seconds")
    group.add_argument("--bb-bind-sources", action="store_true",
                       help="give every virtual user its own 127.x.y.z (loopback targets)")
    group.add_argument("--bb-clock-offset-ms", type=float, default=0.0,
                       help="the shop's clock minus this machine's (delivery lag)")
    group.add_argument("--bb-timeline", action="store_true",
                       help="record events in time (for the drills' judge and chart)")
    group.add_argument("--bb-stop-file", default="",
                       help="end the load when this file appears (then settle and quit)")


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    for name, user_class in USER_CLASSES.items():
        count = getattr(options, f"bb_{name}")
        if count is not None:
            user_class.fixed_count = count
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        Collector.current = collector = Collector(options.bb_records)
        runner.register_message(RECORDS_MESSAGE, collector.receive)
        events.quitting.add_listener(lambda **_: collector.write())


@events.test_start.add_listener
def _started(environment: Any, **_: Any) -> None:
    # Read here, not at init: a worker on another machine gets the master's options only
    # with the order to start.
    options = environment.parsed_options
    Run.load_s = options.bb_load_s or float("inf")
    Run.settle_s = options.bb_settle_s
    Run.bind_sources = options.bb_bind_sources
    Run.clock_offset_ms = options.bb_clock_offset_ms
    if options.bb_timeline:
        Run.records.timeline = Timeline()
    Shopper.wait_time = between(options.bb_think_s / 3, options.bb_think_s * 5 / 3)
    runner = environment.runner
    Run.process_index = runner.worker_index + 1 if isinstance(runner, WorkerRunner) else 0
    if isinstance(runner, MasterRunner) and Collector.current is not None:
        Collector.current.expected = runner.worker_count  # each must send its records
    if not isinstance(runner, MasterRunner) and environment.host:
        Run.catalog(environment.host)  # before any user starts: not in the figures
        Run.learn_timing(environment.host)
        LongPollWatcher.network_timeout = Run.longpoll_s + 5.0
    Run.started_s = time.time()
    if options.bb_stop_file:
        gevent.spawn(_stop_when_file_appears, Path(options.bb_stop_file), environment)
    if not isinstance(runner, MasterRunner):
        gevent.spawn(_send_records, runner)
    if not isinstance(runner, WorkerRunner):
        gevent.spawn(_progress, environment)


def _stop_when_file_appears(path: Path, environment: Any) -> None:
    """The drills end the load when the fault has passed, however long it took: the load
    stops now, the watchers settle, and the master (or lone process) then quits."""
    while not path.exists():
        gevent.sleep(STOP_POLL_S)
    Run.load_s = min(Run.load_s, time.time() - Run.started_s)
    if not isinstance(environment.runner, WorkerRunner):
        gevent.sleep(Run.settle_s + FLUSH_S)
        environment.runner.quit()


def _send_records(runner: Any) -> None:
    """Send this process's records to the master every second, and once more at the end."""
    while True:
        end_s = Run.started_s + Run.load_s + Run.settle_s  # a stop file moves it
        final = time.time() >= end_s
        runner.send_message(RECORDS_MESSAGE, {"final": final, "records": Run.records.to_dict()})
        if final:
            return
        gevent.sleep(min(SEND_INTERVAL_S, max(0.0, end_s - time.time())))


class Collector:
    """The master's copy of every process's latest records, written merged to `path`."""

    current: Collector | None = None

    def __init__(self, path: str):
        self.path = Path(path) if path else None
        self.parts: dict[str, dict[str, Any]] = {}
        self.finals: set[str] = set()
        self.expected = 1  # load processes (the master's workers, or this one)

    def receive(self, environment: Any, msg: Any, **_: Any) -> None:
        self.parts[msg.node_id] = msg.data["records"]
        if msg.data["final"]:
            self.finals.add(msg.node_id)
        self.write()

    def write(self) -> None:
        if self.path is None:
            return
        merged = {**merge(list(self.parts.values())), "final_from": len(self.finals),
                  "expected_processes": self.expected}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(merged))
        os.replace(temporary, self.path)


def _progress(environment: Any) -> None:
    """A line every couple of seconds: elapsed, users, requests/s, failures."""
    total_s = Run.load_s + Run.settle_s
    while True:
        gevent.sleep(PROGRESS_INTERVAL_S)
        stats = environment.stats.total
        elapsed_s = time.time() - Run.started_s
        phase = "load" if Run.loading() else "settle"
        users = environment.runner.user_count
        print(f"  {elapsed_s:5.0f}s/{total_s:.0f}s {phase:<6} users {users:>5}"
              f"  req/s {stats.current_rps:7.1f}  requests {stats.num_requests:>7}"
              f"  failures {stats.num_failures:>5}", file=sys.stderr, flush=True)
