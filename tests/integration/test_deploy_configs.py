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
from service.ops import layout as deploy_layout
from service.ops import render as deploy_render
from service.ops.errors import OpsError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


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


def test_the_rendered_local_nginx_config_passes_nginx_t(tmp_path):
    layout = deploy_layout.Layout(var_dir=tmp_path / "var", http_port=18000, first_app_port=18001,
                           redis_port=16390, upstream_port=19000)
    deploy_render.render(layout)
    result = nginx_test(layout.nginx_conf, prefix=layout.var_dir / "nginx")
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    upstream = layout.upstream_conf.read_text()
    assert upstream.count("server 127.0.0.1:") == 3 and "least_conn" in upstream


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare(1) for a private /etc/hosts")
def test_the_compose_nginx_config_passes_nginx_t(tmp_path):
    # compose.conf includes its neighbours by relative path, as in the container
    conf_dir = tmp_path / "bb"
    shutil.copytree(ROOT / "nginx", conf_dir)
    result = nginx_test(conf_dir / "compose.conf", prefix=tmp_path,
                        hosts="127.0.0.1 localhost\n127.0.0.1 app\n")
    assert result.returncode == 0, result.stderr


def test_nginx_configs_do_what_the_proxy_must():
    http = (ROOT / "nginx" / "http.conf").read_text()
    locations = (ROOT / "nginx" / "locations.conf").read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*''\s*'';", http)
    read_timeout_s = int(re.search(r"proxy_read_timeout (\d+)s;", http).group(1))
    assert read_timeout_s > Config().longpoll_timeout_s
    assert "non_idempotent" not in re.search(r"proxy_next_upstream ([^;]*);", http).group(1)
    assert "X-Real-IP $remote_addr" in http and "X-Forwarded-For $proxy_add_x_forwarded_for" in http
    status_block = re.search(r"location = /cart/status \{([^}]*)\}", locations).group(1)
    assert "proxy_buffering off" in status_block
    assert re.search(r"location /static/ \{[^}]*try_files", locations)
    for conf in ("compose.conf", "local.conf.template"):
        text = (ROOT / "nginx" / conf).read_text()
        assert "include" in text and ("http.conf" in text) and ("locations.conf" in text)
    assert "least_conn" in (ROOT / "nginx" / "compose.conf").read_text()
    assert "max_fails=" in (ROOT / "nginx" / "compose.conf").read_text()


def test_compose_has_every_service_with_health_checks_and_startup_order():
    services = COMPOSE["services"]
    assert set(services) == {"redis", "upstream-sim", "app", "nginx"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["app"]["deploy"]["replicas"] == 3
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["upstream-sim"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert services["nginx"]["ports"] == ["8000:8000"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "redis-data" in COMPOSE["volumes"]


def test_compose_grace_period_is_above_the_drain_time():
    app = COMPOSE["services"]["app"]
    grace_s = int(app["stop_grace_period"].rstrip("s"))
    assert grace_s > float(app["environment"]["BB_DRAIN_S"])


def test_compose_environment_names_are_settings_the_app_reads():
    read_by_app = set(re.findall(r'"(BB_[A-Z_]+)"', (ROOT / "service" / "config.py").read_text()))
    for name, service in COMPOSE["services"].items():
        for variable in service.get("environment", {}) or {}:
            assert variable in read_by_app, f"{name}: {variable} is not a setting of service/config.py"


def test_the_dockerfile_runs_as_a_non_root_user_with_a_health_check():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
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
                  "--latency-ms"}
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
    edited = layout.nginx_conf.read_text().replace("worker_processes 1;", "worker_processes 2;")
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
