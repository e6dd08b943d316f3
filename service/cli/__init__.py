"""Command line: `python -m service serve | stock show|set|reset | catalog generate | up |
ctl | upstream-sim | load | drill`."""

from __future__ import annotations

import argparse
import sys

from service.cli import drill, instance, load, local
from service.config import ConfigError
from service.inventory.catalog import CatalogError


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    instance.register(commands)
    local.register(commands)
    load.register(commands)
    drill.register(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, CatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
