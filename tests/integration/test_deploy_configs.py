"""The shipped deployment configs: every nginx config passes `nginx -t`, and
docker-compose.yml has the structure the README promises and starts the same processes
as `make demo` (no Docker engine runs here, so the file is checked, not run)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service import paths
from service.config import Config
from service.instance.server import IDLE_CONNECTION_TIMEOUT_S
from service.ops import edge
from service.ops import layout as deploy_layout
from service.ops import render as deploy_render
from service.ops.errors import OpsError
from service.web.limits import MAX_HEADER_BYTES
from service.web.sockets import KEEPALIVE_INTERVAL_S

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# where the compose nginx's entrypoint writes BB_LIMIT_EXEMPT (nginx/limit-exempt.sh)
COMPOSE_EXEMPT_FILE = "/etc/nginx/conf.d/bb-limit-exempt.conf"
COMPOSE_SERVERS_FILE = "/etc/nginx/conf.d/bb-upstream-servers.conf"


def nginx_test(conf: Path, *, prefix: Path, hosts: str | None = None) -> subprocess.CompletedProcess:
    command = [NGINX, "-t", "-p", str(prefix), "-c", str(conf)]
    if hosts is not None:
        # compose's hostnames (app) resolve only inside Docker: give nginx a private
        # /etc/hosts in its own mount namespace for the check
        hosts_file = prefix / "hosts"
        hosts_file.write_text(hosts)
        command = ["unshare", "--mount", "sh", "-c",
                   f"mount --bind {shlex.quote(str(hosts_file))} /etc/hosts && exec {shlex.join(command)}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_the_rendered_local_nginx_config_passes_nginx_t(tmp_path, monkeypatch):
    monkeypatch.setenv("BB_LIMIT_EXEMPT", " 127.0.0.1/8, 10.1.2.3,fd00::/8 ")
    layout = deploy_layout.Layout(var_dir=tmp_path / "var", http_port=18000, first_app_port=18001,
                           redis_port=16390, upstream_port=19000)
    deploy_render.render(layout)
    result = nginx_test(layout.nginx_conf, prefix=layout.var_dir / "nginx")
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    upstream = layout.upstream_conf.read_text()
    assert upstream.count("server 127.0.0.1:") == 3 and "least_conn" in upstream
    # one zone per upstream: every worker shares least_conn counts and failures
    assert re.search(r"^\s*zone bb_app \d+k;", upstream, re.M)
    exempt = (layout.var_dir / "nginx" / "limit-exempt.conf").read_text()
    assert re.findall(r"^(\S+) 1;$", exempt, re.M) == ["127.0.0.0/8", "10.1.2.3/32", "fd00::/8"]
    conf = layout.nginx_conf.read_text()
    user = re.search(r"^user (\S+) (\S+);", conf, re.M)
    if os.geteuid() == 0:  # nginx's workers are never root
        assert user and user.group(1) in edge.WORKER_USERS, conf
    else:
        assert user is None


def test_without_bb_limit_exempt_no_address_is_exempt(tmp_path, monkeypatch):
    monkeypatch.delenv("BB_LIMIT_EXEMPT", raising=False)
    layout = deploy_layout.Layout(var_dir=tmp_path / "var")
    deploy_render.render(layout)
    exempt = (layout.var_dir / "nginx" / "limit-exempt.conf").read_text()
    assert not re.findall(r"^[^#].*", exempt, re.M)


@pytest.mark.parametrize("value", ["127.0.0.1 10.0.0.0/8", "localhost", "10.0.0.0/33",
                                   "1.2.3.4; }"])
def test_a_bad_bb_limit_exempt_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                      value):
    monkeypatch.setenv("BB_LIMIT_EXEMPT", value)
    layout = deploy_layout.Layout(var_dir=tmp_path / "var")
    with pytest.raises(OpsError, match=r"BB_LIMIT_EXEMPT: .* is not an address or a network"):
        deploy_render.render(layout)
    assert not layout.var_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can try another user's access")
def test_up_warns_when_nginx_workers_cannot_read_the_static_files(tmp_path, monkeypatch):
    user = edge.worker_user()
    assert edge.static_warning(user) is None  # the checkout's static/ is readable here
    private = tmp_path / "private" / "static"
    private.mkdir(parents=True)
    (private / "shop.js").write_text("")
    (tmp_path / "private").chmod(0o700)
    monkeypatch.setattr(edge, "STATIC_PROBE", private / "shop.js")
    assert f"run as {user.pw_name}, who cannot read" in edge.static_warning(user)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare(1) for a private /etc/hosts")
def test_the_compose_nginx_config_passes_nginx_t(tmp_path):
    # compose.conf includes its neighbours by relative path, as in the container
    conf_dir = tmp_path / "bb"
    shutil.copytree(ROOT / "nginx", conf_dir)
    # the container's entrypoint writes BB_LIMIT_EXEMPT where compose.conf includes it;
    # here, into the copy
    exempt = tmp_path / "bb-limit-exempt.conf"
    rendered = subprocess.run(
        ["sh", str(conf_dir / "limit-exempt.sh"), "cat", str(exempt)], capture_output=True,
        text=True, timeout=10, env={"BB_LIMIT_EXEMPT": "172.28.0.1/32, 10.0.0.0/8",
                                    "BB_LIMIT_EXEMPT_FILE": str(exempt)})
    assert rendered.returncode == 0 and rendered.stdout == "172.28.0.1/32 1;\n10.0.0.0/8 1;\n"
    compose = (conf_dir / "compose.conf").read_text()
    assert compose.count(COMPOSE_EXEMPT_FILE) == 1
    # and the replicas' addresses, which the entrypoint keeps current
    servers = tmp_path / "bb-upstream-servers.conf"
    servers.write_text("server 127.0.0.1:8000 max_fails=1 fail_timeout=3s;\n")
    compose = compose.replace(COMPOSE_EXEMPT_FILE, str(exempt))
    compose = compose.replace(COMPOSE_SERVERS_FILE, str(servers))
    (conf_dir / "compose.conf").write_text(compose)
    result = nginx_test(conf_dir / "compose.conf", prefix=tmp_path,
                        hosts="127.0.0.1 localhost\n127.0.0.1 app\n")
    assert result.returncode == 0, result.stderr


def test_the_compose_exempt_list_refuses_what_is_not_a_network(tmp_path):
    rendered = subprocess.run(
        ["sh", str(ROOT / "nginx" / "limit-exempt.sh"), "true"], capture_output=True, text=True,
        timeout=10, env={"BB_LIMIT_EXEMPT": "10.0.0.0/8,1.2.3.4;}",
                         "BB_LIMIT_EXEMPT_FILE": str(tmp_path / "exempt.conf")})
    assert rendered.returncode == 2 and "'1.2.3.4;}' is not an address" in rendered.stderr


def test_nginx_configs_do_what_the_proxy_must():
    http = (ROOT / "nginx" / "http.conf").read_text()
    locations = (ROOT / "nginx" / "locations.conf").read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*''\s*'';", http)
    read_timeout_s = int(re.search(r"proxy_read_timeout (\d+)s;", http).group(1))
    assert read_timeout_s > Config().longpoll_timeout_s
    retried = re.search(r"proxy_next_upstream ([^;]*);", http).group(1)
    # a POST is never sent twice; the shop's own 503 (Redis out of reach) marks no instance
    assert "non_idempotent" not in retried and "http_503" not in retried
    assert "X-Real-IP $remote_addr" in http and "X-Forwarded-For $proxy_add_x_forwarded_for" in http
    status_block = re.search(r"location = /cart/status \{([^}]*)\}", locations).group(1)
    assert "proxy_buffering off" in status_block
    assert re.search(r"location /static/ \{[^}]*try_files", locations)
    for conf in ("compose.conf", "local.conf.template"):
        text = (ROOT / "nginx" / conf).read_text()
        assert "include" in text and ("http.conf" in text) and ("locations.conf" in text)
    assert "least_conn" in (ROOT / "nginx" / "compose.conf").read_text()
    assert "max_fails=" in (ROOT / "nginx" / "compose.conf").read_text()


def test_nginx_main_and_events_settings_live_in_one_place():
    main = (ROOT / "nginx" / "main.conf").read_text()
    events = (ROOT / "nginx" / "events.conf").read_text()
    assert "worker_processes auto;" in main
    rlimit = int(re.search(r"^worker_rlimit_nofile (\d+);", main, re.M).group(1))
    connections = int(re.search(r"^worker_connections (\d+);", events, re.M).group(1))
    # the machine's 20,000 files a process; a worker's connections, and room to spare
    assert rlimit <= 20_000 and connections < rlimit
    # 10,000 WebSockets through nginx cost 20,000 connections over two workers
    assert 2 * connections >= 20_000
    for conf in ("compose.conf", "local.conf.template"):
        text = (ROOT / "nginx" / conf).read_text()
        assert re.search(r"^include \S*main\.conf;", text, re.M), conf
        assert re.search(r"events \{\s*include \S*events\.conf;\s*\}", text), conf
        for directive in ("worker_processes", "worker_connections", "worker_rlimit_nofile"):
            assert directive not in text, (conf, directive)
    compose = (ROOT / "nginx" / "compose.conf").read_text()
    assert re.search(r"upstream bb_app \{[^}]*zone bb_app \d+k;", compose)
    assert "user " not in compose  # the image's nginx runs its workers as `nginx`


def test_timeouts_agree_with_each_other():
    http = (ROOT / "nginx" / "http.conf").read_text()
    compose = (ROOT / "nginx" / "compose.conf").read_text()
    local_upstream = deploy_render.upstream_block(deploy_layout.Layout())
    for upstream in (compose, local_upstream):
        keepalive_s = float(re.search(r"keepalive_timeout (\d+)s;", upstream).group(1))
        # nginx drops an idle upstream connection before the instance does
        assert keepalive_s < IDLE_CONNECTION_TIMEOUT_S
    # the instances ping every socket well within nginx's read timeout: idle sockets live
    assert int(re.search(r"proxy_read_timeout (\d+)s;", http).group(1)) > KEEPALIVE_INTERVAL_S
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert 1 <= int(re.search(rf"^{directive} (\d+)s;", http, re.M).group(1)) <= 30
    # nginx never passes on more header than an instance accepts
    count, size_k = re.search(r"large_client_header_buffers (\d+) (\d+)k;", http).groups()
    assert int(count) * int(size_k) * 1024 + 1024 <= MAX_HEADER_BYTES
    # bodies never need a temp file (the workers' user may not write to var/)
    assert "proxy_max_temp_file_size 0;" in http
    max_body = re.search(r"client_max_body_size (\d+)k;", http).group(1)
    assert re.search(rf"client_body_buffer_size {max_body}k;", http)


def test_every_limited_location_keeps_what_it_did_and_answers_429_in_the_error_shape():
    http = (ROOT / "nginx" / "http.conf").read_text()
    locations = (ROOT / "nginx" / "locations.conf").read_text()
    assert "limit_req_status 429;" in http and "limit_conn_status 429;" in http
    blocks = dict(re.findall(r"location (= \S+|\S+|@\w+) \{([^}]*)\}", locations))
    for path in ("= /cart", "= /", "= /books", "/books/", "= /rate", "= /api/rate",
                 "= /admin/login", "= /cart/status"):
        assert "proxy_pass http://bb_app;" in blocks[path], path
        assert re.search(r"limit_(req|conn) ", blocks[path]), path
        assert re.search(r"error_page 429 (@limited_\w+|\$bb_limited_answer);", blocks[path])
    assert "proxy_buffering off" in blocks["= /cart/status"]
    for named in ("@limited_json", "@limited_page"):
        assert "add_header Retry-After $bb_retry_after_s always;" in blocks[named]
        assert "return 429 " in blocks[named]
    assert """return 429 '{"error": "rate_limited", "message": "$bb_limited_message"}';""" \
        in locations


def test_compose_has_every_service_with_health_checks_and_startup_order():
    services = COMPOSE["services"]
    assert set(services) == {"secrets", "redis", "upstream-sim", "app", "nginx"}
    for name, service in services.items():
        if name != "secrets":  # a one-shot service: it exits once the secrets are written
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["redis"]["depends_on"]["secrets"]["condition"] == \
        "service_completed_successfully"
    assert services["app"]["deploy"]["replicas"] == 3
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["upstream-sim"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert services["nginx"]["ports"] == ["${BB_HTTP_ADDRESS:-0.0.0.0}:${BB_HTTP_PORT:-8000}:8000"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "redis-data" in COMPOSE["volumes"]


def test_compose_grace_period_is_above_the_drain_time():
    app = COMPOSE["services"]["app"]
    grace_s = int(app["stop_grace_period"].rstrip("s"))
    assert grace_s > float(app["environment"]["BB_DRAIN_S"])


def test_compose_environment_names_are_settings_the_app_reads():
    read_by_app = set(re.findall(r'"(BB_[A-Z_]+)"', (ROOT / "service" / "config.py").read_text()))
    for name, service in COMPOSE["services"].items():
        if name == "nginx":
            continue
        for variable in service.get("environment", {}) or {}:
            # BB_X_FILE: the secret BB_X read from a file (config.secret_setting)
            variable = variable.removesuffix("_FILE")
            assert variable in read_by_app, f"{name}: {variable} is not a setting of service/config.py"


def test_compose_nginx_renders_bb_limit_exempt_at_start():
    nginx = COMPOSE["services"]["nginx"]
    script = (ROOT / "nginx" / "limit-exempt.sh").read_text()
    assert nginx["entrypoint"] == ["/bin/sh", "/etc/nginx/bb/compose-entrypoint.sh"]
    assert "sh /etc/nginx/bb/limit-exempt.sh" in (ROOT / "nginx" / "compose-entrypoint.sh").read_text()
    assert set(nginx["environment"]) == {"BB_LIMIT_EXEMPT"}
    assert "${BB_LIMIT_EXEMPT:-}" in script and 'exec "$@"' in script
    assert COMPOSE_EXEMPT_FILE in script


def test_the_dockerfile_runs_as_a_non_root_user_with_a_health_check():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    # the official image by default; a build argument so a test can stand one in
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", dockerfile, re.M)
    user = re.search(r"^USER (\S+)", dockerfile, re.M).group(1)
    assert user not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*readyz", dockerfile, re.M | re.S)


def _program_commands(conf: str) -> dict[str, list[str]]:
    commands, program = {}, None
    for line in conf.splitlines():
        header = re.match(r"\[program:(.+)\]", line)
        if header:
            program = header.group(1)
        elif program and line.startswith("command="):
            commands[program] = shlex.split(line[len("command="):])
    return commands


def _essence(argv: list[str]) -> list[str]:
    """The command without paths, ports and addresses: what is run, not where."""
    words = [Path(argv[0]).name.replace("python3", "python")]
    skip_value = {"--port", "--host", "--dir", "--bind", "--protected-mode", "-p", "-g",
                  "--latency-ms", "--include"}
    rest = iter(argv[1:])
    for word in rest:
        if word in skip_value:
            next(rest, None)
        elif word == "-c":
            words.append("-c")
            next(rest, None)
        elif not word.endswith(".conf"):
            words.append(word)
    return words


def test_compose_starts_the_same_commands_as_make_demo(tmp_path):
    layout = deploy_layout.Layout(var_dir=tmp_path / "var")
    deploy_render.render(layout)
    demo = _program_commands(layout.supervisor_conf.read_text())
    compose = {name: service["command"] for name, service in COMPOSE["services"].items()}
    assert _essence(compose["app"]) == _essence(demo["app-1"]) == \
        ["python", "-m", "service", "serve"]
    assert _essence(compose["upstream-sim"]) == _essence(demo["upstream-sim"])
    assert _essence(compose["redis"]) == _essence(demo["redis"]) == ["redis-server"]
    assert _essence(compose["nginx"]) == _essence(demo["nginx"]) == ["nginx", "-c"]
    # and both redis-servers read the same config file
    assert any(arg.endswith("redis.conf") for arg in compose["redis"])
    assert str(paths.ROOT / "deploy" / "redis.conf") in demo["redis"]


def test_up_keeps_a_config_edited_by_hand_and_renews_the_others(tmp_path):
    layout = deploy_layout.Layout(var_dir=tmp_path / "var")
    assert deploy_render.render(layout) == []
    edited = layout.nginx_conf.read_text().replace("log warn;", "log info;")
    layout.nginx_conf.write_text(edited)
    layout.supervisor_conf.unlink()
    notes = deploy_render.render(deploy_layout.Layout(var_dir=tmp_path / "var", instances=2))
    assert notes == [f"kept {layout.nginx_conf} (edited by hand; delete it to get a fresh one)"]
    assert layout.nginx_conf.read_text() == edited
    assert "[program:app-2]" in layout.supervisor_conf.read_text()
    assert "[program:app-3]" not in layout.supervisor_conf.read_text()


def _app_environments(conf: Path) -> dict[str, dict[str, str]]:
    """Each program's environment as supervisord itself parses the rendered config."""
    from supervisor.options import ServerOptions
    options = ServerOptions()
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    return {process.name: dict(process.environment or {})
            for group in options.process_group_configs for process in group.process_configs}


