"""Config: defaults, and bad values refused at start with a message naming the fix."""

import re

import pytest

from service.config import Config, ConfigError
from service.inventory.catalog import Catalog, CatalogError

SECRET = {"BB_COOKIE_SECRET": "0123456789abcdef0123"}


def test_defaults():
    settings = Config.from_env(SECRET)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.hold_ttl_s == 900 and settings.longpoll_timeout_s == 25
    assert settings.port == 8000 and settings.instance_id.endswith("-8000")
    assert "0123456789" not in repr(settings)  # the secret stays out of logs


def test_environment_and_flags():
    settings = Config.from_env({**SECRET, "BB_REDIS_URL": "redis://db:6380/1",
                                  "BB_INSTANCE_ID": "app-7", "BB_HOLD_TTL_S": "1.5",
                                  "BB_PORT": "9000"}, port=8123)
    assert (settings.redis_url, settings.instance_id, settings.hold_ttl_s, settings.port) == \
        ("redis://db:6380/1", "app-7", 1.5, 8123)


@pytest.mark.parametrize("name, value, words", [
    ("BB_HOLD_TTL_S", "soon", "not a valid float"),
    ("BB_HOLD_TTL_S", "-1", "out of range"),
    ("BB_LONGPOLL_TIMEOUT_S", "nan", "out of range"),
    ("BB_PORT", "70000", "out of range"),
    ("BB_REDIS_URL", "http://x", "not a Redis URL"),
    ("BB_COOKIE_SECRET", "short", "too short"),
    ("BB_CATALOG", "/no/such/file.json", "no such file"),
    ("BB_UPSTREAM_URL", "ftp://127.0.0.1:9000", "not an http"),
    ("BB_UPSTREAM_URL", "127.0.0.1:9000", "not an http"),
    ("BB_UPSTREAM_URL", "http://", "not an http"),
    ("BB_UPSTREAM_URL", "http://127.0.0.1:port", "not an http"),
    ("BB_UPSTREAM_URL", "http://127.0.0.1:9000/?q=x", "not an http"),
    ("BB_UPSTREAM_KIND", "twitter-v2", "not one of twitter-v1, mastodon"),
    ("BB_UPSTREAM_TIMEOUT_S", "0", "out of range"),
    ("BB_UPSTREAM_TIMEOUT_S", "fast", "not a valid float"),
    ("BB_SEARCH_FRESH_S", "-5", "out of range"),
    ("BB_SEARCH_FRESH_S", "0", "out of range"),
    ("BB_SEARCH_STALE_S", "inf", "out of range"),
    ("BB_SEARCH_STALE_S", "0", "out of range"),
])
def test_bad_values_fail_with_a_clear_message(name, value, words):
    with pytest.raises(ConfigError, match=words) as refused:
        Config.from_env({**SECRET, name: value})
    assert name in str(refused.value)


def test_search_settings():
    defaults = Config.from_env(SECRET)
    assert (defaults.upstream_url, defaults.upstream_kind, defaults.upstream_timeout_s,
            defaults.search_fresh_s, defaults.search_stale_s, defaults.demo_blocking) == \
        ("http://127.0.0.1:9000", "twitter-v1", 5.0, 30.0, 300.0, False)
    settings = Config.from_env({**SECRET, "BB_UPSTREAM_URL": "https://mastodon.local/",
                                  "BB_UPSTREAM_KIND": "mastodon", "BB_UPSTREAM_TIMEOUT_S": "2.5",
                                  "BB_SEARCH_FRESH_S": "10", "BB_SEARCH_STALE_S": "60"},
                                 demo_blocking=True)
    assert (settings.upstream_url, settings.upstream_kind, settings.upstream_timeout_s,
            settings.search_fresh_s, settings.search_stale_s, settings.demo_blocking) == \
        ("https://mastodon.local", "mastodon", 2.5, 10.0, 60.0, True)


def test_missing_secret_is_generated_per_process():
    first, second = Config.from_env({}), Config.from_env({})
    assert first.cookie_secret != second.cookie_secret
    assert first.cookie_secret_is_random
    assert not Config.from_env({"BB_COOKIE_SECRET": "s" * 16}).cookie_secret_is_random


