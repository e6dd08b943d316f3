"""Redis Cluster benchmark (`make bench-cluster`): on one 2-core machine a cluster cannot
be faster in absolute terms, so this measures what predicts scale, in one run.

    .venv/bin/python bench/cluster.py [--changes 3000] [--clients 2000] [--no-fanout]

Part 1, Redis CPU per change, for three layouts: one Redis (the shop's single mode); a
3-shard Redis Cluster (each shard a primary and a replica) whose change scripts publish
with classic PUBLISH; and the same cluster with SPUBLISH (what the shop does). Every
change is a cart add or remove through the shop's own InventoryStore (on the cluster:
the book's node, script + WAIT 1), on books of the FIRST shard only, while two
subscribers (two "instances") listen as the shop's feed does and count what arrives.
From every node, before and after: `INFO commandstats` (microseconds in the change
scripts, which include their publish), `INFO cpu` (the process's whole CPU time, which
also counts the cluster bus work a broadcast PUBLISH costs every other node; the idle
rate measured just before is subtracted) and `CLUSTER INFO` (bus messages
publish/publishshard received: how many nodes process each message).
From these: changes per second per Redis core, bounded by the busiest primary, as the
number of shards grows (books spread evenly): with SPUBLISH a primary pays only for its
own books' changes; with PUBLISH every primary also pays the bus cost of every change.

Part 2 (unless --no-fanout): fan-out p99 at --clients WebSockets (bench/fanout.py's
measurement, two instances) on one Redis and on the 3-shard cluster, with a generated
catalog of 2,000 books so every instance subscribes on every shard. Goal: cluster p99
within 1.2x of single.

Results print and replace the cluster section of BENCHMARKS.md (unless --no-write).
Every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import fanout  # noqa: E402
import redis as redis_sync  # noqa: E402

from service import redis_keys  # noqa: E402
from service.config import Config  # noqa: E402
from service.inventory import InventoryStore, ReplicaConfirm, scripts  # noqa: E402
from service.inventory.catalog import Catalog  # noqa: E402
from service.inventory.demo_catalog import write_catalog  # noqa: E402
from service.ops import probes, procs  # noqa: E402
from service.ops.cluster_slots import slot_of  # noqa: E402
from service.ops.redis_cluster import create, free_node_port, node_conf  # noqa: E402
from service.redis_connect import connect  # noqa: E402

MD_PATH = ROOT / "BENCHMARKS.md"
MD_START = "<!-- bench-cluster:start -->"
MD_END = "<!-- bench-cluster:end -->"
SHARDS = 3
CONCURRENCY = 8
FANOUT_GOAL = 1.2


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Nodes:
    """redis-server processes of one layout (no password: loopback only, for the bench)."""

    def __init__(self, tmp: Path, cluster: bool):
        self.tmp, self.cluster = tmp, cluster
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Nodes:
        count = 2 * SHARDS if self.cluster else 1
        conf = self.tmp / "node.conf"
        if self.cluster:
            (self.tmp / "auth.conf").write_text("")
            conf.write_text(node_conf(self.tmp / "auth.conf"))
        for _ in range(count):
            port = free_node_port() if self.cluster else probes.free_port()
            self.ports.append(port)
            self.procs.append(procs.start_redis(
                port, self.tmp / f"node-{port}", self.tmp / f"node-{port}.log",
                conf if self.cluster else procs.REDIS_CONF))
        if self.cluster:
            addresses = [("127.0.0.1", p) for p in self.ports]
            create(addresses[:SHARDS], addresses[SHARDS:], None, out=log)
        return self

    @property
    def env(self) -> dict[str, str]:
        if self.cluster:
            return {"BB_REDIS_CLUSTER": ",".join(f"127.0.0.1:{p}" for p in self.ports)}
        return {"BB_REDIS_URL": f"redis://127.0.0.1:{self.ports[0]}/0"}

    def client(self, port: int) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def reading(self) -> dict[int, dict[str, float]]:
        """Per node: CPU seconds, script microseconds, bus messages received."""
        out = {}
        for port in self.ports:
            with self.client(port) as node:
                cpu = node.info("cpu")
                stats = node.info("commandstats")
                bus = (cluster_info(node) if self.cluster else {})
            out[port] = {
                "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
                "script_us": sum(float(v["usec"]) for k, v in stats.items()
                                 if k in ("cmdstat_evalsha", "cmdstat_eval")),
                "bus_received": sum(float(bus.get(name, 0)) for name in (
                    "cluster_stats_messages_publish_received",
                    "cluster_stats_messages_publishshard_received"))}
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def cluster_info(node: redis_sync.Redis) -> dict[str, str]:
    text = str(node.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


async def run_changes(nodes: Nodes, catalog_path: Path, changes: int, publish: str,
                      on_first_shard: list[str]) -> dict:
    """`changes` cart changes on `on_first_shard`'s books with two subscribers listening;
    returns how many messages each subscriber got."""
    config = Config.from_env({**nodes.env, "BB_COOKIE_SECRET": "x" * 32,
                              "BB_CATALOG": str(catalog_path)})
    connection = connect(config)
    await connection.check()
    catalog = Catalog.load(catalog_path)
    store = InventoryStore(connection.commands, catalog, 900, nodes=connection.nodes,
                           confirm=ReplicaConfirm(1, 1.0) if nodes.cluster else None)
    if publish == "PUBLISH":  # the same scripts with classic PUBLISH
        store._add = store.redis.register_script(scripts.ADD.replace("'SPUBLISH'", "'PUBLISH'"))
        store._remove = store.redis.register_script(
            scripts.REMOVE.replace("'SPUBLISH'", "'PUBLISH'"))
    await store.seed()
    channels = [redis_keys.changes_channel(sku) for sku in catalog.skus]
    received = [0, 0]
    subscribers = []
    for index in range(2):
        for name, positions in connection.nodes.group(channels).items():
            pubsub = connection.nodes.subscriber(name).pubsub()
            chosen = [channels[i] for i in positions]
            if publish == "PUBLISH":  # classic: on the owning node, PUBLISH's best case
                if name != connection.nodes.name_of(redis_keys.stock_key(on_first_shard[0])):
                    continue
                await pubsub.subscribe(*chosen)
            else:
                for batch in connection.nodes.subscribe_batches(chosen):
                    await pubsub.ssubscribe(*batch)
            subscribers.append((index, pubsub))

    async def listen(index: int, pubsub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message and message["type"] in ("message", "smessage"):
                received[index] += 1

    listeners = [asyncio.ensure_future(listen(i, p)) for i, p in subscribers]
    await asyncio.sleep(1)
    idle_before = nodes.reading()
    await asyncio.sleep(2)
    before = nodes.reading()
    idle = {port: (before[port]["cpu_s"] - idle_before[port]["cpu_s"]) / 2 for port in before}
    started = time.monotonic()
    queue = list(range(changes))

    async def shopper(worker: int) -> None:
        held: set[str] = set()
        while queue:
            step = queue.pop()
            sku = on_first_shard[step % len(on_first_shard)]
            session = f"bench-{worker}"
            if sku in held:
                await store.remove(sku, session)
                held.discard(sku)
            else:
                await store.add(sku, session)
                held.add(sku)

    await asyncio.gather(*(shopper(w) for w in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.5)  # the last messages arrive
    after = nodes.reading()
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    for _, pubsub in subscribers:
        await pubsub.aclose()
    await store.reset()
    await connection.aclose()
    per_node = {port: {
        "cpu_us": max(0.0, (after[port]["cpu_s"] - before[port]["cpu_s"]
                            - idle[port] * (elapsed + 0.5)) * 1e6 / changes),
        "script_us": (after[port]["script_us"] - before[port]["script_us"]) / changes,
        "bus_received": (after[port]["bus_received"] - before[port]["bus_received"]) / changes,
    } for port in nodes.ports}
    return {"per_node": per_node, "received": received, "elapsed_s": elapsed}


def measure_cpu(args, tmp: Path, catalog_path: Path) -> list[dict]:
    catalog = Catalog.load(catalog_path)
    rows = []
    for label, cluster, publish in (("one Redis", False, "SPUBLISH"),
                                    ("3 shards, PUBLISH", True, "PUBLISH"),
                                    ("3 shards, SPUBLISH", True, "SPUBLISH")):
        folder = tmp / label.replace(" ", "-").replace(",", "")
        folder.mkdir()
        nodes = Nodes(folder, cluster)
        try:  # (inside: a start that fails halfway stops the nodes it started)
            nodes.start()
            first = nodes.ports[0]
            if cluster:  # the books whose slot the first primary serves
                with nodes.client(first) as node:
                    shards = [(s, e) for s, e in _owned(node)]
                books = [sku for sku in catalog.skus
                         if any(a <= slot_of(redis_keys.stock_key(sku)) <= b for a, b in shards)]
            else:
                books = list(catalog.skus)
            books = books[:100]
            log(f"{label}: {args.changes} changes on {len(books)} books of the first shard")
            result = asyncio.run(run_changes(nodes, catalog_path, args.changes, publish, books))
            per_node = result["per_node"]
            owner = per_node[first]
            replica = per_node[nodes.ports[SHARDS]] if cluster else None
            others = [per_node[p] for p in nodes.ports if p not in (first, nodes.ports[SHARDS])] \
                if cluster else []
            other_primaries = [per_node[p] for p in nodes.ports[1:SHARDS]] if cluster else []
            processing = 1 + sum(round(n["bus_received"]) for n in per_node.values())
            row = {"label": label, "changes": args.changes, "elapsed_s": result["elapsed_s"],
                   "received": result["received"],
                   "owner_cpu_us": owner["cpu_us"], "owner_script_us": owner["script_us"],
                   "replica_cpu_us": replica["cpu_us"] if replica else 0.0,
                   "other_cpu_us": (sum(n["cpu_us"] for n in others) / len(others)
                                    if others else 0.0),
                   "other_primary_cpu_us": (sum(n["cpu_us"] for n in other_primaries)
                                            / len(other_primaries) if other_primaries else 0.0),
                   "total_cpu_us": sum(n["cpu_us"] for n in per_node.values()),
                   "nodes_processing": processing}
            log(f"  owner primary {row['owner_cpu_us']:.0f} µs CPU ({row['owner_script_us']:.0f} "
                f"in the scripts), its replica {row['replica_cpu_us']:.0f}, each other node "
                f"{row['other_cpu_us']:.0f}; nodes processing a message: {processing}; "
                f"subscribers got {result['received']} of {args.changes}")
            if min(result["received"]) < args.changes:
                raise RuntimeError(f"{label}: a subscriber missed messages: {result['received']}")
            rows.append(row)
        finally:
            nodes.stop()
    return rows


def _owned(node: redis_sync.Redis) -> list[tuple[int, int]]:
    my_id = node.execute_command("CLUSTER", "MYID")
    ranges = []
    for entry in node.execute_command("CLUSTER", "SLOTS"):
        start, end, primary = entry[0], entry[1], entry[2]
        if primary[2] == my_id:
            ranges.append((int(start), int(end)))
    return ranges


def capacity(own_us: float, relay_us: float, shards: int) -> float:
    """Changes per second the busiest primary allows with `shards` shards and changes
    spread evenly: each primary runs 1/shards of them (own_us each), and with a broadcast
    PUBLISH also relays every other shard's message (relay_us each)."""
    return 1e6 / (own_us / shards + relay_us * (shards - 1) / shards)


