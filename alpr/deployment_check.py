"""At a role's start: whether the queues' Redis serves another deployment. The role's own identity
(common/deployment.py) is compared with those the live members of every pool publish with their heartbeats
(an RQ worker's registration, the sighting workers' and ingest nodes' entries: alpr/pool_settings.py); a
role that differs from a live one refuses to start, a command only warns; one that differs only from
the last role of a kind to start (its job-key entry, common/job_key.py) is warned of. Two deployments on
one Redis (the default redis://127.0.0.1:6379/0 suffices) did each other's work, and no role said so (a
review).

Anyone who can write to that Redis can publish a member, and a forged one (scored far in the future, or a
registration with no TTL) made every role refuse to start, for good (a review). So a member counts only
while it looks live as a real one does (common/queues.py live_members; `live_registrations`), and where
this role has a job key only an entry signed with it (common/deployment.py) refuses its start: that is two
deployments sharing one key, whose jobs cross silently; another is an ERROR. A role without a job key
refuses for any live member (its Redis is trusted anyway: unsigned jobs are taken from it). Members that
differ only by the Postgres server (the same database and schema: a dump restored, a cutover to a new
cluster) are warned of: a rolling restart onto a moved Postgres stalled."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import psycopg
import redis
from rq.defaults import DEFAULT_JOB_MONITORING_INTERVAL
from rq.utils import utcparse
from rq.worker import Worker

from alpr.pool_settings import BEATING, PoolSettings, pool_settings, shown_names
from alpr.status_reads import WORKER_FIELD_BYTES, registered_workers
from common import defaults
from common.bounded_hash import read_many_within_bounds
from common.config import Settings
from common.credentials import escape_controls, mask_url
from common.deployment import PARTS, Deployment, deployment_of, signed_with
from common.errors import ConfigError
from common.job_key import published as last_started
from common.queues import QUEUE_NAMES, QUEUED_STAGES, SETTINGS_SUFFIX, redis_now

log = logging.getLogger(__name__)

OPEN_WAIT_S = 3.0
"""The longest wait for Postgres to read the identity from (an ingest node starts while it is away)."""

MEMBERS_NAMED = 4
"""Differing members named in a message (the rest counted)."""

REGISTRATION_TTL_S = max(defaults.WORKER_MAINTENANCE_S + 15, DEFAULT_JOB_MONITORING_INTERVAL) + 60
"""The longest TTL a live worker's registration holds: RQ gives it its worker_ttl + 60 at each heartbeat
(common/worker.py: worker_ttl is the maintenance interval + 15), its job monitoring interval + 60 while it
runs a job."""

REGISTRATION_SKEW_S = 5.0
"""Slack on REGISTRATION_TTL_S where a registration's TTL is read."""

HOST_CLOCK_SKEW_S = 120.0
"""How far a worker host's clock, by which RQ writes `last_heartbeat`, may be from Redis's."""

SERVER_ONLY = [PARTS["server"]]
"""The parts differing where a member logs to the same database and schema on another Postgres server."""


@dataclass(frozen=True)
class Differing:
    """A live member of another deployment: its pool, its name, the Redis key its entry is in, its
    identity, the parts that differ, and whether its entry is vouched for (signed with this role's job
    key, or this role has none)."""

    pool: str
    member: str
    key: str
    deployment: Deployment
    parts: list[str]
    vouched: bool = True

    def describe(self) -> str:
        """`sight host-12-ab (in alpr:sighting-workers:settings; ALPR_DEPLOYMENT north, Postgres ...;
        schema differ)`."""
        return (
            f"{self.pool} {self.member} (in {self.key}; {self.deployment.describe()};"
            f" {' and '.join(self.parts)} differ)"
        )


def entry_key(pool: str, member: str) -> str:
    """The Redis key holding `pool` member `member`'s entry: its pool's hash of entries (a field named as
    it), or an RQ worker's registration (its SETTINGS_FIELD)."""
    if pool in BEATING:
        return BEATING[pool][0] + SETTINGS_SUFFIX
    return Worker.redis_worker_namespace_prefix + member


def heartbeat_s(raw: bytes | None) -> float | None:
    """A registration's `last_heartbeat` (RQ's date, UTC) in seconds since the epoch; None for none."""
    try:
        return utcparse(raw.decode()).timestamp() if raw else None
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None


