"""Opening a listening port, with an error that says what to do when it is taken."""

from __future__ import annotations

import errno
import socket

from tornado.netutil import bind_sockets


class PortInUse(OSError):
    """The port is taken; the message names the fix."""


def listen(port: int, host: str, fix: str) -> list[socket.socket]:
    """Bound, listening sockets for host:port. Raises PortInUse naming `fix`."""
    try:
        return bind_sockets(port, host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is already in use: {fix}") from None
        raise
