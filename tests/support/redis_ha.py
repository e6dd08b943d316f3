"""A real Redis Sentinel topology for tests: a primary, replicas and three sentinels, all
redis-server processes on free ports with a password (service/ops/redis_ha.py says what
each is started with). A replica may reach its primary through a TcpRelay, so a test can
cut replication for real: freeze the relay, and the bytes it holds never arrive."""

from __future__ import annotations

import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis as redis_sync

from service.ops import procs
from service.ops.launch import free_run
from service.ops.redis_ha import LOCAL_DOWN_AFTER_MS, data_node_conf, sentinel_conf
from service.ops.secrets import ensure_secrets

SERVICE = "bb"


class TcpRelay(threading.Thread):
    """127.0.0.1:port → 127.0.0.1:target, byte for byte, until frozen. Frozen, it reads
    nothing more from either side; `discard()` then closes every connection with whatever
    the kernel holds for it unread, so those bytes are lost for good."""

    def __init__(self, target: int):
        super().__init__(daemon=True)
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: dict[socket.socket, socket.socket] = {}
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.closed.is_set():
            watched = [self.listener] + ([] if self.frozen.is_set() else list(self.pairs))
            try:
                readable, _, _ = select.select(watched, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for sock in readable:
                if sock is self.listener:
                    self._accept()
                elif not self.frozen.is_set():
                    self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
        except OSError:
            return
        self.pairs[client], self.pairs[upstream] = upstream, client

    def _forward(self, sock: socket.socket) -> None:
        peer = self.pairs.get(sock)
        try:
            data = sock.recv(65536)
            if data and peer is not None:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer = self.pairs.pop(sock, None)
        for each in (sock, peer):
            if each is not None:
                self.pairs.pop(each, None)
                each.close()

    def freeze(self) -> None:
        self.frozen.set()

    def resume(self) -> None:
        self.frozen.clear()

    def discard(self) -> None:
        """Close every relayed connection, dropping what it held (stays frozen)."""
        self.frozen.set()
        time.sleep(0.1)  # the loop is past any forward it had begun
        for sock in list(self.pairs):
            self._drop(sock)

    def close(self) -> None:
        self.closed.set()
        self.discard()
        self.listener.close()


def wait_true(check, timeout_s: float, what: str) -> None:
    """Until check() is true; a Redis that does not answer (yet) counts as not true."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis_sync.RedisError, OSError, KeyError, StopIteration) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what}: not true after {timeout_s}s (last error: {last!r})")


class RedisHA:
    """Primary + replicas + three sentinels in `folder`; stop() stops every one by PID."""

    def __init__(self, folder: Path, replicas: int = 2, relayed: bool = False,
                 down_after_ms: int = LOCAL_DOWN_AFTER_MS):
        self.folder = folder
        self.replicas = replicas
        self.relayed = relayed
        self.down_after_ms = down_after_ms
        self.password = ""
        # a checked run below the kernel's range for outgoing connections: ports it picks
        # one by one may be picked twice, or taken by a connection before the node binds
        first = free_run(1 + replicas + 3)
        self.primary_port = first
        self.replica_ports = [first + 1 + i for i in range(replicas)]
        self.sentinel_ports = [first + 1 + replicas + i for i in range(3)]
        self.relays: list[TcpRelay] = []
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self) -> RedisHA:
        self.folder.mkdir(parents=True, exist_ok=True)
        ensure_secrets(self.folder, {}, say=lambda _: None)
        self.password = (self.folder / "redis_password").read_text().strip()
        auth = self.folder / "redis-auth.conf"
        self._data_node(self.primary_port, data_node_conf(auth))
        for port in self.replica_ports:
            upstream = self.primary_port
            if self.relayed:
                relay = TcpRelay(self.primary_port)
                self.relays.append(relay)
                upstream = relay.port
            self._data_node(port, data_node_conf(auth, replica_of=upstream))
        first = self.client(self.primary_port)
        # connected, and counted as good (acknowledging) by min-replicas-to-write
        self.wait(lambda: first.info("replication").get("min_slaves_good_slaves")
                  == self.replicas, 15, "every replica connected and acknowledging")
        for port in self.sentinel_ports:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(sentinel_conf(self.primary_port, SERVICE, self.password, self.folder,
                                          self.down_after_ms))
            self.procs[port] = procs.start_sentinel(port, conf, self.folder / f"sentinel-{port}.log",
                                                    self.password)
        self.wait(lambda: all(int(self.client(port).sentinel_master(SERVICE)["num-other-sentinels"])
                              == 2 for port in self.sentinel_ports), 20, "the sentinels know each other")
        return self

    def _data_node(self, port: int, conf_text: str) -> None:
        conf = self.folder / f"redis-{port}.conf"
        conf.write_text(conf_text)
        self.procs[port] = procs.start_redis(port, self.folder / f"redis-{port}",
                                             self.folder / f"redis-{port}.log", conf,
                                             self.password)

    @property
    def env(self) -> dict[str, str]:
        """What an instance needs to find the primary through the sentinels."""
        return {"BB_REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                "BB_REDIS_SERVICE": SERVICE,
                "BB_REDIS_PASSWORD_FILE": str(self.folder / "redis_password")}

    def client(self, port: int) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=port, password=self.password,
                                socket_timeout=5, decode_responses=True)

    def primary_named(self) -> int:
        """The primary's port as the sentinels name it now."""
        _, port = self.client(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def primary(self) -> redis_sync.Redis:
        return self.client(self.primary_named())

    def kill(self, port: int) -> None:
        """kill -9 (by its PID)."""
        self.procs[port].kill()
        self.procs[port].wait()

    def wait_promoted(self, old: int, timeout_s: float = 30) -> int:
        """Wait until the sentinels name another primary and it takes writes; its port."""
        self.wait(lambda: self.primary_named() != old, timeout_s, "a replica promoted")
        new = self.primary_named()
        self.wait(lambda: self.client(new).info("replication")["role"] == "master",
                  timeout_s, "the promoted replica a primary")
        return new

    wait = staticmethod(wait_true)

    def stop(self) -> None:
        """kill -9 every process (by PID): a test's data need not be saved, and a primary
        asked to stop would wait up to 10 s for its lagging replicas."""
        for relay in self.relays:
            relay.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for path in sorted(self.folder.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path.name} -----\n" + "\n".join(tail))
        return "\n".join(parts)
