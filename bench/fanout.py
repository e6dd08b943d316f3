"""Fan-out benchmark: how fast one inventory change reaches N open WebSockets.

    .venv/bin/python bench/fanout.py [--clients 2000 5000 10000] [--changes 20]
                                     [--workers 4] [--baseline]

For each N (fresh app processes each time) it starts two app instances on free ports
(one redis-server, on a free port in a temp dir, serves the whole run), opens N
WebSocket clients spread evenly over both instances from --workers client processes
(raw asyncio clients, bench/wsclient.py), waits until every client has its open
snapshot, lets them idle, then makes --changes stock changes of the featured SKU through
InventoryStore.set_stock, --spacing seconds apart. time.time() is taken right before each
call; each client stamps each frame on arrival (same machine, same clock).

Latency of (client, change v) = arrival of the first frame with version >= v minus the
time of change v. A frame with a higher version standing in for v is a conflation
(allowed only for slow sockets, counted); a client that never gets the final version is
a missed delivery (must be 0). Memory per idle socket = (VmRSS after N connected and
idle - VmRSS before) / sockets on that instance, per app process, after a warm-up of a
few sockets opened and closed on each instance.

--baseline runs the same measurement against bench/naive_server.py (per-client
json.dumps + write_message) in the same run, so ratios come from one machine state.

Results print as a table and replace the fan-out section of BENCHMARKS.md (unless
--no-write). Every wait has a timeout; every process started is stopped by PID in
finally blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import multiprocessing
import multiprocessing.connection
import os
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

from wsclient import probe, raise_nofile_limit, worker_main  # noqa: E402

from service.config import Config  # noqa: E402
from service.inventory import InventoryStore  # noqa: E402
from service.inventory.catalog import Catalog  # noqa: E402
from service.ops import probes, procs  # noqa: E402
from service.ops.errors import OpsError  # noqa: E402
from service.redis_connect import connect  # noqa: E402

SKU = "internet"
PATH = f"/cart/status?sku={SKU}"
MD_PATH = ROOT / "BENCHMARKS.md"
MD_START = "<!-- bench-fanout:start -->"
MD_END = "<!-- bench-fanout:end -->"
TARGETS = {"p99_ms": {2000: 60.0, 10000: 250.0}, "rss_kb": 12.0}
COOKIE_SECRET = "bench-fanout-cookie-secret-0123456789"


COMPARE: dict[str, Path] = {}  # --compare LABEL=SCRIPT


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def start_server(kind: str, port: int, redis_env: dict[str, str], instance_id: str,
                 log_path: Path) -> subprocess.Popen:
    """redis_env: the BB_* settings that lead to Redis (and, optionally, BB_CATALOG)."""
    env = {**redis_env, "BB_INSTANCE_ID": instance_id, "BB_COOKIE_SECRET": COOKIE_SECRET}
    if kind == "ours":
        return procs.start_instance(port, env, log_path)
    script = HERE / "naive_server.py" if kind == "naive" else COMPARE[kind]
    with open(log_path, "ab") as out:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, str(script), "--port", str(port)],
                                cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)


async def make_changes(redis_env: dict[str, str], count: int, spacing_s: float):
    """K set_stock calls; returns (version before, epoch, {version: wall time of the call})."""
    config = Config.from_env({**redis_env, "BB_COOKIE_SECRET": COOKIE_SECRET})
    connection = connect(config)
    try:
        await connection.check()
        store = InventoryStore(connection.commands, Catalog.load(config.catalog_path), 900,
                               nodes=connection.nodes)
        before = await store.snapshot(SKU)
        times: dict[int, float] = {}
        epoch = before.epoch
        for i in range(count):
            t = time.time()
            snap = await store.set_stock(SKU, 500 + (i % 7))
            times[snap.version] = t
            epoch = snap.epoch
            if i + 1 < count:
                await asyncio.sleep(spacing_s)
        return before.version, epoch, times
    finally:
        await connection.aclose()


def recv_all(conns, kind: str, timeout_s: float) -> list:
    """One message of `kind` from every worker pipe, within timeout_s."""
    deadline = time.monotonic() + timeout_s
    replies: dict[int, object] = {}
    while len(replies) < len(conns):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{len(conns) - len(replies)} client worker(s) sent no "
                             f"'{kind}' within {timeout_s:.0f}s")
        for conn in multiprocessing.connection.wait(
                [c for i, c in enumerate(conns) if i not in replies], timeout=left):
            i = conns.index(conn)
            try:
                msg = conn.recv()
            except EOFError:
                raise BenchError(f"client worker {i} died") from None
            if msg[0] != kind:
                raise BenchError(f"client worker {i} sent {msg[0]!r}, expected {kind!r}")
            replies[i] = msg[1]
    return [replies[i] for i in range(len(conns))]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_one(kind: str, n: int, args, redis_env: dict[str, str], tmp: Path) -> dict:
    """One measurement: fresh app processes, N clients, K changes. Returns the figures."""
    log(f"--- {kind}: {n} clients over 2 instances, {args.workers} client workers")
    servers: list[subprocess.Popen] = []
    workers: list[multiprocessing.Process] = []
    conns = []
    ctx = multiprocessing.get_context("spawn")
    try:
        ports = []
        for i in range(2):
            port = probes.free_port()
            ports.append(port)
            servers.append(start_server(kind, port, redis_env, f"{kind}-{i}",
                                        tmp / f"{kind}-{n}-{i}-{time.time_ns() % 10**9}.log"))
        for port, proc in zip(ports, servers):
            probes.wait_until(lambda port=port: probes.is_ready(port), 30,
                              f"{kind} instance on {port}", proc)
        # warm-up: lazy imports and first-use allocations are not per-socket memory
        for port in ports:
            for _ in range(5):
                probe(port, PATH)
        time.sleep(0.5)
        rss_before = [rss_kb(p.pid) for p in servers]

        # client workers, each with its share of both instances
        per_instance = split(n, 2)
        shares = [split(per_instance[i], args.workers) for i in range(2)]
        for w in range(args.workers):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child_end, w), daemon=True)
            proc.start()
            child_end.close()
            workers.append(proc)
            conns.append(parent_end)
        connect_timeout = 30 + n * 0.01
        t0 = time.time()
        for w, conn in enumerate(conns):
            conn.send(("connect", [(ports[0], shares[0][w]), (ports[1], shares[1][w])], PATH,
                       args.connect_concurrency, connect_timeout))
        infos = recv_all(conns, "connected", connect_timeout * 4 + 30)
        connect_s = max(i["done"] for i in infos) - t0
        connected = sum(i["ok"] for i in infos)
        failed = sum(max(i["failed"], 0) for i in infos)
        errors: dict[str, int] = {}
        for info in infos:
            for k, v in info["errors"].items():
                errors[k] = errors.get(k, 0) + v
        handshakes = sorted(s for i in infos for s in i["handshake_s"])
        log(f"{connected}/{n} connected in {connect_s:.1f}s ({failed} failed) "
            f"handshake p50 {percentile(handshakes, .5) * 1000:.0f} ms")
        if errors:
            log(f"connect errors: {errors}")
        if connected == 0:
            raise BenchError("no client connected")

        time.sleep(args.settle)  # idle
        rss_after = [rss_kb(p.pid) for p in servers]
        rss_per_socket = [(a - b) / max(1, c) for a, b, c in zip(rss_after, rss_before,
                                                                 per_instance)]
        log(f"RSS before {rss_before} kB, after {rss_after} kB -> "
            f"{', '.join(f'{x:.1f}' for x in rss_per_socket)} KB/socket")

        spies = start_profilers(args, kind, n, servers, workers)
        watched = [p.pid for p in servers] + [p.pid for p in workers] + args.redis_pids
        cpu_before = [cpu_s(pid) for pid in watched]
        try:
            v0, epoch, times = asyncio.run(make_changes(redis_env, args.changes, args.spacing))
        finally:
            for spy in spies:
                try:
                    spy.wait(args.changes * args.spacing + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        cpu_after = [cpu_s(pid) for pid in watched]
        cpu = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(cpu_after, cpu_before)]
        per_change = lambda rows: (1000 * sum(u for u, _ in rows) / args.changes,  # noqa: E731
                                   1000 * sum(s for _, s in rows) / args.changes)
        redis_nodes = len(args.redis_pids)
        cpu_servers = per_change(cpu[:2])
        cpu_clients = per_change(cpu[2:-redis_nodes])
        cpu_redis = per_change(cpu[-redis_nodes:])
        log(f"CPU ms per change (user+sys): servers {cpu_servers[0]:.0f}+{cpu_servers[1]:.0f}, "
            f"clients {cpu_clients[0]:.0f}+{cpu_clients[1]:.0f}, "
            f"redis {cpu_redis[0]:.0f}+{cpu_redis[1]:.0f}")
        final_version = max(times)
        for conn in conns:
            conn.send(("collect", final_version, epoch, args.collect_timeout))
        results = recv_all(conns, "result", args.collect_timeout + 60)
        stats = analyse(results, v0, epoch, times, final_version)
        stats.update(kind=kind, clients=n, connected=connected, connect_failed=failed,
                     connect_s=connect_s, connect_errors=errors,
                     handshake_p50_ms=percentile(handshakes, .5) * 1000,
                     handshake_p99_ms=percentile(handshakes, .99) * 1000,
                     rss_before_kb=rss_before, rss_after_kb=rss_after,
                     rss_per_socket_kb=rss_per_socket,
                     cpu_ms_per_change={"servers": cpu_servers, "clients": cpu_clients,
                                        "redis": cpu_redis},
                     timed_out=sum(r["timed_out"] for r in results))
        log(f"p50 {stats['p50_ms']:.1f} ms  p99 {stats['p99_ms']:.1f} ms  max "
            f"{stats['max_ms']:.1f} ms  missed final {stats['missed_final']}  conflated "
            f"{stats['conflated']}  closed {stats['closed']}")
        return stats
    finally:
        for conn in conns:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
        t_stop = time.monotonic()
        for proc in workers:
            proc.join(10)
            if proc.is_alive():
                log(f"client worker pid {proc.pid} did not exit: terminating it")
                proc.terminate()
                proc.join(5)
        log(f"client workers stopped in {time.monotonic() - t_stop:.1f}s")
        for conn in conns:
            conn.close()
        t_stop = time.monotonic()
        for proc in servers:
            procs.stop(proc, timeout_s=15)
        log(f"app processes stopped in {time.monotonic() - t_stop:.1f}s")


def start_profilers(args, kind: str, n: int, servers, workers) -> list[subprocess.Popen]:
    """--profile DIR: py-spy (non-blocking sampling) on both app processes and client
    worker 0 for the duration of the changes; collapsed stacks in DIR/KIND-N-WHO.txt."""
    if not args.profile:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    duration = max(1, math.ceil(args.changes * args.spacing + 1))
    targets = [(f"app{i}", p.pid) for i, p in enumerate(servers)] + [("client0", workers[0].pid)]
    spies = [subprocess.Popen([spy, "record", "--nonblocking", "-r", "250", "-d", str(duration),
                               "-f", "raw", "-o", str(out / f"{kind}-{n}-{who}.txt"),
                               "-p", str(pid)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for who, pid in targets]
    time.sleep(0.5)  # let py-spy attach before the first change
    return spies


def analyse(results: list[dict], v0: int, epoch: str, times: dict[int, float],
            final_version: int) -> dict:
    changes = sorted(times.items())
    latencies: list[float] = []
    conflated = missed_pairs = missed_final = closed = 0
    per_change_max = {v: 0.0 for v, _ in changes}
    for result in results:
        for client in result["clients"]:
            if client["closed_at"] is not None:
                closed += 1
            recv = [(v, t) for v, e, t in client["recv"] if e == epoch and v > v0]
            top = max((v for v, _ in recv), default=v0)
            if top < final_version:
                missed_final += 1
            j = 0
            for version, t_change in changes:
                while j < len(recv) and recv[j][0] < version:
                    j += 1
                if j == len(recv):
                    missed_pairs += 1
                    continue
                got_version, t_recv = recv[j]
                if got_version != version:
                    conflated += 1
                latency = t_recv - t_change
                latencies.append(latency)
                if latency > per_change_max[version]:
                    per_change_max[version] = latency
    latencies.sort()
    return {"pairs": len(latencies), "missed_pairs": missed_pairs, "missed_final": missed_final,
            "conflated": conflated, "closed": closed,
            "p50_ms": percentile(latencies, .5) * 1000,
            "p99_ms": percentile(latencies, .99) * 1000,
            "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
            "per_change_max_ms": [round(per_change_max[v] * 1000, 1) for v, _ in changes]}


def table(rows: list[dict]) -> str:
    ours = {r["clients"]: r for r in rows if r["kind"] == "ours"}
    lines = ["| clients | server | connected | connect s | p50 ms | p99 ms | max ms | "
             "missed final | conflated | RSS KB/idle socket (inst 0 / 1) | "
             "CPU ms/change servers (usr+sys) | CPU ms/change clients | p99 vs ours |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|"]
    for r in rows:
        ratio = ""
        if r["kind"] != "ours" and r["clients"] in ours and ours[r["clients"]]["p99_ms"] > 0:
            ratio = f"{r['p99_ms'] / ours[r['clients']]['p99_ms']:.2f}x"
        rss = " / ".join(f"{x:.1f}" for x in r["rss_per_socket_kb"])
        srv, cli = r["cpu_ms_per_change"]["servers"], r["cpu_ms_per_change"]["clients"]
        lines.append(f"| {r['clients']} | {r['kind']} | {r['connected']} | {r['connect_s']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                     f"{r['missed_final']} | {r['conflated']} | {rss} | "
                     f"{srv[0]:.0f}+{srv[1]:.0f} | {cli[0]:.0f}+{cli[1]:.0f} | {ratio} |")
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["kind"] == "naive":
            continue
        who = "" if r["kind"] == "ours" else f" [{r['kind']}]"
        target = TARGETS["p99_ms"].get(r["clients"])
        if target is not None:
            ok = r["p99_ms"] <= target
            out.append(f"p99 at {r['clients']}{who}: {r['p99_ms']:.1f} ms (target <= {target:.0f}) "
                       f"{'MET' if ok else 'MISSED'}")
        worst = max(r["rss_per_socket_kb"])
        out.append(f"RSS per idle socket at {r['clients']}{who}: {worst:.1f} KB worst instance "
                   f"(target <= {TARGETS['rss_kb']:.0f}) "
                   f"{'MET' if worst <= TARGETS['rss_kb'] else 'MISSED'}")
        ok = r["missed_final"] == 0 and r["connect_failed"] == 0 and r["closed"] == 0
        out.append(f"deliveries at {r['clients']}{who}: missed final {r['missed_final']}, "
                   f"conflated {r['conflated']}, connect failures {r['connect_failed']}, "
                   f"closed {r['closed']} {'OK' if ok else 'NOT OK'}")
    return out


def write_markdown(rows: list[dict], args, command: str) -> None:
    py = platform.python_version()
    per_change = "\n".join(
        f"- {r['kind']} @ {r['clients']}: " + ", ".join(f"{x:g}" for x in r["per_change_max_ms"])
        for r in rows)
    section = f"""{MD_START}
