"""`serve` (one app instance) and `stock show | set | reset` (the stock in Redis)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from redis.exceptions import AuthenticationError, RedisError

from service.arguments import bounded
from service.cli.common import setup_logging
from service.config import Config, ConfigError
from service.listen import PortInUse
from service.ops.errors import OpsError
from service.redis_connect import described


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
    services = build_services(config)
    store = services.store
    try:
        assert services.connection is not None
        await services.connection.check()  # and, on a cluster, learn its slot map
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
            assert services.connection is not None
            print(_described(await services.connection.topology()))
        return 0
    finally:
        assert services.connection is not None
        await services.connection.aclose()


def cmd_stock(args: argparse.Namespace) -> int:
    from service.inventory import StockBelowHolds
    try:
        config = Config.from_env(_local_cluster_redis(args.var_dir) if args.var_dir else None)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_stock(args, config))
    except (StockBelowHolds, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`stock show | head`): not Redis's fault
        return 0
    except AuthenticationError as exc:
        print(f"error: Redis at {described(config)} refused us ({exc}): {PASSWORD_FIX}",
              file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"error: Redis at {described(config)} failed: {exc} (is it running? `make demo` "
              "starts one; BB_REDIS_URL, BB_REDIS_SENTINELS or BB_REDIS_CLUSTER say where it "
              "is)", file=sys.stderr)
        return 1



def _described(topology: dict[str, Any]) -> str:
    """`stock show`'s last lines: where the inventory lives."""
    if topology["mode"] == "single":
        return f"Redis: {topology['primary']} (one Redis)"
    if topology["mode"] == "cluster":
        lines = [f"Redis: a cluster of {len(topology['shards'])} shard(s)"]
        for shard in topology["shards"]:
            slots = ",".join(f"{a}-{b}" for a, b in shard["slots"]) or "no slots"
            replicas = ", ".join(f"{r['address']} ({r['state']})" for r in shard["replicas"])
            lines.append(f"  primary {shard['primary']}: slots {slots}; replicas: "
                         f"{replicas or 'none'}")
        return "\n".join(lines)
    lines = [f"Redis: primary {topology['primary']} (Sentinel), "
             f"{len(topology['replicas'])} replica(s)"]
    lines += [f"  replica {r['address']}: {r['state']}, {r['lag_s']} s since its last ack, "
              f"{r['behind_bytes']} bytes behind" for r in topology["replicas"]]
    return "\n".join(lines)


def _local_cluster_redis(var_dir: str) -> dict[str, str]:
    """The environment with BB_REDIS_* pointing at the Redis of the local cluster in
    var_dir, and its password file (which `up` keeps there)."""
    from service.ops.layout import Layout
    from service.ops.redis_ha import redis_settings
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BB_REDIS_PASSWORD")}
    return {**env, **redis_settings(Layout.load(Path(var_dir)))}


PASSWORD_FIX = ("for the local cluster give --var-dir (make demo's: var); otherwise set "
                "BB_REDIS_PASSWORD, or BB_REDIS_PASSWORD_FILE to a file holding it")


def register(commands: Any) -> None:
    """Add `serve` and `stock` to the command line."""
    serve = commands.add_parser("serve", help="run one app instance")
    serve.add_argument("--port", type=int, help="port to listen on (default BB_PORT or 8000)")
    serve.add_argument("--host", help="address to bind (default BB_HOST or 127.0.0.1)")
    serve.add_argument("--demo-blocking", action="store_true",
                       help="also serve GET /rate/blocking, seed listing 5-1's blocking fetch "
                            "(stalls the whole process; for make bench-seed only)")
    serve.set_defaults(func=cmd_serve)

    stock = commands.add_parser("stock", help="show, set or reset stock in Redis (BB_REDIS_URL, "
                                              "or the local cluster's with --var-dir)")
    stock_commands = stock.add_subparsers(dest="stock_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--var-dir", metavar="DIR",
                       help="the Redis of the local cluster in DIR (make demo's: var), with the "
                            "password `up` keeps there; default: BB_REDIS_URL and "
                            "BB_REDIS_PASSWORD(_FILE)")
    stock_commands.add_parser("show", parents=[where], help="stock, holds and count per book")
    set_stock = stock_commands.add_parser("set", parents=[where],
                                          help="set a book's total stock")
    set_stock.add_argument("sku")
    set_stock.add_argument("count", type=bounded(int, 0))
    reset = stock_commands.add_parser(
        "reset", parents=[where],
        help="release every hold and set every book's stock, telling every client (before a "
             "load test); covers every book Redis has, of any catalog")
    reset.add_argument("--per-book", type=bounded(int, 0), metavar="N",
                       help="every book's stock (default: the catalog's; books of another "
                            "catalog keep theirs)")
    stock.set_defaults(func=cmd_stock)
