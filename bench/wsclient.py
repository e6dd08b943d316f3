"""A minimal raw asyncio WebSocket client and the client worker process of bench/fanout.py.

Only what the fan-out benchmark needs: the RFC 6455 handshake, reading unmasked server
frames (text, ping, close), answering pings with (zero-key) masked pongs. Received text
frames are stored as (receive wall time, payload bytes) and parsed only after the
measurement, so the hot path per delivery is one time.time() and one list append.

One worker process runs one asyncio loop holding many clients; the parent drives it
over a multiprocessing Pipe:
    ("connect", [(port, n), ...], path, concurrency, timeout_s) -> ("connected", info)
    ("collect", final_version, epoch, timeout_s)                -> ("result", data)
    ("close",)                                                  -> worker exits
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import resource
import socket
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOST = "127.0.0.1"


def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def handshake_request(port: int, path: str) -> tuple[bytes, bytes]:
    """(request bytes, expected Sec-WebSocket-Accept value)."""
    key = base64.b64encode(os.urandom(16))
    request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    return request, base64.b64encode(hashlib.sha1(key + GUID).digest())


class WSClient(asyncio.Protocol):
    __slots__ = (
        "accept",
        "buf",
        "closed_at",
        "error",
        "frames",
        "handshaken",
        "opened",
        "port",
        "request",
        "transport",
    )

    def __init__(self, port: int, path: str, opened: asyncio.Future):
        self.port = port
        self.request, self.accept = handshake_request(port, path)
        self.transport = None
        self.handshaken = False
        self.buf = b""
        self.frames: list[tuple[float, bytes]] = []
        self.opened = opened          # resolved by the first text frame (the open snapshot)
        self.closed_at: float | None = None
        self.error: str | None = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)
        self.request = None

    def data_received(self, data: bytes):
        t = time.time()
        if self.handshaken and not self.buf:
            # fast path: exactly one small unfragmented text frame in this read
            n = len(data)
            if n > 2 and data[0] == 0x81 and data[1] < 126 and n == data[1] + 2:
                self.frames.append((t, data[2:]))
                if self.opened is not None:
                    self._set_opened(t)
                return
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self._fail("handshake reply too long")
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            if not head.startswith(b"HTTP/1.1 101") or self.accept not in head:
                self._fail("handshake refused: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
                return
            self.handshaken = True
        self._parse(t)

    def _set_opened(self, t: float):
        opened, self.opened = self.opened, None
        if not opened.done():
            opened.set_result(t)

    def _parse(self, t: float):
        buf, pos = self.buf, 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, header = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if b1 & 0x80:
                self._fail("server sent a masked frame")
                return
            if size - pos < header + length:
                break
            payload = buf[pos + header:pos + header + length]
            pos += header + length
            opcode = b0 & 0x0F
            if opcode == 0x1 and b0 & 0x80:
                self.frames.append((t, payload))
                if self.opened is not None:
                    self._set_opened(t)
            elif opcode == 0x9:  # ping -> pong, masked with a zero key
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:
                self.error = self.error or f"server closed the socket ({payload[:2].hex()})"
                self.transport.close()
                break
            elif opcode == 0xA:
                pass
            else:
                self._fail(f"unexpected frame opcode {opcode:#x} fin={b0 >> 7}")
                return
        self.buf = buf[pos:]

    def _fail(self, why: str):
        self.error = self.error or why
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        self.opened = None
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc):
        self.closed_at = time.time()
        if self.error is None:
            self.error = f"connection lost ({exc})" if exc else "connection closed"
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(self.error))
        self.opened = None

    def versions(self) -> list[tuple[int, str, float]]:
        """(version, epoch, receive time) of every text frame, in arrival order."""
        out = []
        for t, payload in self.frames:
            try:
                obj = json.loads(payload)
                out.append((int(obj["version"]), str(obj["epoch"]), t))
            except (ValueError, KeyError, TypeError):
                continue
        return out


async def _connect_all(targets, path, concurrency, timeout_s, clients):
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    handshake_s: list[float] = []
    errors: dict[str, int] = {}

    async def open_one(port: int):
        async with gate:
            started = time.time()
            opened = loop.create_future()
            try:
                _, proto = await asyncio.wait_for(loop.create_connection(
                    lambda: WSClient(port, path, opened), HOST, port), timeout_s)
                clients.append(proto)
                await asyncio.wait_for(opened, timeout_s)
                handshake_s.append(time.time() - started)
            except (TimeoutError, OSError, ConnectionError) as exc:
                key = f"{type(exc).__name__}: {exc}"[:120]
                errors[key] = errors.get(key, 0) + 1

    # interleave the instances so both fill up at the same pace
    order = []
    remaining = {port: n for port, n in targets}
    while any(remaining.values()):
        for port in remaining:
            if remaining[port]:
                remaining[port] -= 1
                order.append(port)
    started = time.time()
    await asyncio.wait_for(asyncio.gather(*(open_one(p) for p in order)), timeout_s * 4)
    return {"started": started, "done": time.time(), "ok": len(handshake_s),
            "failed": sum(errors.values()), "errors": errors, "handshake_s": handshake_s}


async def _collect(clients, final_version, epoch, timeout_s):
    deadline = time.monotonic() + timeout_s
    pending = list(clients)
    while pending and time.monotonic() < deadline:
        still = []
        for c in pending:
            if c.closed_at is not None:
                continue
            last = c.frames[-1][1] if c.frames else b""
            try:
                obj = json.loads(last) if last else {}
                if obj.get("epoch") == epoch and int(obj.get("version", -1)) >= final_version:
                    continue
            except ValueError:
                pass
            still.append(c)
        pending = still
        if pending:
            await asyncio.sleep(0.05)
    return {"clients": [{"port": c.port, "recv": c.versions(), "closed_at": c.closed_at,
                         "error": c.error if c.closed_at is not None else None}
                        for c in clients],
            "timed_out": len(pending)}


async def _serve(conn, worker_id):
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()

    def readable():
        try:
            while conn.poll():
                inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("close",))

    loop.add_reader(conn.fileno(), readable)
    clients: list[WSClient] = []
    try:
        while True:
            msg = await inbox.get()
            if msg[0] == "connect":
                _, targets, path, concurrency, timeout_s = msg
                try:
                    info = await _connect_all(targets, path, concurrency, timeout_s, clients)
                except TimeoutError:
                    info = {"started": 0, "done": time.time(), "ok": 0, "failed": -1,
                            "errors": {"worker connect phase timed out": 1}, "handshake_s": []}
                info["worker"] = worker_id
                conn.send(("connected", info))
            elif msg[0] == "collect":
                _, final_version, epoch, timeout_s = msg
                conn.send(("result", await _collect(clients, final_version, epoch, timeout_s)))
            elif msg[0] == "close":
                break
    finally:
        loop.remove_reader(conn.fileno())
        for c in clients:
            if c.transport is not None:
                c.transport.abort()
        await asyncio.sleep(0)


def worker_main(conn, worker_id: int) -> None:
    """Entry point of a client worker process (multiprocessing target)."""
    raise_nofile_limit()
    try:
        asyncio.run(_serve(conn, worker_id))
    finally:
        conn.close()


def probe(port: int, path: str, timeout_s: float = 5.0) -> bytes:
    """Blocking: open one socket, read the open snapshot's payload, close. For warm-up."""
    request, accept = handshake_request(port, path)
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                if not data.startswith(b"HTTP/1.1 101") or accept not in data[:end]:
                    raise ConnectionError(data[:end].split(b"\r\n")[0].decode("latin-1"))
                frame = data[end + 4:]
                # an unmasked server frame: 7-bit length, or 126 and a 16-bit one (a
                # snapshot is well under 64 KiB)
                length, start = (frame[1] & 0x7F, 2) if len(frame) >= 2 else (0, 0)
                if length == 126 and len(frame) >= 4:
                    length, start = int.from_bytes(frame[2:4], "big"), 4
                if start and length != 126 and len(frame) >= start + length:
                    return frame[start:start + length]
        raise ConnectionError(f"no snapshot from port {port} within {timeout_s}s")