def live_registrations(connection: redis.Redis, keys: list[str]) -> list[str]:
    """The worker registrations among `keys` that look live as a real one does: a TTL of at most the
    longest RQ gives one (REGISTRATION_TTL_S) and a last heartbeat within it (by the host's clock,
    HOST_CLOCK_SKEW_S). A hash written with no TTL, listed in a queue's worker set, never lapsed."""
    if not keys:
        return []
    now_s = redis_now(connection)
    with connection.pipeline(transaction=False) as pipeline:
        for key in keys:
            pipeline.pttl(key)
        ttls_ms = pipeline.execute()
    beats = read_many_within_bounds(connection, keys, {"last_heartbeat": WORKER_FIELD_BYTES})
    live = []
    for key, ttl_ms, fields in zip(keys, ttls_ms, beats, strict=True):
        if fields is None or fields.over or not 0 < ttl_ms <= (REGISTRATION_TTL_S + REGISTRATION_SKEW_S) * 1000:
            continue
        beat_s = heartbeat_s(fields.values.get("last_heartbeat"))
        oldest_s = now_s - REGISTRATION_TTL_S - HOST_CLOCK_SKEW_S
        if beat_s is not None and oldest_s <= beat_s <= now_s + HOST_CLOCK_SKEW_S:
            live.append(key)
    return live


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


def live_differing(connection: redis.Redis, mine: Deployment, job_key: str | None = None) -> list[Differing]:
    """The live members of every pool whose published identity differs from `mine` in a part both know,
    each vouched for where this role has no job key or its entry is signed with `job_key`."""
    worker_keys: dict[str, list[str]] = {
        stage: live_registrations(connection, registered_workers(connection, QUEUE_NAMES[stage]).keys)
        for stage in QUEUED_STAGES
    }
    found = []
    for pool in pool_settings(connection, worker_keys):
        for member, published in sorted(pool.members.items()):
            if published is None or published.deployment is None:
                continue
            theirs = published.deployment
            if parts := mine.differing(theirs):
                vouched = job_key is None or signed_with(job_key, pool.pool, theirs, published.signature)
                found.append(Differing(pool.pool, member, entry_key(pool.pool, member), theirs, parts, vouched))
    return found


def named(differing: list[Differing]) -> str:
    """The first MEMBERS_NAMED of `differing` described, the rest counted."""
    more = f" and {len(differing) - MEMBERS_NAMED} more" if len(differing) > MEMBERS_NAMED else ""
    return ", ".join(entry.describe() for entry in differing[:MEMBERS_NAMED]) + more


def check_deployment(settings: Settings, connection: redis.Redis, role: str | None) -> Deployment:
    """This role's identity, once compared with the live members' of the queues' Redis `connection`: a
    ConfigError where one vouched for differs, naming what differs and where (a command, `role` None, warns
    only); an ERROR for one not vouched for, a WARNING for one on another Postgres server only. A Redis
    that cannot be read is warned of, and the role starts (its workers say so soon enough)."""
    mine = own_deployment(settings, role)
    try:
        differing = live_differing(connection, mine, settings.secret("job_key"))
    except redis.RedisError as error:
        log.warning("could not compare the deployment with the other roles' (%s)", mask_url(str(error)))
        return mine
    if not differing:
        warn_if_last_started_differ(connection, mine, role)
        return mine
    this = f"this {role or 'command'}"
    moved: list[Differing] = []
    unvouched: list[Differing] = []
    refusing: list[Differing] = []
    for entry in differing:
        (moved if entry.parts == SERVER_ONLY else refusing if entry.vouched else unvouched).append(entry)
    if moved:
        log.warning("live roles log to the same Postgres database and schema as %s (%s) on another server: %s. A"
                    " Postgres moved while they run (a dump restored, a cutover to a new cluster)? If not, give"
                    " each deployment its own Redis or Redis database number (redis://host:6379/N in"
                    " ALPR_REDIS_URL)", this, mine.shown, named(moved))  # fmt: skip
    if unvouched:
        log.error("the queues' Redis (ALPR_REDIS_URL) lists live members of another deployment whose entries are"
                  " not signed with %s's job key (ALPR_JOB_KEY): %s. Not refused: written by another client of"
                  " Redis (delete those entries), or of a deployment with another job key (or an older version)"
                  " on this Redis, whose jobs this deployment's workers refuse; give each deployment its own"
                  " Redis or Redis database number (redis://host:6379/N in ALPR_REDIS_URL)",
                  this, named(unvouched))  # fmt: skip
    if not refusing:
        return mine
    message = (
        f"the queues' Redis (ALPR_REDIS_URL) serves another deployment: {this}"
        f" ({mine.shown}; {mine.describe()}) differs from the live {named(refusing)}. Roles of two deployments on"
        " one Redis take each other's jobs (frames logged, matched and alerted on in the wrong Postgres, the"
        " others lost): give each deployment its own Redis or Redis database number (redis://host:6379/N in"
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
