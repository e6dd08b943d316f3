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
