"""The deployment's shared secrets, kept in one folder: the cookie secret, the admin token
and the Redis password, plus the Redis config line that asks for that password.

`python -m service secrets --dir DIR` is the compose deployment's first, one-shot service
(docker-compose.yml): a secret given in the environment (BB_COOKIE_SECRET, BB_ADMIN_TOKEN,
BB_REDIS_PASSWORD) is written there, one kept from an earlier start is reused, and a
missing one is generated, with a line saying so. Redis then `--include`s redis-auth.conf
and the instances read BB_*_FILE, so no secret appears on a command line or in
`docker inspect`. `up` keeps the local cluster's secrets the same way, in var/.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from service.ops.errors import OpsError
from service.ops.files import write_whole

REDIS_AUTH_CONF = "redis-auth.conf"


@dataclass(frozen=True)
class Secret:
    file: str     # its file in the folder
    setting: str  # the variable that gives it (the instances read <setting>_FILE)
    what: str     # for a person


SECRETS = (
    Secret("cookie_secret", "BB_COOKIE_SECRET", "the cookie secret"),
    Secret("admin_token", "BB_ADMIN_TOKEN", "the admin token"),
    Secret("redis_password", "BB_REDIS_PASSWORD", "the Redis password"),
)
# what a given secret may hold: at least 16 characters (as the instances require), and
# nothing that would need quoting in redis.conf or a shell
ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+=~")


def check_given(env: Mapping[str, str]) -> dict[Secret, str]:
    """The secrets the environment gives, every one checked before anything is written."""
    given = {}
    for secret in SECRETS:
        value = env.get(secret.setting, "")
        if not value:
            continue
        if len(value) < 16 or not set(value) <= ALLOWED:
            raise OpsError(f"{secret.setting}: use at least 16 characters of A-Z a-z 0-9 "
                           f"- _ . + = ~ (e.g. `python3 -c 'import secrets; "
                           f"print(secrets.token_hex(32))'`), or leave it unset to have one "
                           f"generated")
        given[secret] = value
    return given


def ensure_secrets(folder: Path, env: Mapping[str, str], say: Callable[[str], None] = print,
                   mode: int = 0o600) -> dict[str, Path]:
    """Write every secret into `folder` (given > kept > generated), as files of `mode`;
    returns {setting: file}. Compose's Redis and instances run as other users than the
    one-shot service that writes them, so there the mode is 0o644: the volume is mounted
    by the deployment's own containers only."""
    given = check_given(env)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for secret in SECRETS:
        path = folder / secret.file
        if secret in given:
            value = given[secret]
            if not path.exists() or path.read_text().strip() != value:
                say(f"{secret.what}: taken from {secret.setting}")
        elif path.exists() and path.read_text().strip():
            value = path.read_text().strip()
        else:
            value = secrets.token_hex(32)
            say(f"{secret.what}: none given ({secret.setting}), so one was generated and "
                f"kept in {path}; set {secret.setting} to choose your own")
        write_whole(path, value, mode)
        files[secret.setting] = path
    write_whole(folder / REDIS_AUTH_CONF,
           "# written by `python -m service secrets`: Redis asks every client for this,\n"
           "# and a replica gives it to its primary (Sentinel mode)\n"
           f"requirepass {(folder / 'redis_password').read_text().strip()}\n"
           f"masterauth {(folder / 'redis_password').read_text().strip()}\n", mode)
    return files


def without_secret_settings(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the secrets' settings (and their _FILE forms): the local cluster's
    processes get theirs from var/, and an instance given both forms refuses to start."""
    names = {secret.setting for secret in SECRETS}
    return {name: value for name, value in env.items()
            if name.removesuffix("_FILE") not in names}
