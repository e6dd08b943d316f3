"""What the commands share: number arguments with clear errors, and the log format."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable


def setup_logging(instance_id: str = "-") -> None:
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{instance_id}] %(name)s: %(message)s")


def bounded(kind: type[int] | type[float], minimum: float,
            maximum: float | None = None) -> Callable[[str], float]:
    """An argparse type: a number of `kind` within [minimum, maximum], or a clear error."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if value != value or value < minimum or (maximum is not None and value > maximum):
            allowed = f"between {minimum:g} and {maximum:g}" if maximum is not None \
                else f"at least {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: must be {allowed}")
        return value
    return parse
