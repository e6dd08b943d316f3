"""The local cluster's configs, rendered into the var/ folder.

`python -m service up` renders `deploy/supervisord.conf.template` and
`nginx/local.conf.template` into var/, then runs supervisord on them. A rendered file the
user has edited by hand since (its hash no longer matches the one recorded at render
time) is kept, so experiments with the configs survive a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import sys
from pathlib import Path
from typing import Any

from service.ops import edge
from service.ops.errors import OpsError
from service.ops.files import write_whole
from service.ops.layout import Layout
from service.ops.procs import redis_server_path
from service.ops.redis_cluster import cluster_programs
from service.ops.redis_ha import redis_programs, redis_settings
from service.ops.secrets import ensure_secrets
from service.paths import DEPLOY, NGINX, ROOT

SUPERVISOR_TEMPLATE = DEPLOY / "supervisord.conf.template"
APP_PROGRAM_TEMPLATE = DEPLOY / "app-program.conf.template"
REDIS_PROGRAM_TEMPLATE = DEPLOY / "redis-program.conf.template"
NGINX_TEMPLATE = NGINX / "local.conf.template"
# supervisor gives a draining instance this much more than BB_DRAIN_S before SIGKILL
STOP_MARGIN_S = 5
# stopwaitsecs of redis, the simulator (supervisor's default) and nginx in the template
OTHER_PROGRAMS_STOP_S = 10 + 10 + 10


def app_stop_wait_s(layout: Layout) -> int:
    """supervisord's stopwaitsecs for an instance: its drain, and a margin."""
    return int(layout.drain_s) + STOP_MARGIN_S


def supervisord_stop_s(layout: Layout) -> int:
    """The longest supervisord can take to stop every program before it SIGKILLs them.

    supervisord stops programs by priority, one group after the other (the instances
    together), each within its stopwaitsecs; `up` waits this long (and a margin) before
    it kills supervisord itself. supervisord 4 has no overall shutdown timeout."""
    return app_stop_wait_s(layout) + OTHER_PROGRAMS_STOP_S


def executable(name: str, package: str) -> str:
    sbin = f"/usr/sbin/{name}"  # not on a non-root user's PATH on Debian
    path = shutil.which(name) or (sbin if os.path.exists(sbin) else None)
    if path is None:
        raise OpsError(f"{name} not found: run `apt-get install {package}` (or `make deps`)")
    return path


