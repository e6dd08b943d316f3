"""GET /api/openapi.json: a valid OpenAPI 3.1 document that describes exactly the routes the
app has under /api and /cart, with the limits the code enforces. (That the answers match
it is for tests/integration/test_api_fuzz.py, which runs Schemathesis against an instance.)"""

import json
import re

import pytest
import tornado.web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from tornado.httpclient import AsyncHTTPClient
from tornado.routing import PathMatches

from service.inventory.catalog import SKU_PATTERN
from service.web import cart, limits
from service.web.app import make_app
from service.web.cursors import parse_cursors
from service.web.errors import ApiError
from service.web.openapi import DOCUMENT

pytestmark = pytest.mark.timeout(20)

DOC = json.loads(DOCUMENT)
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# the JSON interface: every route under these is described, and only routes that exist
DESCRIBED_PREFIXES = ("/api/", "/cart")


def routes(services) -> dict[str, type[tornado.web.RequestHandler]]:
    """Path -> handler class of every plain route (no path arguments) of the app."""
    found = {}
    for rule in make_app(services).wildcard_router.rules:
        matcher = rule.matcher
        # exactly PathMatches: /cart/status's WebSocket rule (a subclass) is not described
        if type(matcher) is PathMatches and matcher.regex.groups == 0:
            found[matcher.reverse()] = rule.target
    return found


def implemented(handler: type[tornado.web.RequestHandler]) -> set[str]:
    return {m for m in HTTP_METHODS
            if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def anchored(pattern: str) -> re.Pattern[str]:
    """A JSON Schema pattern as Python reads it with fullmatch (ECMA's `$` never matches
    before a final newline, Python's does)."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.compile(pattern[1:-1])


def parameter(path: str, name: str) -> dict:
    for param in DOC["paths"][path]["get"]["parameters"]:
        param = DOC["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]] \
            if "$ref" in param else param
        if param["name"] == name:
            return param
    raise KeyError(name)


async def test_the_app_serves_a_valid_openapi_3_1_document(start_app):
    app = await start_app()
    client = AsyncHTTPClient(force_instance=True)
    try:
        reply = await client.fetch(app.base + "/api/openapi.json")
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.headers["Cache-Control"] == "public, max-age=300"
        served = json.loads(reply.body)
        validate(served, cls=OpenAPIV31SpecValidator)
        assert served["openapi"].startswith("3.1.")
        # a cache revalidates with the ETag and gets no body back
        again = await client.fetch(app.base + "/api/openapi.json", raise_error=False,
                                   headers={"If-None-Match": reply.headers["Etag"]})
        assert again.code == 304
    finally:
        client.close()


async def test_every_described_route_exists_and_every_api_route_is_described(start_app):
    app = await start_app()
    routed = routes(app.services)
    for path, operations in DOC["paths"].items():
        assert path in routed, f"{path} is described but not routed"
        methods = {m for m in operations if m in HTTP_METHODS}
        assert methods <= implemented(routed[path]), f"{path}: {methods} not all handled"
    for path, handler in routed.items():
        if path.startswith(DESCRIBED_PREFIXES):
            assert path in DOC["paths"], f"{path} is routed but not described"
            described = {m for m in DOC["paths"][path] if m in HTTP_METHODS}
            assert described == implemented(handler), f"{path}: {described}"


def test_the_limits_described_are_the_codes():
    per_page = parameter("/api/books", "per_page")["schema"]
    assert per_page["maximum"] == limits.API_MAX_BOOKS_PER_PAGE
    assert per_page["default"] == limits.API_BOOKS_PER_PAGE
    skus = DOC["components"]["parameters"]["Skus"]["schema"]
    assert skus["maxItems"] == limits.MAX_SKUS_PER_REQUEST
    assert skus["items"]["pattern"] == SKU_PATTERN.pattern
    assert parameter("/api/rate", "q")["schema"]["maxLength"] == limits.MAX_QUERY_CHARS
    assert DOC["components"]["schemas"]["CartChange"]["properties"]["next"]["maxLength"] \
        == cart.MAX_NEXT_CHARS
    assert f"{limits.MAX_BODY_BYTES // 1024} KB" in \
        DOC["paths"]["/cart"]["post"]["responses"]["413"]["description"]


@pytest.mark.parametrize("value", [
    "/books/internet", "/", "/a b?c=d#e", "/é", "//evil.example", "/\\evil", "\\/x",
    "https://evil.example/", "books", "", "/a\nb", "/a\r", "/a\x00", "/a\x7f", "/a\\b",
    "/a\n",
])
def test_the_next_pattern_is_the_codes_check(value):
    pattern = anchored(DOC["components"]["schemas"]["CartChange"]["properties"]["next"]
                       ["pattern"])
    assert (pattern.fullmatch(value) is not None) == cart.is_same_site_path(value)


@pytest.mark.parametrize("value", [
    "17", "3f2a9c1d:17", ":17", "a:b:17", "3f2a:1,3f2a:2", "17,18", "x" * 64 + ":1",
    "x" * 65 + ":1", "9" * 15, "9" * 16, "", "3f2a:", "3f2a:x", "17,", ",17", "²", "1 7",
    "17\n",
])
def test_the_since_pattern_is_the_codes_parser(value):
    pattern = anchored(parameter("/cart/status", "since")["schema"]["pattern"])
    try:
        parse_cursors(value, value.count(",") + 1)
        accepted = True
    except ApiError:
        accepted = False
    assert (pattern.fullmatch(value) is not None) == accepted
