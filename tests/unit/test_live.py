"""The local hub: newest snapshot wins, waiters wake, subscribers get shared bytes."""

import asyncio
import json

import pytest

from service.inventory import Snapshot
from service.live import Entry, LiveHub, websocket_text_frame, with_server_time

pytestmark = pytest.mark.timeout(10)


class Recorder:
    def __init__(self):
        self.entries = []

    def push(self, entry):
        self.entries.append(entry)


def snap(version, count=5, epoch="e1", sku="internet"):
    return Snapshot(sku, count, version, epoch)


def test_only_newer_versions_are_taken():
    hub = LiveHub("app-x")
    assert hub.apply(snap(2))
    assert not hub.apply(snap(1))
    assert not hub.apply(snap(2, count=99))
    assert hub.current("internet").snapshot == snap(2)


def test_a_new_epoch_resets_versions():
    hub = LiveHub("app-x")
    hub.apply(snap(40))
    assert hub.apply(snap(1, count=10, epoch="e2"))
    assert hub.current("internet").snapshot.epoch == "e2"


def test_entry_is_serialised_once_with_the_seed_field_and_instance():
    entry = Entry.build(snap(3, count=7), "app-x", server_time_ms=1234)
    assert json.loads(entry.payload) == {"sku": "internet", "inventoryCount": 7, "version": 3,
                                         "epoch": "e1", "changedAt": 0, "instance": "app-x"}
    stamped = with_server_time(entry.payload, 1234)
    assert json.loads(stamped) == {**json.loads(entry.payload), "serverTime": 1234}
    assert entry.frame == websocket_text_frame(stamped)
    assert entry.frame[:2] == bytes([0x81, len(stamped)])
    assert entry.frame_at(99) == websocket_text_frame(with_server_time(entry.payload, 99))


def test_frame_lengths_follow_rfc6455():
    assert websocket_text_frame(b"x" * 200)[:4] == bytes([0x81, 126, 0, 200])
    assert websocket_text_frame(b"x" * 70000)[:2] == bytes([0x81, 127])


def test_subscribers_get_the_same_entry_object():
    hub = LiveHub("app-x")
    first, second = Recorder(), Recorder()
    hub.attach(first, ["internet"])
    hub.attach(second, ["internet", "redis"])
    hub.apply(snap(1))
    hub.apply(snap(1, sku="redis"))
    assert first.entries[0] is second.entries[0]
    assert [e.snapshot.sku for e in second.entries] == ["internet", "redis"]
    hub.detach(second, ["internet", "redis"])
    hub.apply(snap(2))
    assert len(second.entries) == 2 and len(first.entries) == 2


async def test_waiters_wake_on_change_of_any_of_their_skus():
    hub = LiveHub("app-x")
    hub.apply(snap(1))
    waiter = hub.wait(["internet", "redis"])
    other = hub.wait(["tornado"])
    hub.apply(snap(1, sku="redis"))
    entry = await asyncio.wait_for(waiter, 1)
    assert entry.snapshot.sku == "redis"
    assert not other.done()
    assert hub.counts()["longpoll"] == 1


async def test_cancelled_waiters_are_forgotten_and_release_all_answers_the_rest():
    hub = LiveHub("app-x")
    gone = hub.wait(["internet"])
    gone.cancel()
    await asyncio.sleep(0)
    assert hub.counts()["longpoll"] == 0
    parked = hub.wait(["internet"])
    hub.release_all()
    assert (await asyncio.wait_for(parked, 1)) is None


async def test_fan_out_is_coalesced_to_one_push_per_interval_with_the_newest_last():
    """A book changing as fast as it can: each socket gets at most duration/interval + 1
    frames, and the last frame is the last version; the held snapshot is always newest."""
    interval_s = 0.05
    hub = LiveHub("app-x", push_interval_s=interval_s)
    socket = Recorder()
    hub.attach(socket, ["internet"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    version = 0
    while loop.time() - started < 0.5:
        version += 1
        hub.apply(snap(version))
        assert hub.current("internet").snapshot.version == version
        await asyncio.sleep(0.001)
    duration_s = loop.time() - started
    waiter = hub.wait(["other-book"])  # parked elsewhere: untouched
    await asyncio.sleep(interval_s * 2)  # the last change goes out within one interval
    frames = [entry.snapshot.version for entry in socket.entries]
    assert version > 100
    assert len(frames) <= duration_s / interval_s + 1, len(frames)
    assert frames[-1] == version and frames == sorted(frames)
    assert not waiter.done()


async def test_a_parked_long_poll_wakes_within_the_interval():
    hub = LiveHub("app-x", push_interval_s=0.05)
    hub.apply(snap(1))  # fans out at once: nothing was pushed before
    waiter = hub.wait(["internet"])
    hub.apply(snap(2))  # within the interval: waits for its end
    assert not waiter.done()
    entry = await asyncio.wait_for(waiter, 0.2)
    assert entry.snapshot.version == 2


async def test_a_big_fan_out_goes_out_in_slices_and_the_newest_follows_the_round():
    from service.live.hub import FAN_OUT_SLICE
    hub = LiveHub("app-x", push_interval_s=0.01)
    sockets = [Recorder() for _ in range(FAN_OUT_SLICE * 2 + 50)]
    for socket in sockets:
        hub.attach(socket, ["internet"])
    hub.apply(snap(1))
    # the first slice at once; the loop may serve other work before the next
    assert sum(1 for s in sockets if s.entries) == FAN_OUT_SLICE
    hub.apply(snap(2))  # during the round: kept as the newest, sent after it
    await asyncio.sleep(0.05)
    assert all([e.snapshot.version for e in s.entries] == [1, 2] for s in sockets)


def test_a_socket_whose_push_fails_stops_neither_the_others_nor_later_changes(caplog):
    class Broken:
        def push(self, entry):
            raise RuntimeError("a bug in one socket")

    hub = LiveHub("app-x")
    before, after = Recorder(), Recorder()
    hub.attach(before, ["internet"])
    hub.attach(Broken(), ["internet"])
    hub.attach(after, ["internet"])
    hub.apply(snap(1))
    hub.apply(snap(2))
    assert [e.snapshot.version for e in before.entries] == [1, 2]
    assert [e.snapshot.version for e in after.entries] == [1, 2]
    assert "a bug in one socket" in caplog.text
