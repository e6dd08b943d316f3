"""Operations endpoints: /metrics (Prometheus text) and /admin/cluster (token-protected)."""

from __future__ import annotations

import hmac
from typing import Any

from service.monitor.heartbeat import instances_view
from service.monitor.metrics import CONTENT_TYPE
from service.web.base import BaseHandler
from service.web.errors import ApiError


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.services.metrics.render())


class AdminBase(BaseHandler):
    """Open only with BB_ADMIN_TOKEN, given as `?token=` or an `X-Admin-Token` header."""

    def prepare(self) -> None:
        super().prepare()
        expected = self.services.config.admin_token
        if not expected:
            raise ApiError(403, "admin_disabled", "the admin pages are off: start the instances "
                           "with BB_ADMIN_TOKEN set")
        given = self.request.headers.get("X-Admin-Token") or self.get_query_argument("token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(403, "bad_token", "wrong or missing admin token (?token=…)")
        self.set_header("Cache-Control", "no-store")

    async def snapshot(self) -> dict[str, Any]:
        """Every instance and every book, as the admin page shows them."""
        services = self.services
        report = await services.store.stock_report()
        return {"instances": await instances_view(services.redis), "books": report,
                "answeredBy": services.config.instance_id}


class InstancesApiHandler(AdminBase):
    async def get(self) -> None:
        self.write_json(await self.snapshot())


class InstancesPageHandler(AdminBase):
    async def get(self) -> None:
        self.render("admin.html", cluster=await self.snapshot())
