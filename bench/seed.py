"""The seed's benchmark, reproduced: tweets per second, blocking against async.

    .venv/bin/python bench/seed.py [--latency-ms 300] [--concurrency 10] [--time 10s]

The chapter ran `siege http://localhost:8000/?q=pants -c10 -t10s` against listing 5-1
(blocking HTTPClient: 3.20 transactions/s) and listing 5-2 (AsyncHTTPClient: 12.59).
This starts one redis-server, the upstream simulator with --latency-ms of latency, one
app instance with `serve --demo-blocking` and a bare Tornado handler
(bench/bare_server.py), all on free 127.0.0.1 ports, and runs siege the same way, one
run after another, against:

  blocking        /rate/blocking?q=pants   the seed's 5-1: the fetch blocks the process
  async-unique    /rate?q=<distinct>       AsyncHTTPClient, every request a cache miss
                                           (siege -f: a URL file of distinct queries;
                                           without -i each client walks its own slice)
  async-cached    /rate?q=pants            the same page from the shared cache (a fresh
                                           hit; the near cache reads Redis once a second)
  bare            /                        the barest Tornado handler: the ceiling

siege runs with a private rc file: no think time between requests (-b, so the ceiling
of an uncached run is clients / upstream latency), no HTML parser (it would also fetch
the page's CSS and JS), `Connection: close` (siege's default). The simulator's /stats
tells how many upstream requests each run made.

Results print as a table and replace the bench-seed section of BENCHMARKS.md (unless
--no-write). Every process started is stopped by PID in finally blocks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from service.ops import probes, procs  # noqa: E402

MD_PATH = ROOT / "BENCHMARKS.md"
MD_START = "<!-- bench-seed:start -->"
MD_END = "<!-- bench-seed:end -->"
COOKIE_SECRET = "bench-seed-cookie-secret-0123456789"
SEED = {"blocking": 3.20, "async-unique": 12.59}  # the chapter's transactions/s
UNIQUE_URLS = 5000
SIEGERC = """\
verbose = false
quiet = false
json_output = true
show-logfile = false
logging = false
parser = false
protocol = HTTP/1.1
connection = close
accept-encoding =
delay = 0
benchmark = true
internet = false
timeout = 30
failures = 1024
limit = 255
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sim_total(sim_url: str) -> int:
    with urllib.request.urlopen(sim_url + "/stats", timeout=5) as reply:
        return json.loads(reply.read())["total"]


def settle(sim_url: str, latency_ms: float, limit_s: float = 30) -> None:
    """Wait until the upstream sees no more requests: when siege stops, the blocking
    instance still owes every request queued behind the one it is stuck on."""
    deadline = time.monotonic() + limit_s
    quiet_s = max(0.5, 2 * latency_ms / 1000)
    total = sim_total(sim_url)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = sim_total(sim_url)
        if now == total:
            return
        total = now
    log(f"the upstream was still being asked after {limit_s:.0f} s; going on anyway")


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as reply:
        reply.read()
        return reply.status


def siege(rc: Path, target: list[str], concurrency: int, duration: str) -> dict:
    """Run siege; its final statistics (JSON on stdout) as a dict."""
    command = ["siege", "-R", str(rc), "-b", f"-c{concurrency}", f"-t{duration}", *target]
    log("$ " + shlex.join(command))
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=_seconds(duration) + 60)
    start = done.stdout.find("{")
    if done.returncode != 0 or start < 0:
        raise RuntimeError(f"siege failed ({done.returncode}): {done.stdout[-500:]}"
                           f"{done.stderr[-500:]}")
    return json.loads(done.stdout[start:done.stdout.rindex("}") + 1])


def _seconds(duration: str) -> float:
    unit = {"s": 1, "m": 60, "h": 3600}[duration[-1].lower()]
    return float(duration[:-1]) * unit


def row(name: str, url: str, stats: dict, upstream: int) -> dict:
    return {"name": name, "url": url, "rate": float(stats["transaction_rate"]),
            "response_s": float(stats["response_time"]),
            "ok": int(stats["successful_transactions"]),
            "failed": int(stats["failed_transactions"]),
            "transactions": int(stats["transactions"]),
            "availability": float(stats["availability"]), "upstream": upstream}


