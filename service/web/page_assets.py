"""The page's script modules, their import map, and the Content-Security-Policy that
lets exactly that import map run.

Scripts and styles come from this site only: every script is a file under static/, and
the one inline script, the import map (browsers take it only inline), is allowed by its
hash. The import map sends each module's plain path (what "./x.js" imports resolve to)
to its URL with ?v=<hash>, so a browser never mixes cached modules of two deploys; its
text, and so its hash, changes only with the files, and is built once per process.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

SHOP_MODULES = (
    "js/shop.js",
    "js/shop/status.js",
    "js/shop/timing.js",
    "js/shop/snapshots.js",
    "js/shop/render.js",
    "js/shop/cart.js",
    "js/shop/longpoll.js",
    "js/shop/connection.js",
)

_POLICY = ("default-src 'self'; script-src 'self' '{script_hash}'; style-src 'self'; "
           "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
           "form-action 'self'; frame-ancestors 'none'")

_built: tuple[str, str] | None = None  # (import map text, policy), once per process


def import_map_and_policy(static_url: Callable[..., str]) -> tuple[str, str]:
    """(the import map's JSON text, the Content-Security-Policy allowing it)."""
    global _built
    if _built is None:
        text = json.dumps({"imports": {static_url(m, include_version=False): static_url(m)
                                       for m in SHOP_MODULES}})
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        _built = text, _POLICY.format(script_hash=f"sha256-{digest}")
    return _built
