"""The Lua scripts' rules, on fakeredis with Lua."""

import asyncio
import json

import fakeredis
import pytest

from service import redis_keys as keys
from service.inventory import InventoryStore, SoldOut, StockBelowHolds, UnknownSku
from service.inventory.catalog import Catalog
from service.paths import DEFAULT_CATALOG

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def redis():
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis):
    store = InventoryStore(redis, Catalog.load(DEFAULT_CATALOG), hold_ttl_s=60)
    await store.seed()
    return store


async def every_book_channel(redis, skus):
    """A pub/sub client subscribed to these books' change channels (shard channels)."""
    pubsub = redis.pubsub()
    await pubsub.ssubscribe(*(keys.changes_channel(sku) for sku in skus))
    return pubsub


async def published(pubsub) -> list[dict]:
    """Every message published so far (get_message also returns None for the
    subscribe confirmation, so keep reading until a short quiet spell)."""
    messages = []
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + 0.2
    while loop.time() < quiet_until:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if message is not None:
            messages.append(json.loads(message["data"]))
    return messages


async def test_seed_never_overwrites_existing_stock(store):
    await store.set_stock("internet", 3)
    assert await store.seed() == 0
    assert (await store.snapshot("internet")).count == 3


async def test_add_holds_one_copy_and_repeating_is_harmless(store):
    first = await store.add("internet", "alice")
    again = await store.add("internet", "alice")
    assert first.in_cart and again.in_cart
    assert first.snapshot.count == 9
    assert again.snapshot == first.snapshot  # no second copy, no new version


async def test_remove_returns_the_copy_and_repeating_is_harmless(store):
    added = await store.add("internet", "alice")
    removed = await store.remove("internet", "alice")
    again = await store.remove("internet", "alice")
    assert removed.snapshot.count == 10 and not removed.in_cart
    assert removed.snapshot.version == added.snapshot.version + 1
    assert again.snapshot == removed.snapshot


async def test_sold_out_changes_nothing_and_count_never_negative(store, redis):
    await store.set_stock("async", 2)
    await store.add("async", "a")
    last = await store.add("async", "b")
    assert last.snapshot.count == 0
    with pytest.raises(SoldOut) as refused:
        await store.add("async", "c")
    assert refused.value.snapshot == last.snapshot
    assert await redis.zcard(keys.holds_key("async")) == 2


