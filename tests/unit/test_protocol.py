"""Request parsing: long-poll cursors, sessions, the same-origin rule."""

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.inventory import Snapshot
from service.live import Entry
from service.web.cursors import is_ahead_of, parse_cursors
from service.web.errors import ApiError, redis_error_code, redis_unavailable
from service.web.sessions import is_cross_site, new_token, session_id_from


def test_cursors_parse_epoch_version_or_bare_version():
    assert parse_cursors(None, 1) is None
    assert parse_cursors("7", 1) == [(None, 7)]
    assert parse_cursors("ab12:7,cd34:0", 2) == [("ab12", 7), ("cd34", 0)]


@pytest.mark.parametrize("raw, count", [("x", 1), ("1,2", 1), ("e:-1", 1), ("", 1),
                                        ("e:1" + "0" * 20, 1), ("1", 2)])
def test_bad_cursors_are_400(raw, count):
    with pytest.raises(ApiError) as refused:
        parse_cursors(raw, count)
    assert refused.value.status_code == 400 and refused.value.code == "bad_since"


def test_a_snapshot_is_ahead_of_older_versions_and_other_epochs():
    entry = Entry.build(Snapshot("internet", 3, 5, "e1"), "app", 0)
    assert is_ahead_of(entry, ("e1", 4)) and is_ahead_of(entry, (None, 4))
    assert not is_ahead_of(entry, ("e1", 5)) and not is_ahead_of(entry, (None, 9))
    assert is_ahead_of(entry, ("e0", 9))


def test_sessions_are_signed_by_the_shared_secret():
    secret = "s" * 32
    session_id, token = new_token(secret)
    assert session_id_from(secret, token) == session_id
    assert session_id_from("t" * 32, token) is None
    assert session_id_from(secret, session_id) is None
    assert session_id_from(secret, token[:-1] + ("0" if token[-1] != "0" else "1")) is None


@pytest.mark.parametrize("headers, cross", [
    ({}, False),
    ({"Origin": "http://shop.test:8000"}, False),
    ({"Origin": "http://evil.test"}, True),
    ({"Origin": "http://shop.test:9999"}, True),
    ({"Origin": "null"}, True),
    ({"Origin": "http://["}, True),  # not a URL: urlparse raises ValueError (was a 500)
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://shop.test:8000"}, False),
])
def test_cross_site_requests_are_recognised(headers, cross):
    assert is_cross_site(headers, "shop.test:8000") is cross


@pytest.mark.parametrize("error, code", [
    (ResponseError("NOREPLICAS Not enough good replicas to write."), "NOREPLICAS"),
    (ResponseError("Command # 1 (EVALSHA 924c 6 bb:{internet}:stock) of pipeline caused "
                   "error: ('NOREPLICAS Not enough good replicas to write.',)"), "NOREPLICAS"),
    (ResponseError("OOM command not allowed when used memory > 'maxmemory'."), "OOM"),
    (RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused."),
     "Error"),
])
def test_the_redis_error_code_is_found_also_inside_a_pipeline_error(error, code):
    assert redis_error_code(error) == code


def test_a_503_says_whether_redis_is_unreachable_or_lacks_a_replica():
    lacking = redis_unavailable(ResponseError("NOREPLICAS Not enough good replicas to write."))
    gone = redis_unavailable(RedisConnectionError("Connection refused"))
    assert (lacking.status_code, lacking.code) == (gone.status_code, gone.code) == \
        (503, "unavailable")
    assert "replica" in lacking.message and "nothing changed" in lacking.message
    assert "unreachable" in gone.message
