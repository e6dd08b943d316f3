"""One syntax for durations and one family of SLO flags, shared by `load` and the drills."""

from __future__ import annotations

import argparse
import dataclasses
import re

from service.arguments import bounded

# after the watchers' settle, the master waits this long for every process's final records
FLUSH_S = 3.0

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?")


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `2m`, `1h30m`, `1m30s`, `500ms` or a bare number of seconds."""
    raw = text.strip()
    try:
        seconds = float(raw)
    except ValueError:
        found = _DURATION.fullmatch(raw)
        if not raw or found is None or not any(found.groups()):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration: use e.g. 30s, 2m, 1h30m or 500ms") from None
        hours, minutes, secs, millis = found.groups()
        seconds = (int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs or 0)
                   + int(millis or 0) / 1000)
    if not 0 < seconds <= 24 * 3600 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: from 1ms to 24h")
    return seconds


@dataclasses.dataclass(frozen=True)
class Slo:
    """A limit a run's figure must not exceed."""
    name: str
    limit: float
    unit: str


# flag -> (SLO name, unit): `--slo-cart-p99-ms 100` and so on
SLO_FLAGS = {
    "--slo-cart-p99-ms": ("cart_p99_ms", "ms"),
    "--slo-lag-p99-ms": ("lag_p99_ms", "ms"),
    "--slo-failure-ratio": ("failure_ratio", ""),
}


def add_slo_flags(parser: argparse.ArgumentParser) -> None:
    """The SLO flags: each sets a limit the verdict checks (unset: not checked)."""
    helps = {
        "cart_p99_ms": "p99 of POST /cart, in ms",
        "lag_p99_ms": "p99 of delivery lag, in ms, for each transport with watchers",
        "failure_ratio": "failed requests / all requests (0 to 1)",
    }
    for flag, (name, _) in SLO_FLAGS.items():
        parser.add_argument(flag, dest=f"slo_{name}", type=bounded(float, 0), default=None,
                            metavar="N", help=f"fail the run when the {helps[name]} is over N")


def slos_from(args: argparse.Namespace) -> list[Slo]:
    """The SLOs given on the command line."""
    return [Slo(name, value, unit) for _, (name, unit) in SLO_FLAGS.items()
            if (value := getattr(args, f"slo_{name}", None)) is not None]
