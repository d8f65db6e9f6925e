"""Warnings at a role's start of what would run but is unsafe or lossy: no job key, or one unlike the
other roles' (ALPR_JOB_KEY); a Redis or Postgres reached unencrypted off this host; a Redis that
anyone can read without a password. Each warns and the role starts (the checks that refuse are
alpr/connections.py's and alpr/start_checks.py's)."""

from __future__ import annotations

import logging

import redis

from common.config import Settings
from common.credentials import mask_url
from common.deployment import Deployment
from common.job_key import key_fingerprint, others_disagreeing, publish
from common.plain_links import links_in_clear
from common.queues import redis_now
from common.redis_open import accepts_no_password

log = logging.getLogger(__name__)


def check_job_key(
    settings: Settings, connection: redis.Redis, role: str | None, deployment: Deployment | None = None
) -> None:
    """A WARNING when no job key is set (ALPR_JOB_KEY): jobs are then neither signed nor checked. Then the
    key's fingerprint is published for `role` in the queues' Redis, with its `deployment` (None: a command,
    which only compares),
    and an ERROR names the roles that published another key (or none): workers refuse every job signed
    with another key, and its frames are lost (a key file with a trailing space on one host lost them all,
    the ingest node saying nothing)."""
    key = settings.secret("job_key")
    if key is None:
        log.warning("no ALPR_JOB_KEY: jobs are not signed, and whoever can write to the queues' Redis can queue"
                    " jobs the workers run (a forged redaction job can keep a plate sharp); set the same key in"
                    " every role (`docker compose` does)")  # fmt: skip
    try:
        disagreeing = publish(connection, role, key, deployment) if role else others_disagreeing(connection, key)
        now_s = redis_now(connection)
    except redis.RedisError as error:  # a check only: the role starts, and its workers still say so
        log.warning("could not compare the job key with the other roles' (%s)", mask_url(str(error)))
        return
    if disagreeing:
        mine = "no job key" if key is None else f"key {key_fingerprint(key)}"
        log.error("the job key differs between roles: this %s has %s, unlike %s. Workers refuse every job not"
                  " signed with their own key, and its frames are lost: give every role the same ALPR_JOB_KEY"
                  " (the `job_key` secret; a key file's trailing spaces, tabs and line end are not part of the"
                  " key)", role or "command", mine,
                  ", ".join(entry.describe(now_s) for entry in disagreeing))  # fmt: skip


def warn_if_links_in_clear(settings: Settings) -> None:
    """A WARNING at a role's start for each Redis or Postgres it reaches unencrypted off this host (raw frames,
    the Redis password, plate text in the clear), but for the hosts of ALPR_PLAIN_LINK_HOSTS
    (common/plain_links.py)."""
    redis_urls = {"queues": settings.redis_url}
    if settings.store_url != settings.redis_url:
        redis_urls["frame store"] = settings.store_url
    for message in links_in_clear(redis_urls, settings.database_url, settings.plain_link_host_names):
        log.warning("%s", message)


def warn_if_redis_open(settings: Settings) -> None:
    """A WARNING for each Redis the role reaches with no credentials (none in its URL, no `redis_password`
    secret), or that answers a client without them though some are given (common/redis_open.py): whoever
    reaches it can read the raw frames and plate crops and fill the queues. The roles said nothing of it (a
    review), though they warn of an unsigned queue and of a frame store on disk."""
    from redis.connection import parse_url

    urls = {"the queues'": settings.redis_url, "the frame store's": settings.store_url}
    if settings.store_url == settings.redis_url:
        urls = {"the queues' and the frame store's": settings.redis_url}
    for what, url in urls.items():
        try:
            given = parse_url(url)
        except ValueError:  # reach_redis has said what is wrong with it
            continue
        if not (given.get("password") or given.get("username") or settings.secret("redis_password")):
            log.warning("%s Redis (%s) is reached with no password: whoever can reach it can read the raw frames"
                        " and plate crops and queue work; give it `requirepass` or an ACL user and put the"
                        " password in the URL or the `redis_password` secret", what, mask_url(url))  # fmt: skip
        elif accepts_no_password(url):
            log.warning("%s Redis at %s accepts connections without a password; the one given protects nothing:"
                        " whoever can reach it can read the raw frames and plate crops and queue work; give it"
                        " `requirepass` or an ACL user whose password that is", what, mask_url(url))  # fmt: skip
