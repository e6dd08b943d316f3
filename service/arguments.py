"""Number arguments for the command lines (argparse types) with errors that say what is
allowed: shared by `python -m service …` and the load tool."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def bounded(kind: Callable[[str], Number], minimum: float,
            maximum: float | None = None) -> Callable[[str], Number]:
    """An argparse type: a number of `kind` within [minimum, maximum], or a clear error."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> Number:
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