async def test_every_change_publishes_its_snapshot(store, redis):
    pubsub = await every_book_channel(redis, store.catalog.skus)
    result = await store.add("redis", "alice")
    messages = await published(pubsub)
    assert messages == [{"sku": "redis", "inventoryCount": result.snapshot.count,
                         "version": result.snapshot.version, "epoch": result.snapshot.epoch,
                         "changedAt": result.snapshot.changed_at_ms}]
    # the change's time is the Redis clock's, the same the reply's serverTime is on
    assert 0 <= result.server_time_ms - result.snapshot.changed_at_ms < 1000
    seconds, micros = await redis.time()
    assert abs(seconds * 1000 + micros // 1000 - result.snapshot.changed_at_ms) < 1000
    assert abs(result.expires_at_ms - (result.server_time_ms + store.hold_ttl_ms)) < 1000
    await store.add("redis", "alice")  # no change, no message
    assert await published(pubsub) == []
    await pubsub.aclose()


async def test_stock_cannot_go_below_held_copies(store):
    for shopper in ("a", "b", "c"):
        await store.add("tornado", shopper)
    with pytest.raises(StockBelowHolds):
        await store.set_stock("tornado", 2)
    snapshot = await store.set_stock("tornado", 3)
    assert snapshot.count == 0


async def test_expired_holds_are_swept_and_published(redis):
    store = InventoryStore(redis, Catalog.load(DEFAULT_CATALOG), hold_ttl_s=0.1)
    await store.seed()
    before = await store.add("internet", "alice")
    pubsub = await every_book_channel(redis, store.catalog.skus)
    # until the hold's expiry has passed on the Redis clock, which judges it
    expiry_ms = await redis.zscore(keys.holds_key("internet"), "alice")
    seconds, micros = await redis.time()
    await asyncio.sleep(max(0.0, expiry_ms - (seconds * 1000 + micros / 1000)) / 1000 + 0.01)
    assert await store.sweep() == 1
    assert await store.sweep() == 0  # idempotent: every instance runs it
    [message] = await published(pubsub)
    assert message["inventoryCount"] == 10 and message["version"] == before.snapshot.version + 1
    assert not await store.in_cart("internet", "alice")
    await pubsub.aclose()


async def test_unknown_sku_is_refused(store):
    with pytest.raises(UnknownSku):
        await store.add("no-such-book", "alice")
    with pytest.raises(UnknownSku):
        await store.snapshots(["internet", "nope"])


async def test_lost_redis_data_gets_a_new_epoch(store, redis):
    before = await store.snapshot("internet")
    await redis.flushall()
    await store.seed()
    after = await store.snapshot("internet")
    assert after.epoch != before.epoch
    assert after.is_newer_than(before)


async def test_holds_of_lists_a_sessions_copies_and_reset_releases_them(store, redis):
    await store.add("redis", "alice")
    await store.add("tornado", "alice")
    await store.add("tornado", "bob")
    held = await store.holds_of("alice")
    assert sorted(h.sku for h in held) == ["redis", "tornado"]
    assert all(h.expires_at_ms > store.clock.now_ms() for h in held)
    pubsub = await every_book_channel(redis, store.catalog.skus)
    books, released = await store.reset(stock=7)
    assert (books, released) == (len(store.catalog.skus), 3)
    assert await store.holds_of("alice") == []
    assert {s.count for s in await store.snapshots(store.catalog.skus)} == {7}
    # every book's clients are told, as with any change
    assert {m["sku"] for m in await published(pubsub)} == set(store.catalog.skus)
    await pubsub.aclose()


async def test_the_sweeper_visits_only_books_with_holds_due(redis):
    store = InventoryStore(redis, Catalog.load(DEFAULT_CATALOG), hold_ttl_s=0.05)
    await store.seed()
    await store.add("internet", "alice")
    index = keys.hold_expiries_key_of("internet")
    assert await redis.zrange(index, 0, -1) == [b"internet"]
    assert sum([await redis.zcard(key) for key in keys.HOLD_EXPIRIES_KEYS]) == 1
    # the index says "due" when the hold expires
    expiry_ms = await redis.zscore(keys.holds_key("internet"), "alice")
    assert await redis.zscore(index, "internet") == expiry_ms
    seconds, micros = await redis.time()
    await asyncio.sleep(max(0.0, expiry_ms - (seconds * 1000 + micros / 1000)) / 1000 + 0.01)
    store.clock.observe(0)  # (no reply since: the local clock stands in)
    assert await store.sweep() == 1
    assert await redis.zcard(index) == 0  # nothing left to watch
    # a hold whose index entry was lost is found by the full sweep
    await store.add("redis", "bob")
    await redis.delete(keys.hold_expiries_key_of("redis"))
    assert await store.sweep() == 0
    assert await store.sweep_all() == 0
    assert await redis.zrange(keys.hold_expiries_key_of("redis"), 0, -1) == [b"redis"]


async def test_per_book_keeps_the_order_of_the_books_across_pipelines(redis):
    from service.inventory.per_book import per_book
    from service.redis_nodes import RedisNodes
    skus = [f"book-{n:04d}" for n in range(1201)]  # three pipelines of at most 500
    for n, sku in enumerate(skus):
        await redis.set(keys.stock_key(sku), n)
    nodes = RedisNodes(redis)
    plain = await per_book(nodes, skus, lambda pipe, sku: pipe.get(keys.stock_key(sku)))
    assert [int(value) for value in plain] == list(range(1201))
    double = redis.register_script("return tonumber(redis.call('GET', KEYS[1])) * 2")
    scripted = await per_book(nodes, skus, lambda pipe, sku: double(
        keys=[keys.stock_key(sku)], args=[], client=pipe), size=400)
    assert scripted == [2 * n for n in range(1201)]
    assert await per_book(nodes, [], lambda pipe, sku: pipe.get(sku)) == []
