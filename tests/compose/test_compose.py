"""`docker compose up --build` for real: docker-compose.yml and deploy/Dockerfile built and
started on a real Docker engine (tests/support/docker_engine.py), with stand-in base
images where no registry answers (tests/support/standins.py), and checked through nginx
on the published port: every replica serves, a cart change reaches a WebSocket and a
long-poll, replicas added, stopped and killed under traffic, Redis restarted with every
acknowledged hold kept, and `down` / `down -v` leaving nothing. Debian's docker-compose
1.29 gets a smoke run. Nothing is skipped: a machine that cannot run Docker fails here.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pytest
import websocket

from support.compose_stack import (
    SKU,
    Answer,
    Stack,
    book,
    cart,
    get,
    new_session,
    new_stack,
    open_socket,
    send,
    sockets_on_every_replica,
)
from support.docker_engine import say
from support.standins import ensure_base_images

pytestmark = pytest.mark.timeout(900)


class Traffic(threading.Thread):
    """GET /api/books through nginx in a loop, counting answers that were not 200."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack, self.done, self.failures = stack, threading.Event(), []
        self.count = 0

    def run(self) -> None:
        while not self.done.is_set():
            try:
                answer = get(self.stack.base + "/api/books", timeout_s=15)
                if answer.status != 200:
                    self.failures.append(answer.status)
            except OSError as error:
                self.failures.append(repr(error))
            self.count += 1
            time.sleep(0.02)

    def answer_more(self, requests: int, within_s: float = 60) -> None:
        """Keep going until `requests` more have been answered (or failed): the traffic must
        span what the test does next, however slow this machine is today."""
        target, deadline = self.count + requests, time.monotonic() + within_s
        while self.count < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count >= target, f"only {self.count} of {target} requests in {within_s}s"

    def stop(self) -> None:
        self.done.set()
        self.join(20)


# ------------------------------------------------------------------ the fixtures

