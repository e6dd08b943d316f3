"""Operations endpoints: /metrics (Prometheus text), /admin/cluster (behind the admin
token) and /admin/login."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import tornado.web

from service import redis_keys
from service.monitor.heartbeat import instances_view
from service.monitor.metrics import CONTENT_TYPE
from service.web import sessions
from service.web.base import BaseHandler
from service.web.errors import ApiError


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.services.metrics.render())


ADMIN_COOKIE = "bb_admin"
ADMIN_COOKIE_DAYS = 1
# failed sign-ins per client address per minute, counted in Redis for every instance
# (nginx limits the attempts too, for clients that come through it)
MAX_FAILED_SIGN_INS = 10
FAILED_SIGN_IN_WINDOW_S = 60


def token_fingerprint(token: str) -> str:
    """What the admin cookie carries: a digest of the token, so that a new BB_ADMIN_TOKEN
    signs every holder of an old cookie out, and the cookie never holds the token."""
    return hashlib.sha256(b"bb-admin:" + token.encode()).hexdigest()[:32]


class AdminBase(BaseHandler):
    """Open only with BB_ADMIN_TOKEN, given as `Authorization: Bearer <token>` or by
    signing in at /admin/login (a signed, HttpOnly, SameSite=Strict cookie). A token in
    the URL is refused: URLs land in access logs, browser history and Referer headers."""

    def prepare(self) -> None:
        super().prepare()
        expected = self.services.config.admin_token
        if not expected:
            raise ApiError(403, "admin_disabled", "the admin pages are off: start the instances "
                           "with BB_ADMIN_TOKEN set")
        self.set_header("Cache-Control", "no-store")
        if "token" in self.request.query_arguments:
            raise ApiError(400, "token_in_url", "an admin token is never accepted in the URL "
                           "(it would be logged): sign in at /admin/login, or send "
                           "`Authorization: Bearer <token>`")
        if self.signed_in(expected):
            return
        if self.wants_html():
            self.redirect("/admin/login", status=303)
            raise tornado.web.Finish()
        raise ApiError(401, "sign_in", "sign in at /admin/login, or send "
                       "`Authorization: Bearer <token>`")

    def signed_in(self, expected: str) -> bool:
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            return hmac.compare_digest(given.strip().encode(), expected.encode())
        cookie = tornado.web.decode_signed_value(
            self.services.config.cookie_secret, ADMIN_COOKIE, self.get_cookie(ADMIN_COOKIE),
            max_age_days=ADMIN_COOKIE_DAYS)
        return cookie is not None and hmac.compare_digest(
            cookie, token_fingerprint(expected).encode())

    async def snapshot(self) -> dict[str, Any]:
        """Every instance and every book, as the admin page shows them."""
        services = self.services
        report = await services.store.stock_report()
        redis = await services.connection.topology() if services.connection else None
        return {"instances": await instances_view(services.redis), "books": report,
                "redis": redis, "answeredBy": services.config.instance_id}


class AdminLoginHandler(BaseHandler):
    """GET: the sign-in form. POST `token`: the admin cookie, or the form again."""

    def prepare(self) -> None:
        super().prepare()
        self.set_header("Cache-Control", "no-store")
        if not self.services.config.admin_token:
            raise ApiError(403, "admin_disabled", "the admin pages are off: start the instances "
                           "with BB_ADMIN_TOKEN set")

    def get(self) -> None:
        self.render("admin_login.html", problem="")

    async def post(self) -> None:
        if sessions.is_cross_site(self.request.headers, self.request.host):
            raise ApiError(403, "cross_site", "sign in from this site's own form")
        failures_key = redis_keys.admin_sign_in_failures_key(self.client_address())
        failures = int(await self.services.redis.get(failures_key) or 0)
        if failures >= MAX_FAILED_SIGN_INS:
            raise ApiError(429, "too_many_sign_ins", "too many wrong tokens from your address: "
                           "wait a minute", retry_after_s=FAILED_SIGN_IN_WINDOW_S)
        expected = self.services.config.admin_token
        given = self.get_body_argument("token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            async with self.services.redis.pipeline(transaction=True) as pipe:
                pipe.incr(failures_key)
                pipe.expire(failures_key, FAILED_SIGN_IN_WINDOW_S)
                await pipe.execute()
            self.set_status(403)
            self.render("admin_login.html", problem="That is not the admin token.")
            return
        # signed with the shop's cookie secret, shared by every instance (as sessions are)
        value = tornado.web.create_signed_value(self.services.config.cookie_secret,
                                                ADMIN_COOKIE, token_fingerprint(expected))
        self.set_cookie(ADMIN_COOKIE, value.decode(), httponly=True, samesite="Strict",
                        secure=self.is_https(), expires_days=ADMIN_COOKIE_DAYS, path="/admin")
        self.redirect("/admin/cluster", status=303)


class InstancesApiHandler(AdminBase):
    async def get(self) -> None:
        self.write_json(await self.snapshot())


class InstancesPageHandler(AdminBase):
    async def get(self) -> None:
        self.render("admin.html", cluster=await self.snapshot())
