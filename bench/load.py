"""Load benchmarks on the load tool (`python -m service load`), against real clusters of
`python -m service up` with a generated 2,000-book catalog, on free 127.0.0.1 ports.

    .venv/bin/python bench/load.py capacity [--duration 30]   (make bench-load)
    .venv/bin/python bench/load.py scaling  [--duration 15]   (make load-scaling)

capacity: 3 instances. Steps of growing load (shoppers with the default 0.9 s mean think
time, WebSocket and long-poll watchers), each judged with --slo-cart-p99-ms 100 and
--slo-lag-p99-ms 250, until a step fails: the last passing step is the capacity. Every
step (two load processes) reports the load generator's CPU share (the load tool's processes, from
getrusage of its children) beside the servers' (app instances, nginx, redis-server from
/proc), as all share the same cores. Then wrk -t2 -c32 compares cart POSTs/s through
nginx (add/remove over 2,000 books) with GETs/s of a bare Tornado handler
(bench/bare_server.py) in the same run.

scaling: the same saturating load (shoppers without think time, two load processes)
against 1, 2 and 3 instances; draws cart POSTs/s and WebSocket delivery lag p99 against
instances into docs/load-scaling.png.

Both replace their section of BENCHMARKS.md (unless --no-write). Every process started is
stopped by PID.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from service.ops import probes, procs  # noqa: E402
from service.ops.launch import LocalCluster  # noqa: E402

MD_PATH = ROOT / "BENCHMARKS.md"
CHART = ROOT / "docs" / "load-scaling.png"
BOOKS = 2000
CAPACITY_STEPS = [(5, 25, 5), (10, 50, 5), (20, 100, 10), (40, 200, 20), (80, 400, 40),
                  (160, 800, 80), (320, 1600, 160)]
SCALING_USERS = (60, 100, 10)  # shoppers without think time, WS and LP watchers
SESSION_FIELD = re.compile(r'id="session" name="session" value="([^"]+)"')
WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local sku = skus[(counter %% #skus) + 1]
  local action = (math.floor(counter / #skus) %% 2 == 0) and "add" or "remove"
  return wrk.format("POST", "/cart", {["Content-Type"] = "application/x-www-form-urlencoded"},
                    "session=%s&action=" .. action .. "&sku=" .. sku)
end
skus = {%s}
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) of a process and every descendant alive now."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    wanted = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return sum(cpu.get(pid, 0.0) for pid in wanted)


def run_load(cluster: LocalCluster, out: Path, users: tuple[int, int, int], duration_s: float,
             *extra: str) -> dict:
    """One `python -m service load`; its summary with CPU figures added."""
    shoppers, ws, lp = users
    command = [sys.executable, "-m", "service", "load", "--url", cluster.base,
               "--redis-url", cluster.redis_url,
               "--redis-password-file", str(cluster.redis_password_file), "--out", str(out),
               "--per-book", "1000",
               "--duration", f"{duration_s}s", "--shoppers", str(shoppers), "--ws-watchers",
               str(ws), "--lp-watchers", str(lp), "--rate-readers", "2", *extra]
    servers_before = tree_cpu_s(cluster.proc.pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(out / "load.log", "w") as output:
        code = subprocess.call(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    wall_s = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads((out / "summary.json").read_text()) if code in (0, 1) else {}
    cores = os.cpu_count() or 1
    summary["exit_code"] = code
    summary["generator_cpu_share"] = round(
        (children.ru_utime + children.ru_stime - children_before.ru_utime
         - children_before.ru_stime) / (wall_s * cores), 3)
    summary["servers_cpu_share"] = round(
        (tree_cpu_s(cluster.proc.pid) - servers_before) / (wall_s * cores), 3)
    return summary


def wrk_rate(url: str, script: Path | None, seconds: int = 10) -> tuple[float, int]:
    """(requests/s, non-2xx answers) of wrk -t2 -c32 against url."""
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return rate, int(bad.group(1)) if bad else 0


def cart_vs_bare(cluster: LocalCluster, work: Path) -> dict:
    """wrk: cart POSTs/s through nginx against GETs/s of a bare Tornado handler."""
    page = urllib.request.urlopen(cluster.base + "/", timeout=10).read().decode()
    token = urllib.parse.quote(SESSION_FIELD.search(page).group(1), safe="")
    books = json.load(urllib.request.urlopen(cluster.base + "/api/books?per_page=200",
                                             timeout=10))
    script = work / "cart.lua"
    script.write_text(WRK_SCRIPT % (token, ",".join(f'"{b["sku"]}"' for b in books)))
    cart_rate, cart_bad = wrk_rate(cluster.base + "/cart", script)
    port = probes.free_port()
    bare = subprocess.Popen([sys.executable, str(HERE / "bare_server.py"), "--port", str(port)])
    try:
        probes.wait_until(lambda: probes.http_ok(f"http://127.0.0.1:{port}/"), 20, "bare server")
        bare_rate, _ = wrk_rate(f"http://127.0.0.1:{port}/", None)
    finally:
        procs.stop(bare)
    return {"cart_posts_per_s": cart_rate, "cart_non_2xx": cart_bad,
            "bare_gets_per_s": bare_rate, "ratio": round(cart_rate / bare_rate, 2)}


def started_cluster(work: Path, instances: int) -> LocalCluster:
    # wrk sends every cart POST from 127.0.0.1 (a throughput figure, not one shopper):
    # exempt from nginx's per-address limits; the load's users have addresses of their own
    cluster = LocalCluster(work / f"var-{instances}", instances=instances,
                           env={"BB_LIMIT_EXEMPT": "127.0.0.1"},
                           up_args=("--books", str(BOOKS)))
    cluster.start()
    return cluster


def capacity(args: argparse.Namespace, work: Path) -> list[str]:
    cluster = started_cluster(work, 3)
    rows, passed = [], None
    try:
        for users in CAPACITY_STEPS:
            out = work / f"capacity-{users[0]}"
            out.mkdir()
            log(f"capacity: {users} ...")
            summary = run_load(cluster, out, users, args.duration, "--slo-cart-p99-ms", "100",
                               "--slo-lag-p99-ms", "250", "--processes", "2")
            rows.append((users, summary))
            log(f"  -> {summary.get('verdict')}: {summary.get('reason')}")
            if summary.get("verdict") != "pass":
                break
            passed = (users, summary)
        log("wrk: cart POSTs through nginx vs a bare handler ...")
        compared = cart_vs_bare(cluster, work)
    finally:
        cluster.stop()
    lines = ["| shoppers | WS watchers | LP watchers | cart POSTs/s | cart p99 ms | WS lag p99 ms "
             "| LP lag p99 ms | generator CPU | servers CPU | verdict |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (shoppers, ws, lp), s in rows:
        lag = s.get("delivery_lag_ms", {})
        lines.append(f"| {shoppers} | {ws} | {lp} | {s.get('cart', {}).get('ops_per_s')} | "
                     f"{s.get('cart', {}).get('p99_ms')} | {lag.get('websocket', {}).get('p99')} | "
                     f"{lag.get('longpoll', {}).get('p99')} | {s['generator_cpu_share']:.0%} | "
                     f"{s['servers_cpu_share']:.0%} | {s.get('verdict')}: {s.get('reason')} |")
    lines.append("")
    if passed:
        (shoppers, ws, lp), s = passed
        lines.append(f"- Capacity (last passing step): {shoppers} shoppers, {ws + lp} watchers "
                     f"({ws} WebSocket, {lp} long-poll), {s['cart']['ops_per_s']} cart "
                     f"POSTs/s, cart p99 {s['cart']['p99_ms']} ms, WS lag p99 "
                     f"{s['delivery_lag_ms']['websocket']['p99']} ms.")
    else:
        lines.append("- Not even the first step passed.")
    lines.append(f"- wrk -t2 -c32, 10 s: {compared['cart_posts_per_s']:.0f} cart POSTs/s through "
                 f"nginx ({compared['cart_non_2xx']} non-2xx) against "
                 f"{compared['bare_gets_per_s']:.0f} GETs/s from a bare Tornado handler: "
                 f"{compared['ratio']:.2f} of bare (goal: at least 0.5).")
    return lines


def scaling(args: argparse.Namespace, work: Path) -> list[str]:
    points = []
    for instances in (1, 2, 3):
        cluster = started_cluster(work, instances)
        try:
            out = work / f"scaling-{instances}"
            out.mkdir()
            log(f"scaling: {instances} instance(s) ...")
            summary = run_load(cluster, out, SCALING_USERS, args.duration, "--think", "1ms",
                               "--processes", "2")
        finally:
            cluster.stop()
        points.append((instances, summary))
        log(f"  -> {summary['cart']['ops_per_s']} cart POSTs/s, WS lag p99 "
            f"{summary['delivery_lag_ms']['websocket']['p99']} ms, {summary['verdict']}")
    draw(points)
    lines = ["| instances | cart POSTs/s | cart p99 ms | WS lag p99 ms | generator CPU | "
             "servers CPU | verdict |", "|---:|---:|---:|---:|---:|---:|---|"]
    for instances, s in points:
        lines.append(f"| {instances} | {s['cart']['ops_per_s']} | {s['cart']['p99_ms']} | "
                     f"{s['delivery_lag_ms']['websocket']['p99']} | "
                     f"{s['generator_cpu_share']:.0%} | {s['servers_cpu_share']:.0%} | "
                     f"{s['verdict']} |")
    return [*lines, "", f"![cart POSTs/s and WS lag p99 against instances]"
                        f"({CHART.relative_to(ROOT)})"]


def draw(points: list[tuple[int, dict]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    instances = [n for n, _ in points]
    ops = [s["cart"]["ops_per_s"] for _, s in points]
    lag = [s["delivery_lag_ms"]["websocket"]["p99"] or 0 for _, s in points]
    figure, left = plt.subplots(figsize=(6.4, 4))
    left.plot(instances, ops, "o-", color="tab:blue", label="cart POSTs/s")
    left.set_xlabel("app instances (2 cores, load generator on the same machine)")
    left.set_ylabel("cart POSTs/s", color="tab:blue")
    left.set_xticks(instances)
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(instances, lag, "s--", color="tab:red", label="WebSocket delivery lag p99")
    right.set_ylabel("WebSocket lag p99 (ms)", color="tab:red")
    right.set_ylim(bottom=0)
    figure.suptitle(f"Load scaling: {SCALING_USERS[0]} shoppers (no think time), "
                    f"{SCALING_USERS[1]} WS + {SCALING_USERS[2]} LP watchers")
    figure.tight_layout()
    CHART.parent.mkdir(exist_ok=True)
    figure.savefig(CHART, dpi=110)


def write_section(name: str, command: str, lines: list[str]) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [start, f"## {name} (`bench/load.py`)", "",
            f"Measured {when} on {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; everything on "
            f"127.0.0.1, the load generator on the same cores as the shop.", "",
            f"Command: `{command}`", "", *lines, end]
    text = MD_PATH.read_text()
    if start in text:
        text = text[:text.index(start)] + "\n".join(body) + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(body) + "\n"
    MD_PATH.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["capacity", "scaling"])
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of load per run (capacity 30, scaling 15)")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()
    args.duration = args.duration or (30.0 if args.mode == "capacity" else 15.0)
    if args.mode == "capacity" and shutil.which("wrk") is None:
        log("wrk not found: run `apt-get install wrk` (or `make bench-load`, which does)")
        return 2
    work = Path(tempfile.mkdtemp(prefix=f"bench-load-{args.mode}-"))
    lines = capacity(args, work) if args.mode == "capacity" else scaling(args, work)
    print("\n".join(lines))
    if not args.no_write:
        write_section(f"load-{args.mode}", f".venv/bin/python bench/load.py {args.mode}", lines)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
