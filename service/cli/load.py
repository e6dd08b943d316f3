"""`load`: the load test with a verdict (service/load/)."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_load(args: argparse.Namespace) -> int:
    from service.load.command import main
    return main(args)


def register(commands: Any) -> None:
    """Add `load` to the command line."""
    from service.load.command import add_arguments
    load = commands.add_parser(
        "load", help="load-test a running shop with Locust and give a verdict",
        description="Prepare the shop (stock reset), run shoppers, WebSocket and long-poll "
                    "watchers and rate readers on Locust, then check the invariants from "
                    "outside and report. Exit 0 pass, 1 fail (reason on the last line), "
                    "2 bad arguments.")
    add_arguments(load)
    load.set_defaults(func=cmd_load)
