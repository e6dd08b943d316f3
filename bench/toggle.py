"""Fan-out under a toggling client: frames per socket per second, and /readyz meanwhile.

    .venv/bin/python bench/toggle.py [--clients 2000] [--duration 10] [--intervals 0 0.05]
                                     [--workers 4] [--connections 4] [--no-write]

One redis-server serves the run. For each BB_PUSH_INTERVAL_S in --intervals (0 = no
coalescing, the baseline; 0.05 = the default) ONE fresh app instance gets --clients
WebSockets to `/cart/status?sku=internet` from --workers client processes
(bench/wsclient.py). Then for --duration s this process POSTs `/cart` add/remove of
`internet` for one signed session straight to that instance as fast as it can over
--connections keep-alive connections (one request in flight each; an add or remove finding
the cart already so changes nothing), and GETs /readyz there every 100 ms on a new
connection. changes/s = the book's Redis version delta / that time; frames/s per socket =
frames newer than the start / that time; "most in 1 s" = most frames one socket got in a
sliding 1 s window; fan-out spread = last - first arrival of one version over all sockets;
app CPU = the instance's user+sys (100% = one core).

Prints a table and replaces the toggle section of BENCHMARKS.md (unless --no-write).
Every wait has a timeout; every process started is stopped by PID in finally blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import multiprocessing
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import ROOT, SKU, BenchError, _version, cpu_s, log, percentile, recv_all, split  # noqa: I001
from wsclient import HOST, raise_nofile_limit, worker_main

import redis.asyncio as aioredis
from service.inventory import InventoryStore
from service.inventory.catalog import Catalog
from service.ops import probes, procs
from service.ops.errors import OpsError
from service.paths import DEFAULT_CATALOG
from service.web.sessions import new_token

PATH = f"/cart/status?sku={SKU}"
MD_PATH, SEED_MARK = ROOT / "BENCHMARKS.md", "<!-- bench-seed:start -->"
MD_START, MD_END = "<!-- bench-toggle:start -->", "<!-- bench-toggle:end -->"
COOKIE_SECRET = "bench-toggle-cookie-secret-0123456789"
FAILED_MS = 5000.0  # what a /readyz probe that failed or answered non-200 counts as


async def read_reply(reader) -> int:
    """Read one HTTP/1.1 reply (Content-Length body); its status."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next((int(line[15:]) for line in head.split(b"\r\n")
                   if line[:15].lower() == b"content-length:"), 0)
    await asyncio.wait_for(reader.readexactly(length), 10)
    return int(head[9:12])


async def hammer(k: int, stream, requests: list[bytes], stop_at: float, statuses) -> None:
    """Connection k starts with add (even k) or remove (odd k), then alternates."""
    reader, writer = stream
    while time.monotonic() < stop_at:
        writer.write(requests[k % 2])
        status = await read_reply(reader)
        statuses[status] = statuses.get(status, 0) + 1
        k += 1


async def probe_readyz(port: int, stop_at: float) -> list[float]:
    """GET /readyz every 100 ms on a new connection; latencies in ms, sorted."""
    latencies, next_at = [], time.monotonic()
    while next_at < stop_at:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        t = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            ok = await read_reply(reader) == 200
            writer.close()
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            ok = False
        latencies.append((time.perf_counter() - t) * 1000 if ok else FAILED_MS)
        next_at = max(next_at + 0.1, time.monotonic())
    return sorted(latencies)


async def measure(port: int, redis_url: str, pid: int, args) -> dict:
    """Toggle for --duration s while probing /readyz (one loop: the toggler mostly waits)."""
    redis = aioredis.Redis.from_url(redis_url)
    store = InventoryStore(redis, Catalog.load(DEFAULT_CATALOG), 900)
    token = new_token(COOKIE_SECRET)[1]
    requests = [b"POST /cart HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-www-form-"
                b"urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (HOST.encode(), port, len(b), b)
                for b in (urlencode({"session": token, "action": a, "sku": SKU}).encode()
                          for a in ("add", "remove"))]
    streams, statuses = [], {}
    try:
        before = await store.snapshot(SKU)
        for _ in range(args.connections):
            streams.append(await asyncio.wait_for(asyncio.open_connection(HOST, port), 10))
        cpu0, stop_at = sum(cpu_s(pid)), (t0 := time.monotonic()) + args.duration
        readyz, *_ = await asyncio.wait_for(asyncio.gather(probe_readyz(port, stop_at), *(
            hammer(k, s, requests, stop_at, statuses)
            for k, s in enumerate(streams))), args.duration + 30)
        seconds = time.monotonic() - t0
        app_cpu = 100 * (sum(cpu_s(pid)) - cpu0) / seconds
        after = await store.snapshot(SKU)
    finally:
        for _, writer in streams:
            writer.close()
        await redis.aclose()
    if after.epoch != before.epoch:
        raise BenchError("the book's epoch changed during the run")
    return {"before": before, "after": after, "seconds": seconds, "statuses": statuses,
            "requests_s": sum(statuses.values()) / seconds, "app_cpu": app_cpu,
            "changes_s": (after.version - before.version) / seconds, "probes": len(readyz),
            "readyz_slow": sum(x > 100 for x in readyz), "readyz_p50": percentile(readyz, .5),
            "readyz_p99": percentile(readyz, .99), "readyz_max": readyz[-1]}