@pytest.fixture(scope="module")
def stack(engine):
    stand_ins = ensure_base_images(engine)
    stack = new_stack(engine, ("docker", "compose"))
    stack.stand_ins = stand_ins
    started = time.monotonic()
    say(f"building the app image and starting project {stack.project} on :{stack.port}…")
    stack.run("build", "app")  # once; the other services of the image hit its cache
    say(f"built in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    stack.run("up", "-d")
    stack.wait_answering()
    say(f"up and answering through nginx in {time.monotonic() - started:.1f}s")
    yield stack
    stack.run("down", "-v", "--timeout", "20", check=False)


# ------------------------------------------------------------------ the checks

def test_every_replica_serves_the_page_the_books_and_the_rate(stack):
    page = get(stack.base + "/")
    assert page.status == 200 and b"<html" in page.body.lower()
    assert "text/html" in page.headers["content-type"]
    books = get(stack.base + "/api/books")
    assert books.status == 200 and {b["sku"] for b in books.json()} >= {SKU}
    rate = get(stack.base + "/api/rate?q=tornado", timeout_s=20)
    assert rate.status == 200, rate.body[:300]
    assert rate.json()["query"] == "tornado" and rate.json()["tweetsPerSecond"] >= 0
    instances = {get(stack.base + "/api/books").headers["x-instance"] for _ in range(36)}
    assert len(instances) == 3, instances


def test_secrets_are_generated_once_and_redis_asks_for_its_password(stack):
    said = stack.run("logs", "secrets").stdout
    for secret in ("cookie secret", "admin token", "Redis password"):
        assert re.search(f"the {secret}: none given .* generated", said), said
    unauthenticated = stack.run("exec", "-T", "redis", "redis-cli", "ping", check=False)
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr
    authenticated = stack.run(
        "exec", "-T", "redis", "sh", "-c",
        'REDISCLI_AUTH="$(cat /run/bb-secrets/redis_password)" redis-cli ping')
    assert authenticated.stdout.strip() == "PONG"
    published = stack.engine.docker("port", stack.containers("redis")[0], check=False)
    assert published.stdout.strip() == "", "Redis must not be published on the host"
    token = stack.run("exec", "-T", "app", "cat", "/run/bb-secrets/admin_token").stdout.strip()
    admin = urllib.request.Request(stack.base + "/admin/cluster.json",
                                   headers={"Authorization": f"Bearer {token}"})
    assert send(admin, 10).status == 200
    assert get(stack.base + "/admin/cluster.json").status == 401


def test_a_cart_change_reaches_a_websocket_and_a_long_poll_on_other_replicas(stack):
    ws, ws_instance, snapshot = open_socket(stack)
    cursor = f"{snapshot['epoch']}:{snapshot['version']}"
    polled: list[Answer] = []
    poll = threading.Thread(target=lambda: polled.append(
        get(f"{stack.base}/cart/status?sku={SKU}&since={cursor}", timeout_s=40)))
    poll.start()
    time.sleep(0.5)  # the long-poll is parked before the change
    session = new_session(stack)
    added = cart(stack, session, "add")
    assert added.status == 200, added.body[:300]
    pushed = json.loads(ws.recv())
    assert pushed["inventoryCount"] == snapshot["inventoryCount"] - 1
    assert pushed["version"] > snapshot["version"]
    poll.join(40)
    assert polled and polled[0].status == 200, polled
    assert polled[0].json()["inventoryCount"] == pushed["inventoryCount"]
    ws.close()
    assert cart(stack, session, "remove").status == 200
    say(f"change seen by a WebSocket on {ws_instance} and a long-poll on "
        f"{polled[0].headers.get('x-instance')}")


def test_a_replica_added_with_scale_gets_requests(stack):
    stack.run("up", "-d", "--no-recreate", "--scale", "app=4")
    deadline = time.monotonic() + 60
    instances: set[str] = set()
    while time.monotonic() < deadline and len(instances) < 4:
        instances |= {get(stack.base + "/api/books").headers["x-instance"] for _ in range(12)}
        time.sleep(0.5)
    assert len(instances) == 4, f"nginx used only {sorted(instances)} after scaling to 4"


def test_a_stopped_replica_drains_and_a_killed_one_is_skipped(stack):
    sockets = sockets_on_every_replica(stack, 4)
    stopped, killed = sorted(sockets)[:2]
    traffic = Traffic(stack)
    traffic.start()
    traffic.answer_more(5)
    stack.engine.docker("stop", "--time", "20", stack.container_of(stopped))
    for ws in sockets[stopped]:  # the drain closes its sockets with 1001 (going away)
        frame = ws.recv_data_frame(True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1001
    session = new_session(stack)
    before = book(stack)["inventoryCount"]
    assert cart(stack, session, "add").status == 200  # a change while they are away
    # the drained clients reconnect (through nginx, to another replica) and see it
    _, reconnected_to, snapshot = open_socket(stack)
    assert reconnected_to != stopped and snapshot["inventoryCount"] == before - 1
    stack.engine.docker("kill", "-s", "SIGKILL", stack.container_of(killed))
    for _ in range(20):  # nginx skips the dead replica: every request is answered
        assert get(stack.base + "/api/books").status == 200
    traffic.answer_more(20)  # after the kill too
    traffic.stop()
    assert traffic.failures == [], traffic.failures
    _, instance, snapshot = open_socket(stack)
    assert instance not in (stopped, killed) and snapshot["inventoryCount"] == before - 1
    assert cart(stack, session, "remove").status == 200
    for ws_list in sockets.values():
        for ws in ws_list:
            ws.close()
    say(f"{traffic.count} requests during the stop and the kill, none failed")


def test_restarting_redis_keeps_every_acknowledged_hold(stack):
    sessions = [new_session(stack) for _ in range(5)]
    for session in sessions:
        assert cart(stack, session, "add").status == 200
    held = book(stack)["inventoryCount"]
    stack.run("restart", "redis")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if get(f"{stack.base}/api/books?sku={SKU}").status == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert book(stack)["inventoryCount"] == held
    for session in sessions:  # each hold is still there to release
        assert cart(stack, session, "remove").status == 200
    assert book(stack)["inventoryCount"] == held + len(sessions)


def test_down_leaves_no_container_or_network_and_down_v_no_volume(stack):
    label = f"label=com.docker.compose.project={stack.project}"
    stack.run("down", "--timeout", "20")
    assert stack.containers(every=True) == []
    assert stack.engine.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    volumes = stack.engine.docker("volume", "ls", "-q", "--filter", label).stdout.split()
    assert len(volumes) == 2, volumes  # the Redis data and the secrets survive `down`
    stack.run("down", "-v")
    assert stack.engine.docker("volume", "ls", "-q", "--filter", label).stdout.split() == []


def test_docker_compose_1_29_brings_it_up_and_down(engine, stack):
    """Debian's docker-compose 1.29 (a smoke run: the images are built by now)."""
    legacy = new_stack(engine, ("docker-compose",))
    started = time.monotonic()
    legacy.run("up", "-d", "--build")
    try:
        legacy.wait_answering()
        assert get(legacy.base + "/api/books").status == 200
        say(f"docker-compose 1.29: up and answering in {time.monotonic() - started:.1f}s")
    finally:
        legacy.run("down", "-v", "--timeout", "20")
    assert legacy.containers(every=True) == []
