"""The local cluster's layout, and its configs rendered into the var/ folder.

`python -m service up` renders `deploy/supervisord.conf.template` and
`nginx/local.conf.template` into var/, then runs supervisord on them. A rendered file the
user has edited by hand since (its hash no longer matches the one recorded at render
time) is kept, so experiments with the configs survive a restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import string
import sys
from pathlib import Path

from service import procs

ROOT = procs.ROOT
SUPERVISOR_TEMPLATE = ROOT / "deploy" / "supervisord.conf.template"
APP_PROGRAM_TEMPLATE = ROOT / "deploy" / "app-program.conf.template"
NGINX_TEMPLATE = ROOT / "nginx" / "local.conf.template"
MAX_INSTANCES = 32
# supervisor gives a draining instance this much more than BB_DRAIN_S before SIGKILL
STOP_MARGIN_S = 5


class DeployError(RuntimeError):
    """The cluster cannot be set up; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where every process of the local cluster listens, and where its files go."""
    instances: int = 3
    http_port: int = 8000
    first_app_port: int = 8001
    redis_port: int = 6390
    upstream_port: int = 9000
    upstream_latency_ms: int = 300
    drain_s: float = 10.0
    var_dir: Path = ROOT / "var"

    def __post_init__(self):
        if not 1 <= self.instances <= MAX_INSTANCES:
            raise DeployError(f"--instances must be between 1 and {MAX_INSTANCES}")
        ports = self.all_ports()
        if len(set(ports.values())) != len(ports):
            raise DeployError(f"the cluster's ports overlap: {ports}; choose other ports")
        bad = {name: port for name, port in ports.items() if not 1 <= port <= 65535}
        if bad:
            raise DeployError(f"ports out of range: {bad}")

    @property
    def apps(self) -> dict[str, int]:
        """Instance name -> port: app-1 on first_app_port, app-2 on the next, …"""
        return {f"app-{i + 1}": self.first_app_port + i for i in range(self.instances)}

    def all_ports(self) -> dict[str, int]:
        return {"nginx": self.http_port, "redis": self.redis_port,
                "upstream-sim": self.upstream_port, **self.apps}

    @property
    def supervisor_conf(self) -> Path:
        return self.var_dir / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.var_dir / "supervisor.sock"

    @property
    def nginx_conf(self) -> Path:
        return self.var_dir / "nginx" / "nginx.conf"

    @property
    def upstream_conf(self) -> Path:
        return self.var_dir / "nginx" / "upstream.conf"

    @property
    def layout_file(self) -> Path:
        return self.var_dir / "cluster.json"

    @property
    def logs(self) -> Path:
        return self.var_dir / "log"

    def save(self) -> None:
        data = {**dataclasses.asdict(self), "var_dir": str(self.var_dir)}
        self.layout_file.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, var_dir: Path) -> "Layout":
        """The layout of the cluster `up` started with this var/ folder."""
        path = var_dir / "cluster.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeployError(f"no cluster was started from {var_dir} (no {path.name}): "
                              "start one with `python -m service up`") from None
        return cls(**{**data, "var_dir": Path(data["var_dir"])})


def executable(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise DeployError(f"{name} not found: run `apt-get install {package}` (or `make deps`)")
    return path


def _shared_secret(path: Path) -> str:
    """A secret kept in var/, made once, so restarts keep sessions and admin links valid."""
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def upstream_block(layout: Layout, down: frozenset[str] = frozenset()) -> str:
    """nginx's upstream of every instance; those in `down` get no new requests."""
    lines = ["# written by `python -m service up` / `ctl`; rewritten on every restart-all",
             "upstream bb_app {", "    least_conn;"]
    for name, port in layout.apps.items():
        flag = " down" if name in down else ""
        # one failure takes an instance out for 3 s (passive health checking)
        lines.append(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=3s{flag};  # {name}")
    lines += ["    keepalive 32;",
              "    # below the 3 s a draining instance keeps idle connections open",
              "    keepalive_timeout 2s;", "}", ""]
    return "\n".join(lines)


def _fill(template: Path, **values) -> str:
    try:
        return string.Template(template.read_text()).substitute(values)
    except KeyError as exc:
        raise DeployError(f"{template}: unknown placeholder {exc}") from None


def render(layout: Layout) -> list[str]:
    """Write var/'s configs; returns notes for the user (e.g. hand-edited files kept)."""
    var = layout.var_dir
    for folder in (var, layout.logs, var / "redis", var / "nginx" / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    stopwait_s = int(layout.drain_s) + STOP_MARGIN_S
    common = dict(var_dir=var, repo=ROOT, python=sys.executable, redis_port=layout.redis_port,
                  upstream_port=layout.upstream_port)
    apps = "".join(
        _fill(APP_PROGRAM_TEMPLATE, name=name, port=port, drain_s=layout.drain_s,
              stopwait_s=stopwait_s, cookie_secret=_shared_secret(var / "cookie_secret"),
              admin_token=_shared_secret(var / "admin_token"), **common)
        for name, port in layout.apps.items())
    supervisor = _fill(
        SUPERVISOR_TEMPLATE, app_programs=apps, shutdown_timeout_s=stopwait_s * 2,
        redis_server=procs.redis_server_path(), upstream_latency_ms=layout.upstream_latency_ms,
        nginx=executable("nginx", "nginx"), **common)
    nginx = _fill(NGINX_TEMPLATE, http_port=layout.http_port, **common,
                  # nginx started as root would hand its workers to `nobody`, who may not
                  # read the checkout; a local demo's workers run as whoever started it
                  user_directive="user root;" if os.geteuid() == 0 else "")
    notes = [_write_unless_edited(layout.supervisor_conf, supervisor, var),
             _write_unless_edited(layout.nginx_conf, nginx, var)]
    layout.upstream_conf.write_text(upstream_block(layout))
    layout.save()
    return [note for note in notes if note]


def _write_unless_edited(path: Path, text: str, var: Path) -> str | None:
    hashes_file = var / "rendered.json"
    hashes = json.loads(hashes_file.read_text()) if hashes_file.exists() else {}
    key = str(path.relative_to(var))
    if path.exists():
        current = hashlib.sha256(path.read_bytes()).hexdigest()
        if hashes.get(key) not in (None, current):
            return f"kept {path} (edited by hand; delete it to get a fresh one)"
    path.write_text(text)
    hashes[key] = hashlib.sha256(text.encode()).hexdigest()
    hashes_file.write_text(json.dumps(hashes, indent=2) + "\n")
    return None
