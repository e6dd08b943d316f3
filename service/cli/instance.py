"""`serve` (one app instance) and `stock show | set | reset` (the stock in Redis)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from redis.exceptions import AuthenticationError, RedisError

from service.arguments import bounded
from service.cli.common import setup_logging
from service.config import Config
from service.listen import PortInUse


def cmd_serve(args: argparse.Namespace) -> int:
    from service.instance.server import run_instance
    config = Config.from_env(port=args.port, host=args.host, demo_blocking=args.demo_blocking)
    setup_logging(config.instance_id)
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
        if args.stock_command == "reset":
            books, released = await store.reset(args.per_book)
            print(f"stock reset: {books} books, {released} hold(s) released; every client "
                  "has been notified")
        elif args.stock_command == "set":
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
    except AuthenticationError as exc:
        print(f"error: Redis at {config.redis_url} refused us ({exc}): {PASSWORD_FIX}",
              file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"error: cannot reach Redis at {config.redis_url} ({exc}); start it "
              f"(`make demo`) or set BB_REDIS_URL", file=sys.stderr)
        return 1


PASSWORD_FIX = ("set BB_REDIS_PASSWORD, or BB_REDIS_PASSWORD_FILE to a file holding it "
                "(`make demo` keeps its Redis password in var/redis_password)")


def register(commands: Any) -> None:
    """Add `serve` and `stock` to the command line."""
    serve = commands.add_parser("serve", help="run one app instance")
    serve.add_argument("--port", type=int, help="port to listen on (default BB_PORT or 8000)")
    serve.add_argument("--host", help="address to bind (default BB_HOST or 127.0.0.1)")
    serve.add_argument("--demo-blocking", action="store_true",
                       help="also serve GET /rate/blocking, seed listing 5-1's blocking fetch "
                            "(stalls the whole process; for make bench-seed only)")
    serve.set_defaults(func=cmd_serve)

    stock = commands.add_parser("stock", help="show, set or reset stock in Redis (BB_REDIS_URL)")
    stock_commands = stock.add_subparsers(dest="stock_command", required=True)
    stock_commands.add_parser("show", help="stock, holds and count per book")
    set_stock = stock_commands.add_parser("set", help="set a book's total stock")
    set_stock.add_argument("sku")
    set_stock.add_argument("count", type=bounded(int, 0))
    reset = stock_commands.add_parser(
        "reset", help="release every hold and set every book's stock, telling every client "
                      "(before a load test); covers every book Redis has, of any catalog")
    reset.add_argument("--per-book", type=bounded(int, 0), metavar="N",
                       help="every book's stock (default: the catalog's; books of another "
                            "catalog keep theirs)")
    stock.set_defaults(func=cmd_stock)