## WebSocket fan-out (`bench/fanout.py`, `make bench-fanout`)

Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores
(`nproc` = {os.cpu_count()}), {platform.system()} {platform.release()}, Python {py},
tornado {_version('tornado')}, redis-py {_version('redis')}; everything on 127.0.0.1.

Command: `{command}`

Setup: one redis-server, two app instances (separate processes, fresh for every row),
N clients split evenly over both instances from {args.workers} client processes (raw asyncio
WebSocket clients, at most {args.connect_concurrency} handshakes in flight per process);
{args.changes} changes of `{SKU}` via `InventoryStore.set_stock`, {args.spacing:g} s apart.
Latency = client receive time - time.time() just before the set_stock call, over every
(client, change) pair; a conflated pair counts the arrival of the newer version that
replaced it. The client processes share the 2 cores with the servers and Redis, so the
figures are end-to-end including client-side wake-up. RSS per idle socket = (VmRSS with N/2
idle sockets - VmRSS after a 5-socket warm-up) / (N/2), per app process. `naive` is
`bench/naive_server.py`: `for s in sockets: s.write_message(json.dumps(...))`.

{table(rows)}

{chr(10).join('- ' + v for v in verdicts(rows))}

Slowest delivery per change (ms), in change order:
{per_change}
{MD_END}"""
    text = MD_PATH.read_text() if MD_PATH.exists() else "# Benchmarks\n"
    if MD_START in text and MD_END in text:
        before, rest = text.split(MD_START, 1)
        after = rest.split(MD_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    MD_PATH.write_text(text)
    log(f"wrote the fan-out section of {MD_PATH}")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=0.4, help="seconds between changes")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure bench/naive_server.py in the same run")
    parser.add_argument("--connect-concurrency", type=int, default=32,
                        help="handshakes in flight per client process (listen backlog is 128)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="idle seconds between the last connect and the RSS reading")
    parser.add_argument("--collect-timeout", type=float, default=15.0,
                        help="seconds to wait for the final version after the last change")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the temp dir with the Redis and app logs")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=SCRIPT",
                        help="also measure `python SCRIPT --port P` (same env as the app), "
                             "e.g. a patched copy of the service, to A/B a change")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the app processes and one client worker during the changes")
    args = parser.parse_args(argv)
    if args.changes < 1 or args.workers < 1 or any(n < 2 for n in args.clients):
        parser.error("--changes and --workers must be >= 1, --clients >= 2")

    for item in args.compare:
        label, _, script = item.partition("=")
        if not label or label in ("ours", "naive") or not Path(script).is_file():
            parser.error(f"--compare {item!r}: expected LABEL=SCRIPT with an existing script")
        COMPARE[label] = Path(script).resolve()
    soft, hard = raise_nofile_limit()  # inherited by the app processes spawned below
    need = max(max(math.ceil(n / args.workers), math.ceil(n / 2)) for n in args.clients) + 200
    if need > soft:
        parser.error(f"needs ~{need} open files per process but RLIMIT_NOFILE is {soft}: "
                     f"use fewer clients or more --workers")
    command = ".venv/bin/python bench/fanout.py " + shlex.join(sys.argv[1:] if argv is None
                                                                else argv)
    log(f"{command}  (RLIMIT_NOFILE {soft}/{hard}, {os.cpu_count()} cores)")

    tmp = Path(tempfile.mkdtemp(prefix="bb-fanout-"))
    redis_proc = None
    rows: list[dict] = []
    ok = False
    started = time.monotonic()
    try:
        redis_port = probes.free_port()
        redis_proc = procs.start_redis(redis_port, tmp / "redis", tmp / "redis.log")
        redis_env = {"BB_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
        args.redis_pids = [redis_proc.pid]
        for n in args.clients:
            kinds = ["ours"] + (["naive"] if args.baseline else []) + list(COMPARE)
            for kind in kinds:
                rows.append(run_one(kind, n, args, redis_env, tmp))
        ok = True
    except (BenchError, OpsError) as exc:
        log(f"error: {exc} (logs in {tmp})")
    finally:
        if redis_proc is not None:
            procs.stop(redis_proc)
        if ok and not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs kept in {tmp}")
    if rows:
        print()
        print(table(rows))
        print()
        for line in verdicts(rows):
            print(line)
        if not args.no_write and ok:
            write_markdown(rows, args, command)
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
