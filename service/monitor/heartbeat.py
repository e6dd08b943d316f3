"""Instance heartbeats in Redis, and the view of every instance that the admin page shows."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis.asyncio as aioredis

from service import redis_keys
from service.monitor.metrics import Observed

HEARTBEAT_INTERVAL_S = 2.0


def heartbeat(instance: Observed, instance_id: str, port: int, started_s: float) -> dict[str, Any]:
    """What an instance tells the others about itself."""
    counts = instance.hub.counts()
    return {"id": instance_id, "pid": os.getpid(), "port": port,
            "startedAt": started_s, "beatAt": time.time(), "draining": instance.draining,
            "websockets": counts["websocket"], "longpolls": counts["longpoll"],
            "inFlight": instance.inflight, "resyncs": instance.feed.resyncs,
            "redisPrimary": instance.redis_primary}


async def send_heartbeat(redis: aioredis.Redis, beat: dict[str, Any]) -> None:
    """Refresh the instance's heartbeat key and its entry in the list of instances."""
    now_ms = int(beat["beatAt"] * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(redis_keys.heartbeat_key(beat["id"]), json.dumps(beat),
                 ex=redis_keys.HEARTBEAT_TTL_S)
        pipe.zadd(redis_keys.INSTANCES_KEY, {beat["id"]: now_ms})
        pipe.zremrangebyscore(redis_keys.INSTANCES_KEY, 0,
                              now_ms - redis_keys.GONE_INSTANCE_MEMORY_S * 1000)
        await pipe.execute()


async def instances_view(redis: aioredis.Redis) -> list[dict[str, Any]]:
    """Every instance seen in the last hour: its latest heartbeat, and whether it is up."""
    members: list[tuple[bytes | str, float]] = await redis.zrange(  # type: ignore[assignment]
        redis_keys.INSTANCES_KEY, 0, -1, withscores=True)  # withscores: (member, score) pairs
    if not members:
        return []
    ids = [member.decode() if isinstance(member, bytes) else member for member, _ in members]
    beats = await redis.mget([redis_keys.heartbeat_key(i) for i in ids])
    now_s = time.time()
    view = []
    for instance_id, (_, last_ms), raw in zip(ids, members, beats):
        entry = json.loads(raw) if raw else {"id": instance_id}
        entry["up"] = raw is not None and not entry.get("draining", False)
        entry["state"] = "up" if entry["up"] else ("draining" if raw else "gone")
        entry["lastBeatAgoS"] = round(now_s - last_ms / 1000, 1)
        view.append(entry)
    return sorted(view, key=lambda entry: str(entry["id"]))
