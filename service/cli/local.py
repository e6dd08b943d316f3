"""The shop on one machine: `up`, `ctl`, `catalog generate` and `upstream-sim`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import sys
from pathlib import Path
from typing import Any

from service.arguments import bounded
from service.cli.common import setup_logging
from service.config import Config
from service.inventory.catalog import CatalogError
from service.listen import PortInUse
from service.paths import DEFAULT_VAR_DIR


def cmd_catalog(args: argparse.Namespace) -> int:
    from service.inventory.demo_catalog import DemoCatalogError, write_catalog
    try:
        written = write_catalog(Path(args.out), args.books, args.copies, args.seed)
    except DemoCatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(written.summary())
    return 0


def _up_catalog(args: argparse.Namespace, var_dir: Path) -> Path | None:
    """The catalog every instance gets as BB_CATALOG (None: the built-in one), generated
    or checked before anything starts. Raises DemoCatalogError."""
    from service.inventory.catalog import Catalog
    from service.inventory.demo_catalog import (
        DemoCatalogError,
        check_request,
        shop_books,
        write_catalog,
    )
    if args.books is not None and args.catalog is not None:
        raise DemoCatalogError("--books and --catalog exclude each other: generate a catalog "
                               "with --books, or bring your own with --catalog")
    if args.copies is not None and args.books is None:
        raise DemoCatalogError("--copies sets the stock of a generated catalog: add --books N")
    if args.books is not None:
        check_request(args.books, args.copies, shop_books())  # before var/ is made
        var_dir.mkdir(parents=True, exist_ok=True)
        written = write_catalog(var_dir / "catalog.json", args.books, args.copies)
        print(f"catalog: {written.summary()}", flush=True)
        return written.path
    if args.catalog is None:
        print("catalog: the built-in one (no BB_CATALOG)", flush=True)
        return None
    path = Path(args.catalog).resolve()
    try:
        books = len(Catalog.load(path).books)
    except CatalogError as exc:
        raise DemoCatalogError(f"--catalog {exc}; fix the file, generate one with `python -m "
                               f"service catalog generate`, or leave out --catalog") from None
    print(f"catalog: {path} ({books} books)", flush=True)
    return path


def _redis_shards(args: argparse.Namespace) -> int:
    from service.ops.errors import OpsError
    if args.redis_shards is not None and not args.redis_cluster:
        raise OpsError("--redis-shards needs --redis-cluster")
    if not args.redis_cluster:
        return 0
    return 3 if args.redis_shards is None else int(args.redis_shards)


def cmd_up(args: argparse.Namespace) -> int:
    from service.inventory.demo_catalog import DemoCatalogError
    from service.ops.errors import OpsError
    from service.ops.layout import Layout
    from service.ops.up import run_up
    setup_logging("up")
    try:
        layout = Layout(instances=args.instances, http_port=args.http_port,
                        first_app_port=args.first_port, redis_port=args.redis_port,
                        upstream_port=args.upstream_port, drain_s=Config.from_env().drain_s,
                        var_dir=Path(args.var_dir).resolve(), redis_ha=args.redis_ha,
                        redis_shards=_redis_shards(args))
        layout = dataclasses.replace(layout, catalog=_up_catalog(args, layout.var_dir))
        return run_up(layout)
    except (OpsError, DemoCatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _catalog_skus(layout: Any) -> list[str]:
    """The SKUs of the catalog the local cluster serves (for `ctl status` and `move-book`)."""
    from service.inventory.catalog import Catalog
    from service.paths import DEFAULT_CATALOG
    return list(Catalog.load(layout.catalog or DEFAULT_CATALOG).skus)


def cmd_ctl(args: argparse.Namespace) -> int:
    from service.ops.ctl import run_ctl
    from service.ops.errors import OpsError
    try:
        return run_ctl(Path(args.var_dir).resolve(), args.action, args.name, args.target,
                       books=_catalog_skus)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_redis_cluster_create(args: argparse.Namespace) -> int:
    import os

    from service.config import ConfigError, node_addresses, secret_setting
    from service.ops.errors import OpsError
    from service.ops.redis_cluster import create
    example = "10.0.0.5:6379,10.0.0.6:6379,10.0.0.7:6379"
    try:
        primaries = node_addresses({"--primaries": args.primaries}, "--primaries", example)
        replicas = node_addresses({"--replicas": args.replicas}, "--replicas", example)
        password = secret_setting(os.environ, "BB_REDIS_PASSWORD") or None
        create(primaries, replicas, password, out=lambda line: print(line, flush=True))
    except (ConfigError, OpsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_upstream_sim(args: argparse.Namespace) -> int:
    from service.search.simulator import run
    setup_logging("upstream-sim")
    try:
        asyncio.run(run(args.host, args.port, args.latency_ms, args.error_rate))
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_health_watch(args: argparse.Namespace) -> int:
    from service.ops.watch import watch
    setup_logging("health-watch")
    watch(Path(args.var_dir).resolve())
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    import os

    from service.ops.errors import OpsError
    from service.ops.secrets import ensure_secrets
    try:
        ensure_secrets(Path(args.dir), os.environ, mode=0o644 if args.shared else 0o600)
    except (OpsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"secrets ready in {args.dir}")
    return 0


def cmd_redis_ha_files(args: argparse.Namespace) -> int:
    from service.ops.redis_ha import compose_files
    secrets = Path(args.secrets)
    if not (secrets / "redis_password").is_file():
        print(f"error: {secrets}/redis_password not found: run `python -m service secrets "
              f"--dir {secrets}` first (compose's `secrets` service)", file=sys.stderr)
        return 2
    try:
        compose_files(secrets, Path(args.nodes), str(args.primary), args.service,
                      args.down_after_ms)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(commands: Any) -> None:
    """Add `up`, `catalog`, `ctl`, `health-watch`, `secrets`, `redis-ha-files`,
    `redis-cluster-create` and `upstream-sim` to the command line."""
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
    up.add_argument("--books", type=int, metavar="N",
                    help="generate a demo catalog of N books into <var-dir>/catalog.json and "
                         "serve it (see `catalog generate`). Redis in --var-dir keeps the stock "
                         "of the SKUs it already has (another --copies does not change it), so "
                         "another catalog on the same var/ only adds its new books")
    up.add_argument("--copies", type=int, metavar="M",
                    help="with --books: every book's stock (default: the shop's own, and a "
                         "spread of 1..50 for generated books)")
    up.add_argument("--catalog", metavar="FILE",
                    help="serve this catalog file (checked before anything starts); default: "
                         "the built-in catalog")
    up.add_argument("--redis-ha", action="store_true",
                    help="Redis with Sentinel: a primary and two replicas (on --redis-port and "
                         "the next two ports) and three sentinels (the three after); the "
                         "instances find the primary through the sentinels")
    up.add_argument("--redis-cluster", action="store_true",
                    help="a Redis Cluster: --redis-shards shards, each a primary and a replica "
                         "(redis-N on --redis-port + 2(N-1), redis-N-replica on the next "
                         "port), created on the first start")
    up.add_argument("--redis-shards", type=int, metavar="N",
                    help="with --redis-cluster: how many shards (default 3)")
    up.set_defaults(func=cmd_up)

    catalog = commands.add_parser("catalog", help="demo catalogs at shop scale")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    generate = catalog_commands.add_parser(
        "generate", help="write a demo catalog: the shop's books, then generated titles "
                         "marked \"demo\": true (same arguments, same file)")
    generate.add_argument("--books", type=int, required=True, metavar="N",
                          help="books in total, the shop's own included (at least 4)")
    generate.add_argument("--copies", type=int, metavar="M",
                          help="every book's stock (default: the shop's own, and a spread of "
                               "1..50 for generated books)")
    generate.add_argument("--seed", type=int, default=1,
                          help="random seed of the generated titles (default 1)")
    generate.add_argument("--out", required=True, metavar="FILE",
                          help="the JSON file to write; serve it with BB_CATALOG=FILE or "
                               "`up --catalog FILE`")
    generate.set_defaults(func=cmd_catalog)

    ctl = commands.add_parser("ctl", help="operate the running cluster of `up`")
    ctl.add_argument("action", choices=["status", "start", "stop", "restart", "restart-all",
                                        "scale", "failover", "move-book"])
    ctl.add_argument("name", nargs="?", help="a process: app-1…, nginx, redis, upstream-sim "
                                             "(with --redis-ha also redis-2, redis-3, "
                                             "sentinel-1…3; with --redis-cluster redis-N and "
                                             "redis-N-replica); for scale, the number of "
                                             "instances. failover: the sentinels promote a "
                                             "replica (up --redis-ha). move-book: the SKU "
                                             "(up --redis-cluster)")
    ctl.add_argument("target", nargs="?", help="move-book: the primary to move the book's "
                                               "slot to, e.g. redis-2")
    ctl.add_argument("--var-dir", default=str(DEFAULT_VAR_DIR),
                     help="the var/ folder of the cluster (default ./var)")
    ctl.set_defaults(func=cmd_ctl)

    watch = commands.add_parser(
        "health-watch", help="(run by `up`) take hung instances out of nginx and back in")
    watch.add_argument("--var-dir", default=str(DEFAULT_VAR_DIR),
                       help="the var/ folder of the cluster (default ./var)")
    watch.set_defaults(func=cmd_health_watch)

    secrets = commands.add_parser(
        "secrets", help="(compose's first service) write the cookie secret, admin token and "
                        "Redis password into a folder: given in BB_* > kept > generated")
    secrets.add_argument("--dir", required=True, help="the folder (a volume in compose)")
    secrets.add_argument("--shared", action="store_true",
                         help="files readable by every user (Redis and the instances run as "
                              "other users in their containers); default: owner only")
    secrets.set_defaults(func=cmd_secrets)

    ha_files = commands.add_parser(
        "redis-ha-files", help="(compose's Sentinel override) write the config files of the "
                               "Redis nodes and sentinels, keeping any that exist")
    ha_files.add_argument("--secrets", required=True,
                          help="the folder `secrets` wrote (the Redis password and auth file)")
    ha_files.add_argument("--nodes", required=True,
                          help="a folder with one subfolder per node and sentinel (their volumes)")
    ha_files.add_argument("--primary", required=True, type=ipaddress.ip_address,
                          help="the first primary's (fixed) address")
    ha_files.add_argument("--service", default="bb", help="the master name (default bb)")
    ha_files.add_argument("--down-after-ms", type=bounded(int, 100, 600_000), default=5000,
                          help="the sentinels' down-after-milliseconds (default 5000)")
    ha_files.set_defaults(func=cmd_redis_ha_files)

    cluster_create = commands.add_parser(
        "redis-cluster-create", help="(compose's Cluster override) make empty cluster nodes "
                                     "one Redis Cluster; nothing when they are one already")
    cluster_create.add_argument("--primaries", required=True, metavar="HOST:PORT,…",
                                help="the primaries, one per shard (slots split evenly)")
    cluster_create.add_argument("--replicas", required=True, metavar="HOST:PORT,…",
                                help="one replica per primary, in the same order")
    cluster_create.set_defaults(func=cmd_redis_cluster_create)

    sim = commands.add_parser("upstream-sim", help="run the simulated upstream search API")
    sim.add_argument("--port", type=int, default=9000, help="port to listen on (default 9000)")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--latency-ms", type=bounded(float, 0, 600_000), default=0.0,
                     help="delay before every answer (default 0)")
    sim.add_argument("--error-rate", type=bounded(float, 0, 1), default=0.0,
                     help="fraction of searches answered with HTTP 500 (default 0)")
    sim.set_defaults(func=cmd_upstream_sim)
