"""`GET /healthz` (the process answers) and `GET /readyz` (it can serve shoppers)."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from service.web.base import BaseHandler


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"status": "alive", "instance": self.services.config.instance_id})


class ReadyHandler(BaseHandler):
    """503 unless Redis answers, the subscription is live and the instance is not draining."""

    async def get(self) -> None:
        services = self.services
        problems = []
        if services.draining:
            problems.append("draining")
        if not services.feed.subscribed.is_set():
            problems.append("not subscribed to inventory changes")
        try:
            await asyncio.wait_for(services.redis.ping(), timeout=1.0)
        except (TimeoutError, RedisError, OSError) as exc:
            problems.append(f"Redis unreachable ({type(exc).__name__})")
        self.set_status(503 if problems else 200)
        self.write_json({"ready": not problems, "problems": problems,
                         "instance": services.config.instance_id})
