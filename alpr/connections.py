"""The links a role or command opens, each checked as it is opened: the queues' Redis and the frame
store's, a stage's signed queue, and the Postgres pools (schema and rights checked, sessions named
after the role). The composition root (alpr/wiring.py) and the commands that need only a link open
them here."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import redis

from common import defaults
from common.config import Settings
from common.credentials import mask_url
from common.db_rights import Needs
from common.errors import ConfigError
from common.metrics import Metrics
from common.queues import StageName, StageQueue, connect_redis, stage_queue
from common.redis_eviction import check_eviction
from common.redis_persistence import check_frames_persist
from common.server_urls import tls_file_problem

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)


def signed_queue(settings: Settings, connection: redis.Redis, stage: StageName) -> StageQueue:
    """A stage's queue whose jobs are signed as they are queued and checked as they are run with the
    configured job key (ALPR_JOB_KEY), when one is set: how every role but ingest opens one."""
    return stage_queue(connection, stage, settings.secret("job_key"))


def reach_redis(
    settings: Settings, url: str | None = None, what: str = "queues", timeout_s: float = defaults.REDIS_TIMEOUT_S
) -> redis.Redis:
    """A checked connection to the queues' Redis (or, with `url`, another: the frame store's), whose
    commands wait `timeout_s` at most for an answer; refused when the queues' Redis evicts keys when full
    (common/redis_eviction.py)."""
    url = url or settings.redis_url
    if url == defaults.REDIS_URL and "ALPR_REDIS_URL" not in os.environ:
        log.info("no ALPR_REDIS_URL set: using the default %s for the %s", url, what)
    log.info("Redis for the %s: %s", what, mask_url(url))
    if problem := tls_file_problem(url):
        setting = "ALPR_REDIS_URL" if url == settings.redis_url else "ALPR_FRAME_STORE_URL"
        raise ConfigError(f"{setting}: {problem}")
    connection = connect_redis(url, settings.secret("redis_password"), timeout_s)
    try:
        connection.ping()
    except (redis.RedisError, ValueError) as error:  # ValueError: a host IDNA cannot encode (a traceback)
        raise ConfigError(f"cannot reach Redis ({what}) at {mask_url(url)}: {mask_url(str(error))}") from None
    check_eviction(connection, url, holds_queues=url == settings.redis_url)
    return connection


def reach_frame_store(
    settings: Settings, queues: redis.Redis, timeout_s: float = defaults.REDIS_TIMEOUT_S, writer: str | None = None
) -> redis.Redis:
    """The frame store's Redis: the queues' connection unless ALPR_FRAME_STORE_URL names another. When it
    writes to disk, a `writer` (the role that puts pixels there: 'ingest node', 'detector worker') is refused
    unless ALPR_FRAME_STORE_MAY_PERSIST is set, and any other role warns (common/redis_persistence.py)."""
    shared = settings.store_url == settings.redis_url
    connection = queues if shared else reach_redis(settings, settings.store_url, "frame store", timeout_s)
    check_frames_persist(connection, settings.store_url, shared, writer, settings.frame_store_may_persist)
    return connection


POOL_NAMES = {
    "OCR worker": "ocr", "redactor": "redact", "alert worker": "alert", "sighting worker": "sight",
    "status": "status", "search": "search", "watch-list command": "watchlist", "alert replay": "replay",
    "orphan replay": "replay",
}  # fmt: skip
"""The name each role's Postgres sessions carry (`alpr-ocr@host`: common/db.application_name), by the role
database_pool is given."""


def database_pool(
    settings: Settings,
    role: str,
    needs: Needs | None = None,
    session_settings: str = "",
    metrics: Metrics | None = None,
) -> ConnectionPool:
    """The Postgres pool of a role that logs there (or a command that reads it), its schema checked, and the
    rights it `needs` (table -> rights; common/db_rights.py), where given; closed again when a check fails.
    Its sessions' `session_settings` where given (else common/db.SESSION_SETTINGS), named after the role
    (POOL_NAMES). With `metrics` (a worker's), whether Postgres takes its statements is exported as
    alpr_database_up{pool} (common/db_watch.py), at 1 from now."""
    from common.db import SESSION_SETTINGS, open_pool
    from common.db_rights import require_rights
    from common.schema_upgrade import require_schema

    if not settings.database_url:
        raise ConfigError(f"the {role} needs ALPR_DATABASE_URL (or --database-url) to log to Postgres")
    pool = open_pool(
        settings.database_url,
        password=settings.secret("database_password"),
        session_settings=session_settings or SESSION_SETTINGS,
        role=POOL_NAMES.get(role, "command"),
    )
    try:
        require_schema(pool)
        if needs:
            require_rights(pool, f"the {role}", needs)
    except BaseException:
        pool.close()
        raise
    if metrics is not None:
        from common.db_watch import DatabaseWatch

        DatabaseWatch(pool, metrics, POOL_NAMES.get(role, "command"))
    return pool


def unchecked_pool(settings: Settings, role: str) -> ConnectionPool:
    """A pool on the configured Postgres, nothing in it checked: for `alpr db upgrade`, which makes the
    schema and grants the rights, and `alpr db prune`, which checks its own (common/pruner_role.py); `role`
    (upgrade, prune) names its sessions. Their lock waits are not bounded (common/db.MIGRATION_SESSION_SETTINGS).
    No URL set: refused as malformed (its callers say which variable to set first)."""
    from common.db import MIGRATION_SESSION_SETTINGS, open_pool

    return open_pool(settings.database_url or "", password=settings.secret("database_password"),
                     session_settings=MIGRATION_SESSION_SETTINGS, role=role)  # fmt: skip


def ingest_pool(settings: Settings) -> ConnectionPool:
    """An ingest node's pool (its cameras registered, its ledger's frame records written), nothing in it
    checked, opened within 3 s or not at all (common/db.CannotConnectError): a node ingests while Postgres
    is away."""
    from common.db import open_pool

    return open_pool(
        settings.database_url or "", wait_s=3, password=settings.secret("database_password"), role="ingest"
    )