def analyse(results: list[dict], before, final: int, seconds: float) -> dict:
    rates, windows, last_final, closed = [], [], 0, 0
    arrivals: dict[int, list[float]] = {}  # version -> [first, last] arrival
    for client in (c for r in results for c in r["clients"]):
        closed += client["closed_at"] is not None
        recv = [(v, t) for v, e, t in client["recv"] if e == before.epoch and v > before.version]
        rates.append(len(recv) / seconds)
        best = i = 0  # most frames in a sliding 1 s window
        for j, (v, t) in enumerate(recv):
            while t - recv[i][1] >= 1.0:
                i += 1
            best = max(best, j - i + 1)
            span = arrivals.setdefault(v, [t, t])
            span[0], span[1] = min(span[0], t), max(span[1], t)
        windows.append(best)
        last_final += bool(recv) and recv[-1][0] == final
    spreads = sorted(1000 * (b - a) for a, b in arrivals.values()) or [float("nan")]
    return {"fps_mean": sum(rates) / len(rates), "fps_max": max(rates), "closed": closed,
            "window_max": max(windows), "last_final": last_final, "sockets": len(rates),
            "spread_p50": percentile(spreads, .5), "spread_max": spreads[-1]}


def run_one(interval: float, args, redis_url: str, tmp: Path) -> dict:
    log(f"--- BB_PUSH_INTERVAL_S={interval:g}: {args.clients} sockets on one instance")
    server, workers, conns = None, [], []
    ctx = multiprocessing.get_context("spawn")
    try:
        port = probes.free_port()
        server = procs.start_instance(port, {
            "BB_REDIS_URL": redis_url, "BB_COOKIE_SECRET": COOKIE_SECRET,
            "BB_INSTANCE_ID": f"toggle-{interval:g}", "BB_PUSH_INTERVAL_S": str(interval)},
            tmp / f"app-{interval:g}.log")
        probes.wait_until(lambda: probes.is_ready(port), 30, f"instance on {port}", server)
        for w in range(args.workers):
            parent_end, child_end = ctx.Pipe()
            conns.append(parent_end)
            workers.append(ctx.Process(target=worker_main, args=(child_end, w), daemon=True))
            workers[-1].start()
            child_end.close()
        timeout = 30 + args.clients * 0.01
        for conn, share in zip(conns, split(args.clients, args.workers)):
            conn.send(("connect", [(port, share)], PATH, 32, timeout))
        infos = recv_all(conns, "connected", timeout * 4 + 30)
        connected = sum(i["ok"] for i in infos)
        log(f"{connected}/{args.clients} connected")
        if connected < args.clients:
            raise BenchError(f"only {connected} connected: {[i['errors'] for i in infos]}")
        time.sleep(1.0)
        m = asyncio.run(measure(port, redis_url, server.pid, args))
        for conn in conns:
            conn.send(("collect", m["after"].version, m["after"].epoch, 30.0))
        results = recv_all(conns, "result", 150)
        return {**m, **analyse(results, m["before"], m["after"].version, m["seconds"]),
                "interval": interval, "connected": connected}
    finally:
        for conn in conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close",))
        for proc in workers:
            proc.join(10)
            if proc.is_alive():
                log(f"pid {proc.pid} did not exit: terminating it")
                proc.terminate()
                proc.join(5)
        for conn in conns:
            conn.close()
        if server is not None:
            procs.stop(server, timeout_s=15)