def upstream_block(layout: Layout, down: frozenset[str] = frozenset()) -> str:
    """nginx's upstream of every instance; those in `down` get no new requests."""
    lines = ["# written by `python -m service up`, `ctl` and the health watcher "
             "(service/ops/upstream.py)",
             "upstream bb_app {",
             "    # shared memory: every worker sees the same least_conn counts and failures",
             "    zone bb_app 64k;",
             "    least_conn;"]
    for name, port in layout.apps.items():
        flag = " down" if name in down else ""
        # one failure takes an instance out for 3 s (passive health checking)
        lines.append(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=3s{flag};  # {name}")
    lines += ["    keepalive 32;",
              "    # below the 3 s an instance keeps an idle connection open "
              "(service/instance/server.py)",
              "    keepalive_timeout 2s;", "}", ""]
    return "\n".join(lines)


def catalog_env(layout: Layout) -> str:
    """The `,BB_CATALOG="…"` that ends an instance's environment=, or "" for the built-in
    catalog (the app's default, as without `--books`/`--catalog`)."""
    if layout.catalog is None:
        return ""
    path = str(layout.catalog)
    # supervisord splits environment= with shlex and expands %(name)s in it
    if any(char in path for char in '"\'\n\\'):
        raise OpsError(f"the catalog path {path!r} has a quote, backslash or newline, which "
                       "supervisord's environment= cannot carry: move or rename the file")
    return f',BB_CATALOG="{path.replace("%", "%%")}"'


def _fill(template: Path, **values: Any) -> str:
    try:
        return string.Template(template.read_text()).substitute(values)
    except KeyError as exc:
        raise OpsError(f"{template}: unknown placeholder {exc}") from None


def render(layout: Layout) -> list[str]:
    """Write var/'s configs; returns notes for the user (e.g. hand-edited files kept)."""
    var = layout.var_dir
    # read from the environment of each `up`, like the instances' settings (checked
    # before anything is written)
    limit_exempt = edge.geo_entries(edge.limit_exempt_networks(os.environ))
    for folder in (var, layout.logs, var / "redis", var / "nginx" / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    nginx = _fill(NGINX_TEMPLATE, http_port=layout.http_port, **_common(layout),
                  # never root: a worker is what the internet talks to
                  user_directive=edge.user_directive(edge.worker_user()))
    notes = [_write_unless_edited(layout.supervisor_conf, supervisor_config(layout), var),
             _write_unless_edited(layout.nginx_conf, nginx, var)]
    write_whole(layout.upstream_conf, upstream_block(layout))
    (var / "nginx" / "limit-exempt.conf").write_text(limit_exempt)
    layout.save()
    return [note for note in notes if note]


def rewrite_supervisor_conf(layout: Layout, dry_run: bool = False) -> None:
    """Write supervisord's config for `layout` (another number of instances); refuses a
    file edited by hand, which `up` keeps but this must replace."""
    if dry_run:
        if _edited(layout.supervisor_conf, layout.var_dir):
            raise OpsError(f"{layout.supervisor_conf} was edited by hand and must be rewritten "
                           "to change the instances: delete it (and restart `up`), or edit "
                           "its [program:app-N] sections yourself")
        return
    note = _write_unless_edited(layout.supervisor_conf, supervisor_config(layout),
                                layout.var_dir)
    if note:
        raise OpsError(note)


def _common(layout: Layout) -> dict[str, Any]:
    return dict(var_dir=layout.var_dir, repo=ROOT, python=sys.executable,
                redis_port=layout.redis_port, upstream_port=layout.upstream_port)


def supervisor_config(layout: Layout) -> str:
    """supervisord.conf: redis, the simulator, every instance, nginx."""
    # kept in var/ (made once), so restarts keep sessions and admin sign-ins valid; the
    # instances read them from there (BB_*_FILE) and Redis includes its password
    ensure_secrets(layout.var_dir, {}, say=lambda _: None)
    common = _common(layout)
    stopwait_s = app_stop_wait_s(layout)
    redis_env = ",".join(f'{name}="{value}"' for name, value in redis_settings(layout).items())
    apps = "".join(
        _fill(APP_PROGRAM_TEMPLATE, name=name, port=port, drain_s=layout.drain_s,
              stopwait_s=stopwait_s, catalog_env=catalog_env(layout), redis_env=redis_env,
              **common)
        for name, port in layout.apps.items())
    programs = cluster_programs if layout.redis_shards else redis_programs
    redis = programs(layout, lambda **values: _fill(REDIS_PROGRAM_TEMPLATE, **values, **common),
                     redis_server_path())
    return _fill(SUPERVISOR_TEMPLATE, app_programs=apps, redis_programs=redis,
                 upstream_latency_ms=layout.upstream_latency_ms,
                 nginx=executable("nginx", "nginx"), **common)


def _edited(path: Path, var: Path) -> bool:
    """Whether a rendered file was changed by hand since it was written."""
    hashes_file = var / "rendered.json"
    hashes = json.loads(hashes_file.read_text()) if hashes_file.exists() else {}
    if not path.exists():
        return False
    current = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes.get(str(path.relative_to(var))) not in (None, current)


def _write_unless_edited(path: Path, text: str, var: Path) -> str | None:
    hashes_file = var / "rendered.json"
    hashes = json.loads(hashes_file.read_text()) if hashes_file.exists() else {}
    key = str(path.relative_to(var))
    if _edited(path, var):
        return f"kept {path} (edited by hand; delete it to get a fresh one)"
    path.write_text(text)
    hashes[key] = hashlib.sha256(text.encode()).hexdigest()
    hashes_file.write_text(json.dumps(hashes, indent=2) + "\n")
    return None