def fanout_rows(args, tmp: Path) -> list[dict]:
    catalog = tmp / "catalog-2000.json"
    write_catalog(catalog, 2000)
    rows = []
    for label, cluster in (("one Redis", False), ("3-shard cluster", True)):
        folder = tmp / f"fanout-{int(cluster)}"
        folder.mkdir()
        nodes = Nodes(folder, cluster)
        try:
            nodes.start()
            args.redis_pids = [p.pid for p in nodes.procs]
            env = {**nodes.env, "BB_CATALOG": str(catalog)}
            stats = fanout.run_one("ours", args.clients, args, env, folder)
            stats["label"] = label
            rows.append(stats)
        finally:
            nodes.stop()
    return rows


def markdown(cpu_rows: list[dict], fan: list[dict], command: str) -> str:
    single, pub, spub = cpu_rows
    lines = [MD_START, "## Redis Cluster: what a change costs, and how that scales", "",
             f"`{command}` on {datetime.date.today()}, {platform.machine()}, "
             f"{__import__('os').cpu_count()} cores, redis-server "
             f"{_redis_version()}; everything on 127.0.0.1.", "",
             f"{single['changes']:,} cart changes (add/remove through the shop's store; one "
             "Redis as the shop's single mode runs it, without a replica or WAIT; on the "
             "cluster script + WAIT 1 on the book's node) on books of the first shard, two "
             "subscribers listening like two instances. CPU is the Redis process's own "
             "(`INFO cpu`, its idle rate subtracted) per change; script time is "
             "`INFO commandstats` (the change scripts, their publish included).", "",
             "| layout | owner primary CPU µs | in the scripts µs | its replica µs | each other "
             "node µs | all nodes µs | nodes that process a message |",
             "|---|---|---|---|---|---|---|"]
    for row in cpu_rows:
        lines.append(f"| {row['label']} | {row['owner_cpu_us']:.0f} | "
                     f"{row['owner_script_us']:.0f} | "
                     f"{row['replica_cpu_us']:.0f} | {row['other_cpu_us']:.0f} | "
                     f"{row['total_cpu_us']:.0f} | {row['nodes_processing']} |")
    # what a primary spends on another shard's PUBLISH: beyond what it spends anyway
    relay = max(0.0, pub["other_primary_cpu_us"] - spub["other_primary_cpu_us"])
    lines += ["", "Changes per second the busiest primary allows (one Redis thread each), "
              "changes spread evenly over the shards, from the figures above: a primary "
              "runs 1/N of the changes at the owner's cost, and with PUBLISH also relays "
              f"every other shard's message ({relay:.0f} µs: the other primaries' cost under "
              "PUBLISH beyond SPUBLISH's). One shard: the measured single Redis.", "",
              "| shards | SPUBLISH | PUBLISH |", "|---|---|---|",
              f"| 1 | {1e6 / single['owner_cpu_us']:,.0f} | {1e6 / single['owner_cpu_us']:,.0f} |"]
    for shards in (3, 6, 12, 24):
        lines.append(f"| {shards} | {capacity(spub['owner_cpu_us'], 0, shards):,.0f} | "
                     f"{capacity(pub['owner_cpu_us'], relay, shards):,.0f} |")
    lines += ["", "\"Each other node\" is work a change causes off its shard: with SPUBLISH "
              "only the sweeper's index entry of an add (its partition lives on some shard) "
              "and background noise; with PUBLISH also the message every node relays (here "
              "every subscriber is on the owning node, PUBLISH's best case: subscribers "
              "elsewhere would make those nodes deliver it too).", "",
              "With SPUBLISH a change costs its own shard only (its primary and replica), "
              "so capacity grows with the shards; with PUBLISH every primary also handles "
              "every other shard's messages from the cluster bus, so capacity levels off "
              "near 1 / (bus cost) however many shards are added."]
    if fan:
        base, clus = fan
        ratio = clus["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("inf")
        lines += ["", f"Fan-out at {base['clients']:,} WebSockets over two instances, catalog of "
                  "2,000 generated books (every instance subscribed on every shard), "
                  "bench/fanout.py's measurement:", "",
                  "| layout | p50 ms | p99 ms | max ms | missed |", "|---|---|---|---|---|"]
        for row in fan:
            lines.append(f"| {row['label']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                         f"{row['max_ms']:.1f} | {row['missed_final']} |")
        verdict = "met" if ratio <= FANOUT_GOAL else "NOT met"
        lines += ["", f"Cluster p99 / single p99 = {ratio:.2f} (goal ≤ {FANOUT_GOAL}: "
                  f"{verdict})."]
    lines.append(MD_END)
    return "\n".join(lines)


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return next((part.split("=")[1] for part in out.stdout.split() if part.startswith("v=")),
                "?")


def write_section(text: str) -> None:
    current = MD_PATH.read_text()
    if MD_START in current:
        head, rest = current.split(MD_START, 1)
        current = head + text + rest.split(MD_END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    MD_PATH.write_text(current)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--no-fanout", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    # bench/fanout.py's knobs, at its defaults
    parser.add_argument("--changes-fanout", type=int, default=20, dest="fanout_changes")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    fan_args = argparse.Namespace(changes=args.fanout_changes, spacing=0.4, workers=args.workers,
                                  connect_concurrency=32, settle=2.0, collect_timeout=15.0,
                                  profile=None, clients=args.clients)
    command = " ".join([".venv/bin/python bench/cluster.py",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    log(command)
    fanout.raise_nofile_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bb-cluster-bench-"))
    try:
        catalog = tmp / "catalog-300.json"
        write_catalog(catalog, 300, copies=CONCURRENCY * 2)  # never sold out
        cpu_rows = measure_cpu(args, tmp, catalog)
        fan = [] if args.no_fanout else fanout_rows(fan_args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(cpu_rows, fan, command)
    print(text)
    if not args.no_write:
        write_section(text)
        log(f"wrote the cluster section of {MD_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
