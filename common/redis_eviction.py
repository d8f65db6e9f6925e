"""Whether a Redis drops keys when full (`maxmemory` with a `maxmemory-policy` other than noeviction).
The queues' Redis holds RQ's job hashes, the queues and the cameras' claims: evicted, a frame's job is
gone unsaid (a review: 75 keys evicted, 104 of 120 frames left `pending` with no line logged, until the
sweep called them lost 12 minutes later). So a role refuses to start on such a queues' Redis, and warns
of a frame store of its own that evicts (its frames are then recorded expired rather than waited for)."""

from __future__ import annotations

import logging

import redis

from common.credentials import mask_url
from common.errors import ConfigError

log = logging.getLogger(__name__)


def eviction_policy(connection: redis.Redis) -> str | None:
    """The policy by which this Redis drops keys when full, or None when it never does (no maxmemory, or
    noeviction). Raises redis.ResponseError where CONFIG is refused."""
    settings = {**connection.config_get("maxmemory"), **connection.config_get("maxmemory-policy")}
    policy = str(settings.get("maxmemory-policy", "noeviction"))
    if int(settings.get("maxmemory", 0) or 0) == 0 or policy == "noeviction":
        return None
    return policy


def check_eviction(connection: redis.Redis, url: str, holds_queues: bool) -> None:
    """Refuse a Redis holding the queues that evicts keys (a ConfigError naming the fix); warn of a
    frame store of its own that does. One whose policy cannot be read (CONFIG refused to an ACL user, or
    renamed) is said at INFO: the frame store's persistence check warns of that already."""
    what = "the queues' Redis" if holds_queues else "the frame store's Redis"
    try:
        policy = eviction_policy(connection)
    except redis.RedisError as error:
        log.info("cannot check whether %s (%s) drops keys when full (CONFIG GET refused: %s); make sure it"
                    " runs with maxmemory-policy noeviction", what, mask_url(url), mask_url(str(error)))  # fmt: skip
        return
    if policy is None:
        return
    if holds_queues:
        raise ConfigError(
            f"{what} ({mask_url(url)}) drops keys when full (maxmemory-policy {policy}): jobs, queues and"
            " camera claims would vanish unsaid; set maxmemory-policy noeviction (when full, writes then fail"
            " and ingest holds back)"
        )
    log.warning("%s (%s) drops keys when full (maxmemory-policy %s): frames evicted before their stage are"
                " recorded expired; set maxmemory-policy noeviction (ingest then holds back)",
                what, mask_url(url), policy)  # fmt: skip
