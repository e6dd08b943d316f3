"""A source address per virtual user, when the target is on loopback.

Linux routes all of 127.0.0.0/8 to the loopback interface, so binding each user's
sockets to its own 127.x.y.z makes nginx (and any per-address limit behind it) see many
shoppers, as in real life, instead of one.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from typing import Any

_counter = itertools.count()


def is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback and ":" not in host
    except ValueError:
        return host == "localhost"


def next_address(process_index: int) -> str:
    """A loopback address no other user of any load process has: 127.P.x.y, y from 1."""
    n = next(_counter)
    return f"127.{16 + process_index % 200}.{(n // 254) % 256}.{n % 254 + 1}"


def bind_fast_client(session: Any, host_url: str, address: str) -> None:
    """Make a Locust FastHttpSession's connections to `host_url` leave from `address`.

    geventhttpclient has no source-address option; its ConnectionPool documents
    `_create_tcp_socket` as the socket factory to override, so ours binds the socket
    before the pool connects it. (tests/integration/test_load.py checks in nginx's log
    that the addresses arrive.)"""
    pool = session.client.clientpool.get_client(host_url)._connection_pool
    make_socket = pool._create_tcp_socket

    def bound_socket(family: int, socktype: int, protocol: int) -> socket.socket:
        sock: socket.socket = make_socket(family, socktype, protocol)
        sock.bind((address, 0))
        return sock
    pool._create_tcp_socket = bound_socket


def connected_socket(host: str, port: int, address: str | None,
                     timeout_s: float) -> socket.socket:
    """A TCP socket to host:port, leaving from `address` when one is given."""
    sock = socket.create_connection((host, port), timeout=timeout_s,
                                    source_address=(address, 0) if address else None)
    return sock