def table(rows: list[dict]) -> str:
    lines = ["| run | URL | transactions/s | mean response s | successful hits | failed | "
             "upstream requests | the chapter |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        seed = SEED.get(r["name"])
        lines.append(f"| {r['name']} | `{r['url']}` | {r['rate']:.2f} | {r['response_s']:.2f} | "
                     f"{r['ok']} | {r['failed']} | {r['upstream']} | "
                     f"{f'{seed:.2f}' if seed else ''} |")
    return "\n".join(lines)


def verdicts(rows: list[dict], concurrency: int, latency_ms: float) -> list[str]:
    by = {r["name"]: r for r in rows}
    ceiling = concurrency / (latency_ms / 1000)
    unique, cached, bare = by["async-unique"], by["async-cached"], by["bare"]
    misses = ("every one a miss" if unique["upstream"] >= unique["transactions"]
              else "some were cache hits")
    out = [
        f"async, unique queries: {unique['rate']:.2f}/s = {unique['rate'] / ceiling:.0%} of the "
        f"concurrency limit ({concurrency} clients / {latency_ms / 1000:g} s = {ceiling:.1f}/s; "
        f"target >= 90%) {'MET' if unique['rate'] >= 0.9 * ceiling else 'MISSED'}",
        f"async, cached: {cached['rate']:.2f}/s = {cached['rate'] / bare['rate']:.0%} of the bare "
        f"handler's {bare['rate']:.2f}/s (target >= 50%) "
        f"{'MET' if cached['rate'] >= 0.5 * bare['rate'] else 'MISSED'}",
        f"blocking: {by['blocking']['rate']:.2f}/s (at most 1 / {latency_ms / 1000:g} s = "
        f"{1000 / latency_ms:.2f}/s whatever the concurrency)",
        f"async vs blocking: {unique['rate'] / by['blocking']['rate']:.1f}x "
        f"(the chapter: {SEED['async-unique'] / SEED['blocking']:.1f}x)",
        f"upstream requests: async-unique {unique['upstream']} for {unique['transactions']} "
        f"transactions ({misses}; requests in flight when siege's time runs out reach the "
        f"upstream but are no transaction), async-cached {cached['upstream']} for "
        f"{cached['transactions']}",
    ]
    failed = [r["name"] for r in rows if r["failed"]]
    out.append(f"failed transactions: {', '.join(failed)}" if failed else
               "failed transactions: none")
    return out


def write_markdown(rows: list[dict], args, command: str) -> None:
    siege_version = subprocess.run(["siege", "--version"], capture_output=True,
                                    text=True).stderr.split("\n")[0].strip()
    from importlib.metadata import version
    section = f"""{MD_START}
## The seed's benchmark: tweets per second (`bench/seed.py`, `make bench-seed`)

Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores,
{platform.system()} {platform.release()}, Python {platform.python_version()},
tornado {version('tornado')}, redis-py {version('redis')}, {siege_version}; everything on
127.0.0.1 (siege, Redis, the simulator and the app share the cores).

Command: `{command}` (what `make bench-seed` runs; ARGS are passed on)

Setup: one redis-server; the upstream simulator (`python -m service upstream-sim
--latency-ms {args.latency_ms:g}`); one app instance (`python -m service serve
--demo-blocking`, default settings otherwise: fresh window 30 s, access log on); the bare
handler `bench/bare_server.py`. Each run is `siege -b -c{args.concurrency} -t{args.time} URL`
(`-f urls.txt` with {UNIQUE_URLS} distinct queries for async-unique) with a private rc
file: no think time, no HTML parser, `Connection: close`. The chapter's column is its
listing 5-1 (blocking) and 5-2 (async) figures, from its own machine and network.

{table(rows)}

{chr(10).join('- ' + v for v in verdicts(rows, args.concurrency, args.latency_ms))}
{MD_END}"""
    text = MD_PATH.read_text() if MD_PATH.exists() else "# Benchmarks\n"
    if MD_START in text and MD_END in text:
        before, rest = text.split(MD_START, 1)
        text = before + section + rest.split(MD_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    MD_PATH.write_text(text)
    log(f"wrote the bench-seed section of {MD_PATH}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=300.0,
                        help="the simulated upstream's latency (default 300)")
    parser.add_argument("--concurrency", type=int, default=10, help="siege -c (default 10)")
    parser.add_argument("--time", default="10s", help="siege -t per run (default 10s)")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the temp dir with the Redis, simulator and app logs")
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 255 or args.latency_ms <= 0:
        parser.error("--concurrency must be 1..255 and --latency-ms positive")
    try:
        if not 1 <= _seconds(args.time) <= 600:
            raise ValueError
    except (ValueError, KeyError):
        parser.error("--time must look like 10s, 1m (at most 10 minutes)")
    if shutil.which("siege") is None:
        print("error: siege not found: run `make bench-seed` (installs it) or "
              "`apt-get install siege`", file=sys.stderr)
        return 2
    command = " ".join([".venv/bin/python bench/seed.py",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).rstrip()
    tmp = Path(tempfile.mkdtemp(prefix="bb-seed-"))
    started: list[subprocess.Popen] = []
    rows: list[dict] = []
    ok = False
    try:
        redis_port, sim_port, app_port, bare_port = (probes.free_port() for _ in range(4))
        started.append(procs.start_redis(redis_port, tmp / "redis", tmp / "redis.log"))
        sim_url = f"http://127.0.0.1:{sim_port}"
        started.append(procs.start_upstream_sim(sim_port, args.latency_ms, 0.0,
                                                tmp / "upstream-sim.log"))
        env = {"BB_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "BB_INSTANCE_ID": "bench",
               "BB_COOKIE_SECRET": COOKIE_SECRET, "BB_UPSTREAM_URL": sim_url}
        app = procs.start_instance(app_port, env, tmp / "app.log", extra_args=("--demo-blocking",))
        started.append(app)
        probes.wait_until(lambda: probes.is_ready(app_port), 30, "app /readyz", app)
        bare = subprocess.Popen([sys.executable, str(HERE / "bare_server.py"), "--port",
                                 str(bare_port)], cwd=ROOT)
        started.append(bare)
        base, bare_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{bare_port}/"
        probes.wait_until(lambda: _answers(bare_url), 20, "bare server", bare)

        rc = tmp / "siegerc"
        rc.write_text(SIEGERC)
        run_id = uuid.uuid4().hex[:8]  # queries no earlier run has cached
        urls = tmp / "urls.txt"
        urls.write_text("".join(f"{base}/rate?q=pants-{run_id}-{i}\n" for i in range(UNIQUE_URLS)))
        runs = [
            ("blocking", "/rate/blocking?q=pants", [f"{base}/rate/blocking?q=pants"]),
            ("async-unique", f"/rate?q=pants-{run_id}-<i> (-f urls.txt)", ["-f", str(urls)]),
            ("async-cached", "/rate?q=pants", [f"{base}/rate?q=pants"]),
            ("bare", "/ (bench/bare_server.py)", [bare_url]),
        ]
        for name, shown, target in runs:
            if name == "async-cached":
                get(base + "/rate?q=pants")  # one miss first: the run itself is all hits
            before = sim_total(sim_url)
            stats = siege(rc, target, args.concurrency, args.time)
            rows.append(row(name, shown, stats, sim_total(sim_url) - before))
            last = rows[-1]
            log(f"{name}: {last['rate']:.2f} transactions/s, mean {last['response_s']:.2f} s, "
                f"{rows[-1]['ok']} ok, {rows[-1]['failed']} failed, "
                f"{rows[-1]['upstream']} upstream requests")
            settle(sim_url, args.latency_ms)
        ok = True
    finally:
        for proc in reversed(started):
            procs.stop(proc)
        if args.keep_logs or not ok:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(table(rows))
    print()
    for line in verdicts(rows, args.concurrency, args.latency_ms):
        print("- " + line)
    if not args.no_write:
        write_markdown(rows, args, command)
    return 0


def _answers(url: str) -> bool:
    try:
        return get(url) == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
