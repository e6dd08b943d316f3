"""The local cluster's supervisord, over its unix socket (XML-RPC)."""

from __future__ import annotations

import http.client
import xmlrpc.client
from typing import Any

from service.ops.errors import OpsError
from service.ops.layout import Layout


def supervisor(layout: Layout) -> Any:
    """An XML-RPC proxy to the cluster's supervisord (its methods are remote calls)."""
    from supervisor.xmlrpc import SupervisorTransport
    transport = SupervisorTransport(None, None, f"unix://{layout.supervisor_socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def process_states(layout: Layout) -> dict[str, dict[str, Any]]:
    """supervisord's view of every program: name -> its process info."""
    try:
        infos = supervisor(layout).supervisor.getAllProcessInfo()
    except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
        raise OpsError(f"no cluster answers at {layout.supervisor_socket} ({exc}); "
                       "start one with `make demo` or `python -m service up`") from None
    return {info["name"]: info for info in infos}
