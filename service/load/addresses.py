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

from requests.adapters import HTTPAdapter

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


class SourceAddressAdapter(HTTPAdapter):
    """A requests adapter whose connections leave from `address`."""

    def __init__(self, address: str, **kwargs: Any):
        self.address = address
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def connected_socket(host: str, port: int, address: str | None,
                     timeout_s: float) -> socket.socket:
    """A TCP socket to host:port, leaving from `address` when one is given."""
    sock = socket.create_connection((host, port), timeout=timeout_s,
                                    source_address=(address, 0) if address else None)
    return sock
