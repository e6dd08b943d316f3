"""The Redis Cluster parts that need no running cluster: the layout of `up
--redis-cluster`, the nodes' config, the slot split, the grouping of channels and keys."""

from __future__ import annotations

import itertools

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from service import redis_keys
from service.ops.errors import OpsError
from service.ops.layout import Layout
from service.ops.probes import free_port
from service.ops.redis_cluster import SLOTS, node_conf, slot_split
from service.ops.redis_ha import redis_settings
from service.redis_connect import slot_ranges
from service.redis_nodes import ClusterNodes, RedisNodes


def test_the_slots_are_split_evenly_with_none_left_over():
    for shards in (1, 2, 3, 7):
        split = slot_split(shards)
        assert split[0][0] == 0 and split[-1][1] == SLOTS - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(split))
        sizes = [last - first + 1 for first, last in split]
        assert max(sizes) - min(sizes) <= 1


def test_slot_ranges_merge_consecutive_slots():
    assert slot_ranges([5, 1, 2, 3, 9]) == [[1, 3], [5, 5], [9, 9]]
    assert slot_ranges([]) == []


def test_a_cluster_node_fails_over_and_never_takes_an_unconfirmable_write(tmp_path):
    conf = node_conf(tmp_path / "auth.conf", node_timeout_ms=1500)
    for line in ("cluster-enabled yes", "cluster-node-timeout 1500",
                 "cluster-require-full-coverage no", "min-replicas-to-write 1",
                 f"include {tmp_path / 'auth.conf'}"):
        assert line in conf.splitlines()
    assert "requirepass" not in conf  # the password only ever in the included file


def test_the_local_cluster_layout_pairs_each_primary_with_a_replica(tmp_path):
    layout = Layout(var_dir=tmp_path, redis_port=7000, redis_shards=2)
    assert layout.redis_nodes == {"redis-1": 7000, "redis-1-replica": 7001,
                                  "redis-2": 7002, "redis-2-replica": 7003}
    assert layout.redis_mode == "cluster"
    assert layout.all_ports()["redis-2 (cluster bus)"] == 17002
    assert redis_settings(layout)["BB_REDIS_CLUSTER"] == \
        "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    with pytest.raises(OpsError, match="exclude each other"):
        Layout(var_dir=tmp_path, redis_shards=3, redis_ha=True)
    with pytest.raises(OpsError, match="--redis-shards"):
        Layout(var_dir=tmp_path, redis_shards=9)
    with pytest.raises(OpsError, match="overlap"):  # a bus port on another's port
        Layout(var_dir=tmp_path, redis_port=7000, redis_shards=1, upstream_port=17001)


def test_one_redis_takes_every_channel_in_big_batches_and_every_key_on_one_node():
    nodes = RedisNodes(commands=object())  # type: ignore[arg-type]  # never called here
    channels = [redis_keys.changes_channel(f"book-{n}") for n in range(2500)]
    assert [len(batch) for batch in nodes.subscribe_batches(channels)] == [1000, 1000, 500]
    assert nodes.group(["a", "b", "c"]) == {"": [0, 1, 2]}


def test_the_sweeper_index_partitions_spread_over_the_slots():
    slots = {key_slot(key.encode()) for key in redis_keys.HOLD_EXPIRIES_KEYS}
    assert len(slots) == redis_keys.HOLD_EXPIRY_PARTITIONS
    thirds = {slot * 3 // SLOTS for slot in slots}  # every shard of a 3-shard split has some
    assert thirds == {0, 1, 2}
    assert redis_keys.hold_expiries_key_of("internet") in redis_keys.HOLD_EXPIRIES_KEYS


async def test_a_slot_map_that_cannot_be_read_is_kept_and_refresh_does_not_raise():
    # no node answers: redis-py raises RedisClusterException (not a RedisError); the feed
    # calls refresh() between its retries, and an exception there would end it
    cluster = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", free_port())],
                           socket_connect_timeout=0.5)
    nodes = ClusterNodes(cluster, {}, {})
    try:
        await nodes.refresh()
        await nodes.refresh()  # within the interval: no second read
    finally:
        await nodes.aclose()
        await cluster.aclose()
