"""A new primary gives every book a new epoch, once (service/inventory/replication.py),
on fakeredis with Lua; the primary's replication ID is given, as INFO would."""

import fakeredis
import pytest
from test_inventory import every_book_channel, published

from service.inventory import InventoryStore, Promotions
from service.inventory.catalog import Catalog
from service.paths import DEFAULT_CATALOG

pytestmark = pytest.mark.timeout(20)


class FixedPrimary(Promotions):
    """Promotions with the primary's ID set by the test (fakeredis has no replication)."""
    replid = "a" * 40

    async def primary_ids(self, nodes=()) -> dict[str, str]:
        return {"": self.replid}


@pytest.fixture
async def store():
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    store = InventoryStore(redis, Catalog.load(DEFAULT_CATALOG), hold_ttl_s=60)
    await store.seed()
    yield store
    await redis.aclose()


async def test_each_primary_gives_every_book_one_new_epoch_and_keeps_the_count(store):
    skus = store.catalog.skus
    before = {s.sku: s for s in await store.snapshots(skus)}
    promotions = FixedPrimary(store.nodes)
    pubsub = await every_book_channel(store.redis, skus)
    assert await promotions.renew_epochs(skus) == len(skus)
    first = {s.sku: s for s in await store.snapshots(skus)}
    for sku in skus:
        assert first[sku].epoch != before[sku].epoch and first[sku].count == before[sku].count
        assert first[sku].version == before[sku].version + 1
    assert {m["sku"] for m in await published(pubsub)} == set(skus)  # every client is told
    # the same primary again (another instance, or a resync): nothing changes
    assert await promotions.renew_epochs(skus) == 0
    assert {s.sku: s for s in await store.snapshots(skus)} == first
    # the next promotion: another new epoch, the same on every instance that gets there
    promotions.replid = "b" * 40
    assert await promotions.renew_epochs(skus) == len(skus)
    second = {s.sku: s for s in await store.snapshots(skus)}
    assert all(second[sku].epoch not in (first[sku].epoch, before[sku].epoch) for sku in skus)
    await pubsub.aclose()