@pytest.mark.parametrize("content, words", [
    ("not json", "cannot read"),
    ('{"books": []}', "no books"),
    ('{"books": [{"sku": "Bad SKU!", "title": "t", "author": "a", "price": 1, "stock": 1}]}', "must match"),
    ('{"books": [{"sku": "a", "title": "t", "author": "a", "price": 1, "stock": -1}]}', "negative"),
    ('{"books": [{"sku": "a", "title": "t"}]}', "malformed"),
    ('{"featured": "b", "books": [{"sku": "a", "title": "t", "author": "a", "price": 1, "stock": 1}]}', "featured"),
])
def test_bad_catalogs_are_refused(tmp_path, content, words):
    path = tmp_path / "books.json"
    path.write_text(content)
    with pytest.raises(CatalogError, match=words):
        Catalog.load(path)


def test_a_redis_password_comes_from_the_url_the_setting_or_a_file(tmp_path):
    in_url = Config.from_env({"BB_REDIS_URL": "redis://:pa%40ss@10.0.0.5:6380/1"})
    assert (in_url.redis_url, in_url.redis_password) == ("redis://10.0.0.5:6380/1", "pa@ss")
    assert "pa@ss" not in repr(in_url) and "pa%40ss" not in repr(in_url)
    given = Config.from_env({"BB_REDIS_PASSWORD": "s3cret"})
    assert given.redis_password == "s3cret" and "s3cret" not in repr(given)
    kept = tmp_path / "redis_password"
    kept.write_text("from-a-file\n")
    assert Config.from_env({"BB_REDIS_PASSWORD_FILE": str(kept)}).redis_password == "from-a-file"
    assert Config.from_env({}).redis_password == ""


@pytest.mark.parametrize("env, words", [
    ({"BB_REDIS_PASSWORD": "a", "BB_REDIS_PASSWORD_FILE": "/x"}, "both BB_REDIS_PASSWORD and"),
    ({"BB_REDIS_PASSWORD_FILE": "/no/such/file"}, "BB_REDIS_PASSWORD_FILE=/no/such/file: cannot"),
    ({"BB_REDIS_URL": "redis://:pw-one-x1@h:1/0", "BB_REDIS_PASSWORD": "pw-two-x2"},
     "give it once"),
    ({"BB_REDIS_URL": "http://:pw-one-x1@h:1/0"}, "is not a Redis URL"),
    ({"BB_ADMIN_TOKEN_FILE": "/no/such/file"}, "BB_ADMIN_TOKEN_FILE=/no/such/file"),
])
def test_a_secret_setting_that_cannot_be_used_is_refused(env, words):
    with pytest.raises(ConfigError, match=re.escape(words)) as refused:
        Config.from_env(env)
    # the message never repeats a password
    assert "pw-one-x1" not in str(refused.value) and "pw-two-x2" not in str(refused.value)


def test_the_cookie_secret_and_admin_token_can_come_from_files(tmp_path):
    (tmp_path / "cookie").write_text("c" * 32)
    (tmp_path / "token").write_text("t" * 24 + "\n")
    config = Config.from_env({"BB_COOKIE_SECRET_FILE": str(tmp_path / "cookie"),
                              "BB_ADMIN_TOKEN_FILE": str(tmp_path / "token")})
    assert config.cookie_secret == "c" * 32 and not config.cookie_secret_is_random
    assert config.admin_token == "t" * 24


def test_cluster_seeds_parse_and_exclude_sentinels():
    settings = Config.from_env({**SECRET, "BB_REDIS_CLUSTER": "10.0.0.5:7000, [::1]:7001"})
    assert settings.redis_cluster == (("10.0.0.5", 7000), ("::1", 7001))
    assert Config.from_env(SECRET).redis_cluster == ()
    for bad in ("10.0.0.5", "10.0.0.5:port", "redis://10.0.0.5:7000", "h:7000/0"):
        with pytest.raises(ConfigError, match=re.escape(f"BB_REDIS_CLUSTER: {bad!r} is not "
                                                        "host:port")):
            Config.from_env({**SECRET, "BB_REDIS_CLUSTER": bad})
    with pytest.raises(ConfigError, match="both set"):
        Config.from_env({**SECRET, "BB_REDIS_CLUSTER": "h:7000",
                         "BB_REDIS_SENTINELS": "h:26379"})
