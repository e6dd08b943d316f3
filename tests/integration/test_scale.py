"""`ctl scale N` on a running cluster of `up`, under a steady stream of requests through
nginx: scaling up adds an instance that serves, scaling down drains it; no request fails.
Bad input exits 2 and changes nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from support.deployment import ROOT, Deployment

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # the steady stream is many shoppers' worth from one address: exempt it from the
    # per-address rate limits (tests/integration/test_edge_limits.py tests those)
    deployment = Deployment(tmp_path_factory.mktemp("scale") / "var", instances=1,
                            env={"BB_LIMIT_EXEMPT": "127.0.0.1"})
    deployment.start()
    yield deployment
    deployment.stop()


async def steady_requests(cluster: Deployment, stop: asyncio.Event) -> list[tuple[int, str]]:
    """Cart changes and catalog reads through nginx until `stop`: (status, instance)."""
    client = AsyncHTTPClient(force_instance=True)
    _, token = cluster.session()
    answers = []
    action = "add"
    try:
        while not stop.is_set():
            for method, path, body in (("POST", "/cart", json.dumps(
                    {"session": token, "action": action, "sku": "tornado"})),
                                       ("GET", "/api/books", None)):
                reply = await client.fetch(cluster.base + path, method=method, body=body,
                                           headers={"Content-Type": "application/json"},
                                           raise_error=False, request_timeout=20)
                answers.append((reply.code, reply.headers.get("X-Instance", "")))
            action = "remove" if action == "add" else "add"
            await asyncio.sleep(0.02)
    finally:
        client.close()
    return answers


async def test_scaling_up_and_down_under_load_fails_no_request(cluster):
    stop = asyncio.Event()
    load = asyncio.create_task(steady_requests(cluster, stop))
    await asyncio.sleep(0.5)
    output = await asyncio.to_thread(cluster.ctl, "scale", "2")
    assert "now 2 instance(s)" in output, output
    assert "app-2" in cluster.ctl("status")
    await asyncio.sleep(1.5)  # long enough for least_conn to send app-2 some requests
    await asyncio.to_thread(cluster.ctl, "scale", "1")
    stop.set()
    answers = await load
    assert len(answers) > 50
    assert {code for code, _ in answers} == {200}, [a for a in answers if a[0] != 200][:5]
    assert "app-2" in {instance for _, instance in answers}, "the new instance served nothing"
    status = cluster.ctl("status")
    assert "app-1" in status and "app-2" not in status, status


@pytest.mark.parametrize("args, message", [
    (["scale", "0"], "1 to 32"),
    (["scale", "99"], "1 to 32"),
    (["scale", "two"], "needs a number"),
    (["scale"], "needs a number"),
])
def test_bad_scale_requests_exit_2_and_change_nothing(cluster, args, message):
    before = cluster.ctl("status")
    result = subprocess.run([sys.executable, "-m", "service", "ctl", *args, "--var-dir",
                             str(cluster.var_dir)], cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert _names(cluster.ctl("status")) == _names(before)


def test_scaling_a_cluster_that_is_not_running_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "service", "ctl", "scale", "2",
                             "--var-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "up" in result.stderr, result.stderr


def _names(status: str) -> list[str]:
    return [row.split()[0] for row in status.splitlines()[1:]]
