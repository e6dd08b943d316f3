"""The local cluster as a test fixture: service.ops.launch.LocalCluster (`python -m
service up` on free ports, stopped with SIGTERM), with what tests ask of it besides.

Shared by tests/integration and the browser tests in tests/e2e.
"""

from __future__ import annotations

import redis as redis_sync

from service.ops.launch import LocalCluster
from service.ops.probes import process_alive
from service.paths import ROOT
from service.web import sessions

__all__ = ["ROOT", "Deployment", "alive"]


class Deployment(LocalCluster):
    """A LocalCluster a test can reach into: its Redis, and sessions it signs itself."""

    def redis(self) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5,
                                password=self.redis_password_file.read_text().strip())

    def session(self) -> tuple[str, str]:
        """A session as the shop would issue it (the cluster's shared secret signs it)."""
        return sessions.new_token((self.var_dir / "cookie_secret").read_text().strip())


# whether a process runs (a zombie does not): the same check `up` makes
alive = process_alive
