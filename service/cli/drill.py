"""`drill`: the runbook's exercises under load, with verdicts (service/drills/)."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def cmd_drill(args: argparse.Namespace) -> int:
    from service.drills.command import main
    # Chaos Toolkit tells what it checks and does on its logger; show it, indented
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("    chaos: %(message)s"))
    chaos = logging.getLogger("chaostoolkit")
    chaos.addHandler(handler)
    chaos.setLevel(logging.INFO)
    chaos.propagate = False
    return main(args)


def register(commands: Any) -> None:
    """Add `drill` to the command line."""
    from service.drills.command import __doc__ as about
    from service.drills.command import add_arguments
    drill = commands.add_parser(
        "drill", help="run a runbook exercise (a Chaos Toolkit experiment) under load and "
                      "judge it", description=about,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(drill)
    drill.set_defaults(func=cmd_drill)
