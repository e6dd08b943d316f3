"""`GET /api/openapi.json`: the OpenAPI 3.1 description of the shop's JSON interface."""

from __future__ import annotations

import json

from service.paths import PACKAGE
from service.web.base import BaseHandler

# Package data, beside the catalog. tests/unit/test_openapi.py keeps it true to the routes
# and limits; tests/integration/test_api_fuzz.py holds a real instance to it (Schemathesis).
OPENAPI_PATH = PACKAGE / "data" / "openapi.json"
# The same for every instance of a release: caches may keep it a while and then revalidate
# (Tornado's ETag answers an unchanged document with 304).
MAX_AGE_S = 300


def load_document() -> bytes:
    """The description as served (without the file's indentation); raises ValueError when
    the file is not JSON."""
    return json.dumps(json.loads(OPENAPI_PATH.read_bytes()), separators=(",", ":"),
                      ensure_ascii=False).encode()


# read once, when the app is built: a broken file stops the instance from starting
DOCUMENT = load_document()


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", f"public, max-age={MAX_AGE_S}")
        self.finish(DOCUMENT)
