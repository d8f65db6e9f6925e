"""Whether a Redis answers a client that gives no credentials. A password in the URL (or the
`redis_password` secret) says nothing of the server: without `requirepass` (or with an ACL default user
that needs none) Redis accepts the password and answers anyone without one too, so the raw frames and plate
crops stay readable by whoever reaches it (a review: the roles said nothing, the operator thought it
protected). A role asks once at start, on a connection of its own, and warns."""

from __future__ import annotations

import redis
from redis.connection import parse_url

from common import defaults


def accepts_no_password(url: str, timeout_s: float = defaults.REDIS_OPEN_PROBE_TIMEOUT_S) -> bool:
    """True when the Redis at `url` (its host, port or socket, db and TLS, without its user and password)
    answers PING to a client that gives no credentials. False when it asks for them (NOAUTH, WRONGPASS) or
    does not answer within `timeout_s` (the URL's own `socket_timeout` and `socket_connect_timeout` set aside:
    given twice, they raised TypeError and stopped the role's start). Raises ValueError for a URL redis-py
    cannot parse."""
    options = parse_url(url)
    options.pop("username", None)
    options.pop("password", None)
    options.update(socket_connect_timeout=timeout_s, socket_timeout=timeout_s)  # the probe's, not the URL's
    pool = redis.ConnectionPool(**options)
    try:
        return bool(redis.Redis(connection_pool=pool).ping())
    except redis.RedisError:  # AuthenticationError (NOAUTH), ResponseError (WRONGPASS, a disabled user), down
        return False
    finally:
        pool.disconnect()
