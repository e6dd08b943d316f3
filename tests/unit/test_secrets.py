"""The deployment's secrets folder (`python -m service secrets`, compose's first service):
given > kept > generated, every given value checked before anything is written."""

import stat

import pytest

from service.ops.errors import OpsError
from service.ops.secrets import REDIS_AUTH_CONF, ensure_secrets

GIVEN = {"BB_COOKIE_SECRET": "c" * 32, "BB_ADMIN_TOKEN": "t" * 20, "BB_REDIS_PASSWORD": "p" * 24}


def test_missing_secrets_are_generated_once_and_kept(tmp_path):
    said: list[str] = []
    files = ensure_secrets(tmp_path, {}, said.append)
    assert len(said) == 3 and all("generated" in line for line in said)
    first = {name: path.read_text() for name, path in files.items()}
    assert all(len(value) == 64 for value in first.values())
    assert len(set(first.values())) == 3
    said.clear()
    again = ensure_secrets(tmp_path, {}, said.append)
    assert {name: path.read_text() for name, path in again.items()} == first and said == []
    auth = (tmp_path / REDIS_AUTH_CONF).read_text()
    assert f"requirepass {first['BB_REDIS_PASSWORD']}\n" in auth
    assert stat.S_IMODE((tmp_path / "admin_token").stat().st_mode) == 0o600


def test_given_secrets_replace_kept_ones_and_can_be_shared(tmp_path):
    ensure_secrets(tmp_path, {}, lambda _: None)
    said: list[str] = []
    files = ensure_secrets(tmp_path, GIVEN, said.append, mode=0o644)
    assert {name: path.read_text() for name, path in files.items()} == GIVEN
    assert len(said) == 3 and all("taken from BB_" in line for line in said)
    assert "requirepass " + "p" * 24 in (tmp_path / REDIS_AUTH_CONF).read_text()
    assert stat.S_IMODE((tmp_path / "cookie_secret").stat().st_mode) == 0o644


@pytest.mark.parametrize("value", ["short", "a" * 20 + " x", "a" * 20 + '"', "a" * 20 + "\n"])
def test_a_given_secret_that_redis_or_the_instances_cannot_use_changes_nothing(tmp_path, value):
    with pytest.raises(OpsError, match="BB_REDIS_PASSWORD: use at least 16 characters"):
        ensure_secrets(tmp_path / "secrets", {**GIVEN, "BB_REDIS_PASSWORD": value})
    assert not (tmp_path / "secrets").exists()
