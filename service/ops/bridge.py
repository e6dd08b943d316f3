"""`ctl restart nginx` with no refused connection: a bridge nginx holds the port while
supervisor's nginx restarts.

A stopped nginx closes its listening socket, and until the new one binds, connections
are refused; clients whose connections the stop cut (every WebSocket, every parked
long-poll) retry at once and land in that gap (measured under load: 30 ms with a fast
stop, yet 2 % of requests failed). nginx listens with `reuseport`, so a second nginx on
the same config can bind the same port: ctl starts one (its own pid file), restarts
supervisor's nginx while the bridge takes the new connections, then stops the bridge
gracefully and, after a moment, cuts what it still holds; those clients reconnect to
supervisor's nginx, which is listening by then.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator

from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import process_alive, wait_until
from service.ops.render import executable

BRIDGE_START_TIMEOUT_S = 10.0
# the bridge stops taking connections at once, then lets short requests finish this long
# before it cuts what is left (WebSockets and long-polls, which never end by themselves)
BRIDGE_GRACE_S = 1.0


def _bridge_config(layout: Layout) -> str:
    text = layout.nginx_conf.read_text()
    own_pid = f"pid {layout.var_dir}/nginx/nginx.pid;"
    if own_pid not in text or " reuseport" not in text:
        raise OpsError(f"{layout.nginx_conf} has no `{own_pid}` line or no `reuseport` on its "
                       "listen (edited by hand?): cannot bridge the restart")
    return text.replace(own_pid, f"pid {layout.var_dir}/nginx/bridge.pid;")


@contextlib.contextmanager
def bridged(layout: Layout) -> Iterator[None]:
    """A second nginx on the same port for the duration of the block."""
    config = layout.var_dir / "nginx" / "bridge.conf"
    config.write_text(_bridge_config(layout))
    pid_file = layout.var_dir / "nginx" / "bridge.pid"
    pid_file.unlink(missing_ok=True)
    with open(layout.logs / "nginx-bridge.log", "ab") as log:
        bridge = subprocess.Popen([executable("nginx", "nginx"), "-p",
                                   str(layout.var_dir / "nginx"), "-c", str(config)],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        # the pid file is written once the listening socket is bound
        wait_until(pid_file.exists, BRIDGE_START_TIMEOUT_S, "the bridge nginx starting",
                   proc=bridge)
        yield
    finally:
        bridge.send_signal(signal.SIGQUIT)
        time.sleep(BRIDGE_GRACE_S)
        if process_alive(bridge.pid):
            bridge.terminate()
        try:
            bridge.wait(timeout=5)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait(timeout=5)
