"""Whether a Redis answers a client without credentials, asked of a real private redis-server: open, it
does, whatever credentials or connection options its URL carries; with `requirepass`, it does not."""

from __future__ import annotations

import redis

from common.redis_open import accepts_no_password


def test_an_open_redis_is_told_whatever_its_url_carries_and_a_guarded_one_is_not(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A URL with a password and its own socket timeouts (redis-py takes them from the query, as the roles'
    connections do) raised TypeError (the probe's timeouts given twice) and stopped the role's start with a
    traceback; the probe's timeouts are its own, the URL's are left aside."""
    with_password = redis_server.url.replace("redis://", "redis://:s3cret-pass@", 1)
    assert accepts_no_password(with_password)
    assert accepts_no_password(f"{with_password}?socket_timeout=60&socket_connect_timeout=60")
    assert accepts_no_password(f"{redis_server.url}?password=s3cret-pass")
    redis.Redis.from_url(redis_server.url).config_set("requirepass", "s3cret-pass")
    assert not accepts_no_password(f"{with_password}?socket_timeout=60")
    assert not accepts_no_password(f"{redis_server.url}?password=s3cret-pass")
