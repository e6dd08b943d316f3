"""A compose project on the test's Docker engine, and a small HTTP and WebSocket client
for it: shared by the compose tests (tests/compose)."""

from __future__ import annotations

import json
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlencode

import websocket

from service.ops.probes import free_port
from service.paths import ROOT
from support.docker_engine import Engine, say
from support.standins import ensure_base_images

SESSION_FIELD = re.compile(r'name="session" value="([^"]+)"')
SKU = "internet"
UP_TIMEOUT_S = 180


@dataclass
class Stack:
    """One compose project on the engine: its own name, port and subnet."""
    engine: Engine
    project: str
    port: int
    subnet_prefix: str  # "172.29.41": the network is .0/24, nginx .254, the host .1
    compose: tuple[str, ...] = ("docker", "compose")
    stand_ins: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # more BB_* for compose

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"BB_HTTP_PORT": str(self.port), "BB_HTTP_ADDRESS": "127.0.0.1",
                "BB_SUBNET": f"{self.subnet_prefix}.0/24",
                "BB_NGINX_ADDRESS": f"{self.subnet_prefix}.254", **self.settings}

    def run(self, *args: str, check: bool = True, timeout_s: float = 600):
        return self.engine.run(*self.compose, "-p", self.project, *args, check=check,
                               timeout_s=timeout_s, cwd=ROOT, env_extra=self.env)

    def containers(self, service: str | None = None, every: bool = False) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        filters = ["--filter", label]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listed = self.engine.docker("ps", "-q", *(["-a"] if every else []), *filters)
        return listed.stdout.split()

    def container_of(self, instance: str) -> str:
        """The app container an X-Instance names (`<hostname>-8000`; hostname = short id)."""
        hostname = instance.rsplit("-", 1)[0]
        for container in self.containers("app"):
            if container.startswith(hostname):
                return container
        raise AssertionError(f"no running app container has hostname {hostname}")

    def wait_answering(self, timeout_s: float = UP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if get(self.base + "/readyz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        logs = self.run("logs", "--tail", "30", check=False)
        raise AssertionError(f"nothing answered on {self.base}/readyz after {timeout_s}s:\n"
                             f"{logs.stdout[-4000:]}")


# ------------------------------------------------------------------ a small HTTP client

@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def get(url: str, timeout_s: float = 10) -> Answer:
    return send(urllib.request.Request(url), timeout_s)


def post_form(url: str, fields: dict[str, str]) -> Answer:
    request = urllib.request.Request(url, data=urlencode(fields).encode(), method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    return send(request, 10)


def send(request: urllib.request.Request, timeout_s: float) -> Answer:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return Answer(answer.status, {k.lower(): v for k, v in answer.headers.items()},
                          answer.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def new_session(stack: Stack) -> str:
    page = get(stack.base + "/")
    assert page.status == 200, page.body[:300]
    found = SESSION_FIELD.search(page.body.decode())
    assert found, "no hidden session field on the page"
    return found.group(1)


def book(stack: Stack, sku: str = SKU) -> dict:
    answer = get(f"{stack.base}/api/books?sku={sku}")
    assert answer.status == 200, answer.body[:300]
    return answer.json()[0]


def cart(stack: Stack, session: str, action: str, sku: str = SKU) -> Answer:
    return post_form(stack.base + "/cart", {"session": session, "action": action, "sku": sku})


def open_socket(stack: Stack, sku: str = SKU) -> tuple[websocket.WebSocket, str, dict]:
    """A WebSocket through nginx: (socket, the instance that took it, its first snapshot)."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{stack.port}/cart/status?sku={sku}",
                                     timeout=10)
    return ws, ws.getheaders()["x-instance"], json.loads(ws.recv())


def sockets_on_every_replica(stack: Stack, replicas: int) -> dict[str, list]:
    """Open sockets until every replica holds at least one: {instance: [sockets]}."""
    by_instance: dict[str, list] = {}
    for _ in range(replicas * 8):
        ws, instance, _ = open_socket(stack)
        by_instance.setdefault(instance, []).append(ws)
        if len(by_instance) == replicas:
            return by_instance
    raise AssertionError(f"sockets reached only {sorted(by_instance)}")


def new_stack(engine: Engine, compose: tuple[str, ...]) -> Stack:
    """A project of its own: a random name, a free port, a random /24."""
    return Stack(engine, f"bbtest{random.randrange(16**6):06x}", free_port(),
                 f"172.{random.randrange(29, 31)}.{random.randrange(256)}", compose)


def started_redis_stack(engine: Engine, files: tuple[str, ...], settings: dict[str, str],
                        what: str) -> Stack:
    """A new project of `files` (an override with a Redis network of its own, on a random
    /24 outside the ones new_stack picks), built, started and answering through nginx."""
    ensure_base_images(engine)
    stack = new_stack(engine, ("docker", "compose", *files))
    stack.settings = {**settings, "BB_REDIS_NETWORK": f"172.31.{random.randrange(256)}"}
    started = time.monotonic()
    stack.run("build", "app")
    stack.run("up", "-d")
    stack.wait_answering()
    say(f"{what} up and answering in {time.monotonic() - started:.1f}s")
    return stack


REDIS_AUTH = 'REDISCLI_AUTH="$(cat /run/bb-secrets/redis_password)"'


def redis_cli(stack: Stack, service: str, *command: str, port: int = 6379) -> str:
    """redis-cli in a Redis container of the stack, with the generated password."""
    done = stack.run("exec", "-T", service, "sh", "-c",
                     f"{REDIS_AUTH} redis-cli -p {port} {' '.join(command)}", check=False)
    return str(done.stdout).strip()


def redis_role(stack: Stack, service: str) -> str:
    """`master`, `slave`, or `-` when the node does not answer."""
    for line in redis_cli(stack, service, "info", "replication").splitlines():
        if line.startswith("role:"):
            return line.split(":", 1)[1].strip()
    return "-"
