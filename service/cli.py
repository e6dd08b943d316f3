"""Command line: `python -m service serve | stock show|set | up | ctl | upstream-sim`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import RedisError

from service.config import Config, ConfigError
from service.inventory.catalog import CatalogError
from service.listen import PortInUse
from service.paths import DEFAULT_VAR_DIR


def _logging(instance_id: str = "-") -> None:
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{instance_id}] %(name)s: %(message)s")


def cmd_serve(args: argparse.Namespace) -> int:
    from service.instance.server import run_instance
    config = Config.from_env(port=args.port, host=args.host, demo_blocking=args.demo_blocking)
    _logging(config.instance_id)
    logging.getLogger(__name__).info("settings: %r", config)
    try:
        asyncio.run(run_instance(config))
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


async def _stock(args: argparse.Namespace, config: Config) -> int:
    from service.instance.server import build_services
    services, pubsub = build_services(config)
    store = services.store
    try:
        await store.seed()
        if args.stock_command == "set":
            if args.sku not in services.catalog:
                print(f"error: unknown SKU {args.sku!r}; known: {', '.join(services.catalog.skus)}",
                      file=sys.stderr)
                return 2
            snapshot = await store.set_stock(args.sku, args.count)
            print(f"{snapshot.sku}: stock set to {args.count}; count now {snapshot.count} "
                  f"(version {snapshot.version}); every client has been notified")
        else:
            print(f"{'SKU':<12} {'STOCK':>6} {'HOLDS':>6} {'COUNT':>6} {'VERSION':>8}  EPOCH")
            for row in await store.stock_report():
                print(f"{row['sku']:<12} {row['stock']:>6} {row['holds']:>6} {row['count']:>6} "
                      f"{row['version']:>8}  {row['epoch']}")
        return 0
    finally:
        await services.redis.aclose()
        await pubsub.aclose()


def cmd_stock(args: argparse.Namespace) -> int:
    from service.inventory import StockBelowHolds
    config = Config.from_env()
    try:
        return asyncio.run(_stock(args, config))
    except StockBelowHolds as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as exc:
        print(f"error: cannot reach Redis at {config.redis_url} ({exc}); start it "
              f"(`make demo`) or set BB_REDIS_URL", file=sys.stderr)
        return 1


def cmd_up(args: argparse.Namespace) -> int:
    from service.ops.errors import OpsError
    from service.ops.layout import Layout
    from service.ops.up import run_up
    _logging("up")
    try:
        layout = Layout(instances=args.instances, http_port=args.http_port,
                        first_app_port=args.first_port, redis_port=args.redis_port,
                        upstream_port=args.upstream_port, drain_s=Config.from_env().drain_s,
                        var_dir=Path(args.var_dir).resolve())
        return run_up(layout)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_ctl(args: argparse.Namespace) -> int:
    from service.ops.ctl import run_ctl
    from service.ops.errors import OpsError
    try:
        return run_ctl(Path(args.var_dir).resolve(), args.action, args.name)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_upstream_sim(args: argparse.Namespace) -> int:
    from service.search.simulator import run
    _logging("upstream-sim")
    try:
        asyncio.run(run(args.host, args.port, args.latency_ms, args.error_rate))
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one app instance")
    serve.add_argument("--port", type=int, help="port to listen on (default BB_PORT or 8000)")
    serve.add_argument("--host", help="address to bind (default BB_HOST or 127.0.0.1)")
    serve.add_argument("--demo-blocking", action="store_true",
                       help="also serve GET /rate/blocking, seed listing 5-1's blocking fetch "
                            "(stalls the whole process; for make bench-seed only)")
    serve.set_defaults(func=cmd_serve)

    stock = commands.add_parser("stock", help="show or set stock in Redis (BB_REDIS_URL)")
    stock_commands = stock.add_subparsers(dest="stock_command", required=True)
    stock_commands.add_parser("show", help="stock, holds and count per book")
    set_stock = stock_commands.add_parser("set", help="set a book's total stock")
    set_stock.add_argument("sku")
    set_stock.add_argument("count", type=bounded(int, 0))
    stock.set_defaults(func=cmd_stock)

    up = commands.add_parser("up", help="run the local cluster under supervisord: Redis, the "
                             "upstream simulator, N instances and nginx")
    up.add_argument("--instances", type=int, default=3, help="app instances (default 3)")
    up.add_argument("--http-port", type=int, default=8000, help="nginx's port (default 8000)")
    up.add_argument("--first-port", type=int, default=8001,
                    help="port of app-1; app-2 gets the next one, … (default 8001)")
    up.add_argument("--redis-port", type=int, default=6390, help="default 6390")
    up.add_argument("--upstream-port", type=int, default=9000,
                    help="the upstream simulator's port (default 9000)")
    up.add_argument("--var-dir", default=str(DEFAULT_VAR_DIR),
                    help="where configs, data and logs go (default ./var)")
    up.set_defaults(func=cmd_up)

    ctl = commands.add_parser("ctl", help="operate the running cluster of `up`")
    ctl.add_argument("action", choices=["status", "start", "stop", "restart", "restart-all"])
    ctl.add_argument("name", nargs="?", help="a process: app-1…, nginx, redis, upstream-sim")
    ctl.add_argument("--var-dir", default=str(DEFAULT_VAR_DIR),
                     help="the var/ folder of the cluster (default ./var)")
    ctl.set_defaults(func=cmd_ctl)

    sim = commands.add_parser("upstream-sim", help="run the simulated upstream search API")
    sim.add_argument("--port", type=int, default=9000, help="port to listen on (default 9000)")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--latency-ms", type=bounded(float, 0, 600_000), default=0.0,
                     help="delay before every answer (default 0)")
    sim.add_argument("--error-rate", type=bounded(float, 0, 1), default=0.0,
                     help="fraction of searches answered with HTTP 500 (default 0)")
    sim.set_defaults(func=cmd_upstream_sim)
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