def test_a_catalog_reaches_every_instance_as_bb_catalog(tmp_path):
    from service.inventory.catalog import Catalog
    from service.inventory.demo_catalog import write_catalog
    # a space and a %: supervisord splits environment= and expands %(name)s in it
    catalog = tmp_path / "shop 100% scale" / "catalog.json"
    catalog.parent.mkdir()
    write_catalog(catalog, books=2000)
    layout = deploy_layout.Layout(var_dir=tmp_path / "var", instances=4, catalog=catalog)
    deploy_render.render(layout)
    environments = _app_environments(layout.supervisor_conf)
    apps = {name: env for name, env in environments.items() if name.startswith("app-")}
    assert sorted(apps) == ["app-1", "app-2", "app-3", "app-4"]
    assert all(env["BB_CATALOG"] == str(catalog) for env in apps.values())
    assert all("BB_CATALOG" not in env for name, env in environments.items() if name not in apps)
    assert len(Catalog.load(Path(apps["app-1"]["BB_CATALOG"])).books) == 2000
    # `ctl` reloads the layout and with it the catalog
    assert deploy_layout.Layout.load(layout.var_dir).catalog == catalog


def test_without_a_catalog_the_instances_get_no_bb_catalog(tmp_path):
    layout = deploy_layout.Layout(var_dir=tmp_path / "var")
    deploy_render.render(layout)
    assert "BB_CATALOG" not in layout.supervisor_conf.read_text()
    environments = _app_environments(layout.supervisor_conf)
    assert all("BB_CATALOG" not in env for env in environments.values())
    assert deploy_layout.Layout.load(layout.var_dir).catalog is None


def test_a_cluster_json_from_before_catalogs_still_loads(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "cluster.json").write_text(json.dumps({
        "instances": 2, "http_port": 8000, "first_app_port": 8001, "redis_port": 6390,
        "upstream_port": 9000, "upstream_latency_ms": 300, "drain_s": 10.0,
        "var_dir": str(var)}))
    layout = deploy_layout.Layout.load(var)
    assert layout.instances == 2 and layout.catalog is None


def test_a_catalog_path_supervisord_cannot_carry_is_refused(tmp_path):
    layout = deploy_layout.Layout(var_dir=tmp_path / "var",
                                  catalog=tmp_path / 'say "cheese".json')
    with pytest.raises(OpsError, match="move or rename the file"):
        deploy_render.render(layout)
