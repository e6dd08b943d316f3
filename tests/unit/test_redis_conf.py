"""deploy/redis.conf: what the shop relies on from its Redis (AOF, memory policy)."""

from service.paths import ROOT


def settings() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / "deploy" / "redis.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            pairs[name] = value
    return pairs


def test_every_acknowledged_hold_is_on_disk_before_the_answer():
    conf = settings()
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "always"


def test_only_keys_with_a_ttl_are_evicted_under_memory_pressure():
    conf = settings()
    assert conf["maxmemory-policy"] == "volatile-lru"  # never the inventory (no TTL)
    assert conf["maxmemory"].endswith("mb") and int(conf["maxmemory"][:-2]) >= 64
    assert conf["protected-mode"] == "yes"


def test_compose_sentinel_files_name_nodes_by_address_and_are_written_once(tmp_path):
    from service.ops.redis_ha import compose_files
    secrets, nodes = tmp_path / "secrets", tmp_path / "nodes"
    secrets.mkdir()
    (secrets / "redis_password").write_text("p" * 32 + "\n")
    said: list[str] = []
    compose_files(secrets, nodes, "172.29.255.11", "bb", 2000, out=said.append)
    assert len(said) == 6 and all(line.startswith("wrote") for line in said)
    primary = (nodes / "redis" / "node.conf").read_text()
    replica = (nodes / "redis-2" / "node.conf").read_text()
    sentinel = (nodes / "sentinel-3" / "sentinel.conf").read_text().splitlines()
    assert "replicaof" not in primary
    assert "replicaof 172.29.255.11 6379\n" in replica
    assert f"include {secrets}/redis-auth.conf\n" in replica
    assert "min-replicas-to-write 1\n" in replica  # for the day it is promoted
    assert "sentinel monitor bb 172.29.255.11 6379 2" in sentinel
    assert "sentinel down-after-milliseconds bb 2000" in sentinel
    assert f"requirepass {'p' * 32}" in sentinel and "bind 127.0.0.1" not in sentinel
    assert oct((nodes / "sentinel-3" / "sentinel.conf").stat().st_mode & 0o777) == "0o600"
    (nodes / "redis-2" / "node.conf").write_text("rewritten by Redis\n")
    said.clear()
    compose_files(secrets, nodes, "172.29.255.11", "bb", 5000, out=said.append)
    assert all(line.startswith("kept") for line in said)
    assert (nodes / "redis-2" / "node.conf").read_text() == "rewritten by Redis\n"


def test_a_rejoining_replica_is_copied_at_once():
    # with min-replicas-to-write 1, a primary after a failover takes writes only once a
    # replica has its copy: Redis's default 5 s wait for company would be 5 s of 503s
    assert settings()["repl-diskless-sync-delay"] == "0"
