"""One settings object, built from the environment (BB_*) and command-line flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse, urlunparse

from service.paths import DEFAULT_CATALOG

UPSTREAM_KINDS = ("twitter-v1", "mastodon")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Config:
    # never holds a password (safe to log): that is redis_password
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = dataclasses.field(default="", repr=False)
    # Sentinel mode when set (BB_REDIS_SENTINELS): (host, port) of each sentinel, and the
    # name they know the primary by; then every cart change waits for a replica
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_service: str = "bb"
    # Redis Cluster mode when set (BB_REDIS_CLUSTER): (host, port) of each seed node; then
    # too every cart change waits for a replica of the book's primary
    redis_cluster: tuple[tuple[str, int], ...] = ()
    # how long a cart change waits for a replica to confirm it (Sentinel and Cluster mode)
    redis_confirm_timeout_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 8000
    instance_id: str = ""
    cookie_secret: str = dataclasses.field(default="", repr=False)
    # True when BB_COOKIE_SECRET was unset and a random one was made for this process
    cookie_secret_is_random: bool = False
    hold_ttl_s: float = 900.0
    # a re-add extends a hold only up to this long after its first add
    hold_max_s: float = 3600.0
    # copies one client address may hold at once (0: no cap)
    max_holds_per_address: int = 10
    longpoll_timeout_s: float = 25.0
    drain_s: float = 10.0
    sweep_interval_s: float = 0.5
    # a socket that asks for it (?heartbeat=1) hears from the server at least this often
    heartbeat_s: float = 2.0
    # each process wakes a book's clients at most once per this (the newest goes out)
    push_interval_s: float = 0.05
    catalog_path: Path = DEFAULT_CATALOG
    upstream_url: str = "http://127.0.0.1:9000"
    upstream_kind: str = "twitter-v1"
    upstream_timeout_s: float = 5.0
    search_fresh_s: float = 30.0
    search_stale_s: float = 300.0
    # empty: /admin/cluster is off
    admin_token: str = dataclasses.field(default="", repr=False)
    # peers whose X-Real-IP / X-Forwarded-For are believed (the proxy in front)
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    # `serve --demo-blocking` only: adds the seed's blocking handler for `make bench-seed`
    demo_blocking: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Config:
        """Read BB_* variables; flags given on the command line win. Raises ConfigError."""
        env = os.environ if environ is None else environ
        port = flags.get("port") or _number(env, "BB_PORT", 8000, int, minimum=1, maximum=65535)
        secret = secret_setting(env, "BB_COOKIE_SECRET")
        if secret and len(secret) < 16:
            raise ConfigError("BB_COOKIE_SECRET is too short: use at least 16 characters "
                                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        redis_url, redis_password = redis_setting(env, cls.redis_url)
        settings = cls(
            redis_url=redis_url,
            redis_password=redis_password,
            redis_sentinels=node_addresses(env, "BB_REDIS_SENTINELS",
                                       "10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379"),
            redis_cluster=node_addresses(env, "BB_REDIS_CLUSTER",
                                     "10.0.0.5:7000,10.0.0.6:7000,10.0.0.7:7000"),
            redis_service=_service_name(env.get("BB_REDIS_SERVICE") or cls.redis_service),
            redis_confirm_timeout_s=_number(env, "BB_REDIS_CONFIRM_TIMEOUT_S",
                                            cls.redis_confirm_timeout_s, float, minimum=0.01,
                                            maximum=60),
            host=flags.get("host") or env.get("BB_HOST", cls.host),
            port=port,
            instance_id=env.get("BB_INSTANCE_ID") or f"{socket.gethostname()}-{port}",
            # A per-process secret works for one instance; several instances behind one
            # proxy must share it or they refuse each other's sessions.
            cookie_secret=secret or secrets.token_hex(32),
            cookie_secret_is_random=not secret,
            hold_ttl_s=_number(env, "BB_HOLD_TTL_S", cls.hold_ttl_s, float, minimum=0.1),
            hold_max_s=_number(env, "BB_HOLD_MAX_S", cls.hold_max_s, float, minimum=0.1,
                               maximum=30 * 24 * 3600),
            max_holds_per_address=_number(env, "BB_MAX_HOLDS_PER_ADDRESS",
                                          cls.max_holds_per_address, int, minimum=0,
                                          maximum=1_000_000),
            longpoll_timeout_s=_number(env, "BB_LONGPOLL_TIMEOUT_S", cls.longpoll_timeout_s,
                                       float, minimum=0.1, maximum=3600),
            drain_s=_number(env, "BB_DRAIN_S", cls.drain_s, float, minimum=0, maximum=3600),
            sweep_interval_s=_number(env, "BB_SWEEP_INTERVAL_S", cls.sweep_interval_s, float,
                                     minimum=0.05, maximum=60),
            heartbeat_s=_number(env, "BB_HEARTBEAT_S", cls.heartbeat_s, float, minimum=0.1,
                                maximum=60),
            push_interval_s=_number(env, "BB_PUSH_INTERVAL_S", cls.push_interval_s, float,
                                    minimum=0, maximum=5),
            catalog_path=Path(env.get("BB_CATALOG", str(DEFAULT_CATALOG))),
            upstream_url=_http_url(env.get("BB_UPSTREAM_URL") or cls.upstream_url),
            upstream_kind=_choice(env, "BB_UPSTREAM_KIND", cls.upstream_kind, UPSTREAM_KINDS),
            upstream_timeout_s=_number(env, "BB_UPSTREAM_TIMEOUT_S", cls.upstream_timeout_s,
                                       float, minimum=0.1, maximum=120),
            search_fresh_s=_number(env, "BB_SEARCH_FRESH_S", cls.search_fresh_s, float,
                                   minimum=0.1, maximum=86400),
            search_stale_s=_number(env, "BB_SEARCH_STALE_S", cls.search_stale_s, float,
                                   minimum=0.1, maximum=7 * 86400),
            admin_token=_admin_token(secret_setting(env, "BB_ADMIN_TOKEN")),
            trusted_proxies=_networks(env, "BB_TRUSTED_PROXIES", cls.trusted_proxies),
            demo_blocking=bool(flags.get("demo_blocking", False)),
        )
        if settings.redis_sentinels and settings.redis_cluster:
            raise ConfigError("BB_REDIS_SENTINELS and BB_REDIS_CLUSTER are both set: a Redis "
                              "Cluster fails over by itself; unset one of them")
        if not settings.catalog_path.is_file():
            raise ConfigError(f"BB_CATALOG={settings.catalog_path}: no such file "
                                f"(unset it to use the built-in catalog)")
        return settings


Number = TypeVar("Number", int, float)


def _number(env: Mapping[str, str], name: str, default: Number, kind: Callable[[str], Number],
            minimum: float | None = None, maximum: float | None = None) -> Number:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = getattr(kind, "__name__", "number")
        raise ConfigError(f"{name}={raw!r} is not a valid {noun}") from None
    if value != value or (minimum is not None and value < minimum) or (
            maximum is not None and value > maximum):
        raise ConfigError(f"{name}={raw!r} is out of range "
                            f"(allowed: {minimum} to {maximum if maximum is not None else 'any'})")
    return value


def _admin_token(token: str) -> str:
    if token and len(token) < 16:
        raise ConfigError("BB_ADMIN_TOKEN is too short: use at least 16 characters, or leave "
                            "it unset to turn /admin/cluster off")
    return token


def _networks(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    networks = []
    for item in raw.split(","):
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {item.strip()!r} is not an IP address or network "
                                "(e.g. 127.0.0.1,10.0.0.0/8)") from None
    return tuple(networks)


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _http_url(url: str) -> str:
    try:
        parsed = urlparse(url)
        valid = parsed.scheme in ("http", "https") and bool(parsed.hostname) and not parsed.query
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"BB_UPSTREAM_URL={url!r} is not an http(s) base URL "
                            "(expected e.g. http://127.0.0.1:9000, the simulator)")
    return url.rstrip("/")


def node_addresses(env: Mapping[str, str], name: str, example: str) -> tuple[tuple[str, int], ...]:
    """A list of Redis nodes (BB_REDIS_SENTINELS, BB_REDIS_CLUSTER): host:port (or
    [v6]:port), comma-separated."""
    found = []
    for item in (part.strip() for part in env.get(name, "").split(",")):
        if not item:
            continue
        parsed = urlparse(f"//{item}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or parsed.path or parsed.username:
            raise ConfigError(f"{name}: {item!r} is not host:port (expected e.g. {example})")
        found.append((parsed.hostname, port))
    return tuple(found)


def _service_name(name: str) -> str:
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        raise ConfigError(f"BB_REDIS_SERVICE={name!r}: a Sentinel master name is letters, "
                          "digits, '-', '_' or '.'")
    return name


def secret_setting(env: Mapping[str, str], name: str) -> str:
    """A secret given as NAME, or read from the file NAME_FILE (Docker's convention, which
    keeps it out of `docker inspect` and process listings); "" when neither is set."""
    value, path = env.get(name, ""), env.get(f"{name}_FILE", "")
    if value and path:
        raise ConfigError(f"both {name} and {name}_FILE are set: keep one")
    if not path:
        return value
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror}); point it at "
                          f"the file holding the secret, or set {name} instead") from None


def redis_setting(env: Mapping[str, str], default_url: str) -> tuple[str, str]:
    """(BB_REDIS_URL without its password, the password): from the URL's
    `redis://:PASSWORD@host` or BB_REDIS_PASSWORD / BB_REDIS_PASSWORD_FILE."""
    url = env.get("BB_REDIS_URL") or default_url
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss", "unix") or not (parsed.hostname or parsed.path):
        raise ConfigError(f"BB_REDIS_URL={redact_url(url)!r} is not a Redis URL "
                          "(expected e.g. redis://127.0.0.1:6379/0)")
    in_url = unquote(parsed.password or "")
    given = secret_setting(env, "BB_REDIS_PASSWORD")
    if in_url and given and in_url != given:
        raise ConfigError("BB_REDIS_URL holds a password and BB_REDIS_PASSWORD(_FILE) "
                          "another: give it once")
    return redact_url(url), given or in_url


def redact_url(url: str) -> str:
    """The URL without its password (what may be printed or logged); a user name stays."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parsed.username}@" if parsed.username else ""
    netloc = f"{user}{host}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))
