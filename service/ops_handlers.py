"""Operations endpoints: /metrics (Prometheus text) and /admin/cluster (token-protected)."""

from __future__ import annotations

import hmac

from service.handlers import ApiError, BaseHandler
from service.metrics import CONTENT_TYPE, cluster_view


class MetricsHandler(BaseHandler):
    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.services.metrics.render())


class AdminBase(BaseHandler):
    """Open only with BB_ADMIN_TOKEN, given as `?token=` or an `X-Admin-Token` header."""

    def prepare(self):
        super().prepare()
        expected = self.services.settings.admin_token
        if not expected:
            raise ApiError(403, "admin_disabled", "the admin pages are off: start the instances "
                           "with BB_ADMIN_TOKEN set")
        given = self.request.headers.get("X-Admin-Token") or self.get_query_argument("token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(403, "bad_token", "wrong or missing admin token (?token=…)")
        self.set_header("Cache-Control", "no-store")

    async def snapshot(self) -> dict:
        services = self.services
        report = await services.store.stock_report()
        return {"instances": await cluster_view(services.redis), "books": report,
                "answeredBy": services.settings.instance_id}


class ClusterApiHandler(AdminBase):
    async def get(self):
        self.write_json(await self.snapshot())


class ClusterPageHandler(AdminBase):
    async def get(self):
        self.render("admin.html", cluster=await self.snapshot())
