"""The compose tests' Docker engine: one for the whole run (its own dockerd when the
machine runs none), stopped at the end."""

from __future__ import annotations

import pytest

from support.docker_engine import DockerUnavailable, open_engine


@pytest.fixture(scope="session")
def engine():
    try:
        engine = open_engine()
    except DockerUnavailable as exc:
        pytest.fail(f"the compose tests cannot run on this machine: {exc}", pytrace=False)
    yield engine
    engine.stop()
