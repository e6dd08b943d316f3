"""The drill's load: the load suite's Locust run in the background, recording its
timeline, until the drill drops a stop file (however long the fault took)."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from service.load import command as load_command
from service.load.options import FLUSH_S

MAX_LOAD = "2h"  # a bound on the load, should the drill never drop its stop file
START_TIMEOUT_S = 60.0


class DrillLoadError(RuntimeError):
    """The load did not start or did not end as it should; the message says why."""


class BackgroundLoad:
    """One Locust run against `base`, its reports in `out`."""

    def __init__(self, base: str, redis_settings: dict[str, str], out: Path,
                 users: dict[str, int], settle_s: float):
        """`redis_settings`: how the cluster's instances reach Redis (BB_REDIS_URL,
        BB_REDIS_SENTINELS or BB_REDIS_CLUSTER, and BB_REDIS_PASSWORD_FILE), for the
        stock reset."""
        self.base, self.out, self.users = base, out, users
        self.stop_file = out / "stop"
        parser = argparse.ArgumentParser()
        load_command.add_arguments(parser)
        flags = {"BB_REDIS_URL": "--redis-url", "BB_REDIS_SENTINELS": "--redis-sentinels",
                 "BB_REDIS_CLUSTER": "--redis-cluster",
                 "BB_REDIS_PASSWORD_FILE": "--redis-password-file"}
        redis = [part for name, value in redis_settings.items() if name in flags
                 for part in (flags[name], value)]
        self.args = parser.parse_args(["--url", base, "--duration", MAX_LOAD, "--settle",
                                       f"{settle_s}s", *redis, "--out", str(out)])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def records_path(self) -> Path:
        return self.out / "records.json"

    def start(self) -> None:
        """Reset the stock (every hold released), start Locust, and return once every
        user has started and the first records are written."""
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in (self.stop_file, self.records_path):
            stale.unlink(missing_ok=True)
        load_command.reset_stock(self.args)
        command = load_command.locust_command(
            self.args, self.base, self.users, self.out,
            extra=("--bb-timeline", "--bb-stop-file", str(self.stop_file)))
        with open(self.out / "locust.log", "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.records_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DrillLoadError(f"the load did not start; see {self.out / 'locust.log'}")
            time.sleep(0.2)

    def stop(self) -> dict[str, Any]:
        """End the load (watchers settle first); its merged records."""
        self.stop_file.touch()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=self.args.settle + FLUSH_S + 30)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=10)
        try:
            records: dict[str, Any] = json.loads(self.records_path.read_text())
        except (OSError, ValueError) as exc:
            raise DrillLoadError(f"the load left no records ({exc}); see "
                                 f"{self.out / 'locust.log'}") from None
        return records