def report(rows: list[dict]) -> tuple[str, list[str]]:
    lines = ["| BB_PUSH_INTERVAL_S | sockets | POSTs/s | changes/s | frames/s per socket: "
             "mean / max | most in 1 s | last frame = final | fan-out spread ms p50 / max | "
             "/readyz ms p50 / p99 / max | probes > 100 ms | app CPU |",
             "|---:|---:|---:|---:|---|---:|---|---|---|---:|---:|"]
    verdicts = []
    for r in rows:
        lines.append(
            f"| {r['interval']:g} | {r['connected']} | {r['requests_s']:.0f} | "
            f"{r['changes_s']:.1f} | {r['fps_mean']:.1f} / {r['fps_max']:.1f} | "
            f"{r['window_max']} | {r['last_final']}/{r['sockets']} | {r['spread_p50']:.0f} / "
            f"{r['spread_max']:.0f} | {r['readyz_p50']:.0f} / {r['readyz_p99']:.0f} / "
            f"{r['readyz_max']:.0f} | {r['readyz_slow']} of {r['probes']} | "
            f"{r['app_cpu']:.0f}% |")
        cap = round(1 / r["interval"]) if r["interval"] else None
        verdicts.append(f"BB_PUSH_INTERVAL_S={r['interval']:g}: " + (
            f"most frames in 1 s {r['window_max']} (cap {cap}) "
            f"{'MET' if r['window_max'] <= cap else 'MISSED'}; " if cap else "") + (
            f"/readyz over 100 ms {r['readyz_slow']} of {r['probes']} probes "
            f"{'MISSED' if r['readyz_slow'] else 'MET'}; last frame = final on "
            f"{r['last_final']}/{r['sockets']} sockets, {r['closed']} closed "
            f"{'OK' if r['last_final'] == r['sockets'] and not r['closed'] else 'NOT OK'}"))
    return "\n".join(lines), verdicts


def write_markdown(rows: list[dict], args, command: str) -> None:
    table, verdicts = report(rows)
    statuses = "; ".join(f"{r['interval']:g}: {r['statuses']}" for r in rows)
    section = f"""{MD_START}
## Fan-out under a toggling client (BB_PUSH_INTERVAL_S)

`bench/toggle.py`, `make bench-toggle`. Measured {datetime.datetime.now():%Y-%m-%d %H:%M} on
{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python
{platform.python_version()}, tornado {_version('tornado')}, redis-py {_version('redis')};
everything on 127.0.0.1.

Command: `{command}`

Setup (from the script's docstring): {__doc__.split(chr(10) * 2)[2]}

This run: {args.clients} sockets, {args.workers} client processes, {args.duration:g} s of
toggling over {args.connections} connection(s); POST statuses {statuses}. The clients,
Redis, the toggler and the app share the {os.cpu_count()} cores, with whatever else ran.

{table}

{chr(10).join('- ' + v for v in verdicts)}
{MD_END}"""
    text = MD_PATH.read_text()
    if MD_START in text and MD_END in text:
        before, rest = text.split(MD_START, 1)
        after = rest.split(MD_END, 1)[1]
    else:  # a new section goes after the fan-out section and its notes
        before, mark, after = text.partition(SEED_MARK)
        after = "\n\n" + mark + after
    MD_PATH.write_text(before + section + after)
    log(f"wrote the toggle section of {MD_PATH}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000, help="WebSockets on the instance")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of toggling")
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.0, 0.05],
                        help="BB_PUSH_INTERVAL_S values")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--connections", type=int, default=4, help="toggler connections")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    if min(args.clients, args.workers, args.connections, args.duration) <= 0:
        parser.error("--clients, --workers, --connections and --duration must be > 0")
    if args.clients + 200 > raise_nofile_limit()[0]:  # the limit is inherited by the app
        parser.error(f"needs ~{args.clients + 200} open files: raise RLIMIT_NOFILE")
    command = " ".join([".venv/bin/python bench/toggle.py",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).rstrip()
    log(f"{command}  ({os.cpu_count()} cores)")
    tmp = Path(tempfile.mkdtemp(prefix="bb-toggle-"))
    redis_proc, rows, ok = None, [], False
    try:
        redis_port = probes.free_port()
        redis_proc = procs.start_redis(redis_port, tmp / "redis", tmp / "redis.log")
        for interval in args.intervals:
            rows.append(run_one(interval, args, f"redis://127.0.0.1:{redis_port}/0", tmp))
        ok = True
    except (BenchError, OpsError) as exc:
        log(f"error: {exc} (logs in {tmp})")
    finally:
        if redis_proc is not None:
            procs.stop(redis_proc)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
    if rows:
        table, verdicts = report(rows)
        print(f"\n{table}\n\n" + "\n".join(verdicts))
        if ok and not args.no_write:
            write_markdown(rows, args, command)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
