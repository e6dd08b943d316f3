"""Base images for the compose test where no registry answers: stand-ins built from a
local Debian root file system (mmdebstrap with this machine's apt sources, then `docker
import`) and tagged with the official names, so docker-compose.yml and deploy/Dockerfile
are used unchanged. tests/compose/standins/ says what each copies of the official image.
The root file system is cached in the user's cache folder for a week.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from support.docker_engine import CACHE, Engine, say

STANDINS = Path(__file__).resolve().parent.parent / "compose" / "standins"
OFFICIAL = {"python:3.11-slim": "python.Dockerfile", "redis:7": "redis.Dockerfile",
            "nginx:1.27": "nginx.Dockerfile"}
BASE = "bb-standin-base:bookworm"
PACKAGES = "python3,python3-venv,ca-certificates,redis-server,nginx-light,curl"
ROOTFS = CACHE / "standin-rootfs.tar"
ROOTFS_MAX_AGE_S = 7 * 24 * 3600
# the certificate authorities this machine trusts beyond Debian's: the app image's pip
# needs them where HTTPS goes through an inspecting proxy (only ever in a stand-in)
LOCAL_CAS = Path("/usr/local/share/ca-certificates")


def ensure_base_images(engine: Engine) -> list[str]:
    """Every base image the project names, pulled or else stood in; returns the stand-ins."""
    missing = [name for name in OFFICIAL
               if engine.docker("image", "inspect", name, check=False).returncode != 0]
    pulled = []
    for name in missing:
        say(f"pulling {name}…")
        if engine.docker("pull", "-q", name, check=False, timeout_s=120).returncode == 0:
            pulled.append(name)
        else:
            say(f"{name}: no registry answers; building a stand-in")
            break  # one failed pull says enough: no registry
    stand_ins = [name for name in missing if name not in pulled]
    if not stand_ins:
        return []
    if engine.docker("image", "inspect", BASE, check=False).returncode != 0:
        started = time.monotonic()
        engine.docker("import", str(_rootfs()), BASE, timeout_s=300)
        say(f"imported {BASE} in {time.monotonic() - started:.1f}s")
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(STANDINS, context, dirs_exist_ok=True)
        cas = Path(context) / "ca"
        cas.mkdir()
        for certificate in LOCAL_CAS.glob("*.crt"):
            shutil.copy(certificate, cas)
        for name in stand_ins:
            engine.docker("build", "-q", "-t", name, "-f", str(Path(context) / OFFICIAL[name]), context,
                          timeout_s=300)
            say(f"stand-in {name} built")
    return stand_ins


def _rootfs() -> Path:
    fresh = ROOTFS.exists() and time.time() - ROOTFS.stat().st_mtime < ROOTFS_MAX_AGE_S
    if fresh:
        return ROOTFS
    if shutil.which("mmdebstrap") is None:
        raise AssertionError("no registry answers and mmdebstrap is not installed, so no base "
                             "image can be made: run `apt-get install mmdebstrap`")
    say(f"building a Debian root file system with mmdebstrap ({PACKAGES}); about a minute")
    ROOTFS.parent.mkdir(parents=True, exist_ok=True)
    partial = ROOTFS.with_suffix(".partial.tar")
    started = time.monotonic()
    done = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={PACKAGES}",
                           "bookworm", str(partial)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise AssertionError(f"mmdebstrap failed:\n{done.stderr[-3000:]}")
    partial.replace(ROOTFS)
    say(f"root file system ready in {time.monotonic() - started:.1f}s")
    return ROOTFS
