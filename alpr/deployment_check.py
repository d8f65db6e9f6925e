"""At a role's start: whether the queues' Redis serves another deployment. The role's own identity
(common/deployment.py) is compared with those the live members of every pool publish with their heartbeats
(an RQ worker's registration, the sighting workers' and ingest nodes' entries: alpr/pool_settings.py); a
role that differs from a live one refuses to start, a command only warns; one that differs only from
the last role of a kind to start (its job-key entry, common/job_key.py) is warned of. Two deployments on
one Redis (the default redis://127.0.0.1:6379/0 suffices) did each other's work, and no role said so (a
review)."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import psycopg
import redis

from alpr.pool_settings import PoolSettings, pool_settings, shown_names
from alpr.status_reads import registered_workers
from common.config import Settings
from common.credentials import escape_controls, mask_url
from common.deployment import Deployment, deployment_of
from common.errors import ConfigError
from common.job_key import published as last_started
from common.queues import QUEUE_NAMES, QUEUED_STAGES, redis_now

log = logging.getLogger(__name__)

OPEN_WAIT_S = 3.0
"""The longest wait for Postgres to read the identity from (an ingest node starts while it is away)."""

MEMBERS_NAMED = 4
"""Differing members named in a message (the rest counted)."""


@dataclass(frozen=True)
class Differing:
    """A live member of another deployment: its pool, its name, its identity and the parts that differ."""

    pool: str
    member: str
    deployment: Deployment
    parts: list[str]

    def describe(self) -> str:
        """`sight worker host-12-ab (ALPR_DEPLOYMENT north, Postgres .../...; schema differs)`."""
        return f"{self.pool} {self.member} ({self.deployment.describe()}; {' and '.join(self.parts)} differ)"


def own_deployment(settings: Settings, role: str | None) -> Deployment:
    """This role's identity: ALPR_DEPLOYMENT, and where it logs to Postgres, that Postgres read through a
    connection of its own (closed at once). A Postgres that does not answer within OPEN_WAIT_S leaves its
    parts out, said at WARNING: the role goes on as it would have (its own pool tells an outage)."""
    from common.db import CannotConnectError, open_pool

    if not settings.database_url:
        return deployment_of(settings.deployment, None)
    try:
        pool = open_pool(settings.database_url, max_size=1, wait_s=OPEN_WAIT_S,
                         password=settings.secret("database_password"), role=role or "command")  # fmt: skip
    except CannotConnectError as error:
        log.warning("the deployment could not be read from Postgres (%s): only ALPR_DEPLOYMENT is compared with the"
                    " other roles'", mask_url(str(error)))  # fmt: skip
        return deployment_of(settings.deployment, None)
    try:
        with pool.connection() as connection:
            return deployment_of(settings.deployment, connection)
    except psycopg.Error as error:  # a check only: the role's own pool tells what is wrong
        log.warning("the deployment could not be read from Postgres (%s): only ALPR_DEPLOYMENT is compared with the"
                    " other roles'", mask_url(str(error)[:200]))  # fmt: skip
        return deployment_of(settings.deployment, None)
    finally:
        pool.close()


def live_differing(connection: redis.Redis, mine: Deployment) -> list[Differing]:
    """The live members of every pool whose published identity differs from `mine` in a part both know."""
    worker_keys: dict[str, list[str]] = {
        stage: registered_workers(connection, QUEUE_NAMES[stage]).keys for stage in QUEUED_STAGES
    }
    found = []
    for pool in pool_settings(connection, worker_keys):
        for member, published in sorted(pool.members.items()):
            theirs = published.deployment if published is not None else None
            if theirs is not None and (parts := mine.differing(theirs)):
                found.append(Differing(pool.pool, member, theirs, parts))
    return found


def check_deployment(settings: Settings, connection: redis.Redis, role: str | None) -> Deployment:
    """This role's identity, once compared with the live members' of the queues' Redis `connection`: a
    ConfigError where one differs, naming what differs (a command, `role` None, warns only). A Redis that
    cannot be read is warned of, and the role starts (its workers say so soon enough)."""
    mine = own_deployment(settings, role)
    try:
        differing = live_differing(connection, mine)
    except redis.RedisError as error:
        log.warning("could not compare the deployment with the other roles' (%s)", mask_url(str(error)))
        return mine
    if not differing:
        warn_if_last_started_differ(connection, mine, role)
        return mine
    named = ", ".join(entry.describe() for entry in differing[:MEMBERS_NAMED])
    more = f" and {len(differing) - MEMBERS_NAMED} more" if len(differing) > MEMBERS_NAMED else ""
    message = (
        f"the queues' Redis (ALPR_REDIS_URL) serves another deployment: this {role or 'command'}"
        f" ({mine.shown}; {mine.describe()}) differs from the live {named}{more}. Roles of two deployments on one"
        " Redis take each other's jobs (frames logged, matched and alerted on in the wrong Postgres, the others"
        " lost): give each deployment its own Redis or Redis database number (redis://host:6379/N in"
        " ALPR_REDIS_URL), or give this role the same Postgres database and schema (and ALPR_DEPLOYMENT) as the"
        " others. A member killed without stopping is listed until its heartbeat lapses"
    )
    if role is None:
        log.warning("%s", message)
        return mine
    raise ConfigError(message)


def warn_if_last_started_differ(connection: redis.Redis, mine: Deployment, role: str | None) -> None:
    """A WARNING for each role whose last to start on this Redis (its job-key entry: common/job_key.py) was
    of another deployment, though no live member differs: an ingest node of it that ended left its jobs
    queued, and this deployment's workers take them (the review's case). This role's own earlier run on
    this host is left out (restarted with its deployment changed)."""
    host = escape_controls(socket.gethostname()[:64])
    try:
        entries, now_s = last_started(connection), redis_now(connection)
    except redis.RedisError as error:
        log.warning("could not compare the deployment with the roles last started (%s)", mask_url(str(error)))
        return
    for entry in entries:
        if entry.deployment is None or (entry.role == role and entry.host == host):
            continue
        if parts := mine.differing(entry.deployment):
            log.warning("the last %s to start on the queues' Redis was of another deployment (%s; %s differ from"
                        " this %s's, %s), though no live role publishes it now: the jobs it queued are taken by"
                        " this deployment's roles, and any it queues again; give each deployment its own Redis or"
                        " Redis database number (redis://host:6379/N in ALPR_REDIS_URL)", entry.describe(now_s),
                        entry.deployment.describe(), " and ".join(parts), role or "command", mine.shown)  # fmt: skip


def mixed_deployments(pools: list[PoolSettings]) -> str | None:
    """`alpr status`: the live members grouped by the identity they publish, where two groups differ in a
    part both know (`ALPR_DEPLOYMENT north, Postgres .../.../...: ingest host-1-..., sight ...`), else None."""
    groups: dict[Deployment, list[str]] = {}
    for pool in pools:
        for member, published in sorted(pool.members.items()):
            if published is not None and published.deployment is not None:
                groups.setdefault(published.deployment, []).append(f"{pool.pool} {member}")
    if not any(mine.differing(theirs) for mine in groups for theirs in groups):
        return None
    return "; ".join(f"{deployment.describe()}: {shown_names(names)}" for deployment, names in groups.items())
