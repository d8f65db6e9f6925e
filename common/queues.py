"""The RQ queues of the chain (detect, then ocr and redact side by side), the Redis connection, and
JSON payloads (rq's JSONSerializer, never pickle), deterministic ids, retries, bounded result TTLs."""

from __future__ import annotations

import redis
from rq import Queue, Retry
from rq.job import Job as RqJob
from rq.serializers import JSONSerializer

from common import defaults
from common.jobs import AlertJob, Job, StageName, job_id
from common.stage_job import SIGNATURE, STAGE_JOB_FUNCTION, StageJob, job_signature

STAGES: tuple[StageName, ...] = ("detect", "ocr", "redact")
"""The stages frames go through: the detector hands each batch to OCR and redaction at once. Their
queues hold frames (back-pressure counts them)."""

QUEUED_STAGES: tuple[StageName, ...] = (*STAGES, "alert")
"""Every stage with a queue: the frames' three and the delivery of alerts."""

QUEUE_NAMES: dict[str, str] = {stage: f"alpr-{stage}" for stage in QUEUED_STAGES}
"""RQ queue name of each stage."""

STATS_INGESTED_KEY = "alpr:stats:ingested"
"""Redis hash: frames queued per camera (for `alpr status`)."""

STATS_SKIPPED_KEY = "alpr:stats:skipped"
"""Redis hash: frames sampled but skipped per camera (back-pressure...): `alpr status` sizes pools by
the frames offered, queued + skipped."""

STATS_UNRECORDED_KEY = "alpr:stats:unrecorded"
"""Redis hash: frames sampled per camera whose record in the frames log the ingest node could not keep
(Postgres away past its buffer, or the node stopped first): the frames log cannot show them."""

CAMERA_STATE_KEY = "alpr:cameras:state"
"""Redis hash: camera id -> JSON {state, since, errors} kept by ingest nodes, for `alpr status`."""

SIGHTING_WORKERS_KEY = "alpr:sighting-workers"
"""Redis sorted set: sighting workers (they read the logs, not a queue) scored by their last heartbeat;
`alpr status` counts those renewed within SIGHTING_HEARTBEAT_TTL_S, in one command however many keys
the frame store holds beside it."""

STATS_BUSY_KEY = "alpr:stats:busy_seconds"
"""Redis hash: seconds workers of each stage spent on jobs, all time (`alpr status` sizes pools by the
recent ones, POOL_STATS_PREFIX, and by these a pool that finished no job lately)."""

STATS_FRAMES_KEY = "alpr:stats:frames"
"""Redis hash: frames each stage's jobs handled, all time."""

POOL_STATS_PREFIX = "alpr:stats:pool:"
"""Redis hashes, one per POOL_STATS_BUCKET_S of Redis's clock (the prefix and the bucket's number):
`STAGE:busy_seconds` and `STAGE:frames` of the jobs that finished in it, expiring once out of the window."""

POOL_STATS_BUCKET_S = 600
"""Length of a pool-statistics bucket, seconds."""

POOL_STATS_WINDOW_S = 3600
"""`alpr status` sizes the pools by their last hour of work: a new model, a GPU in place of a CPU or a
busier hour shows within it, where the all-time totals carried a month of the old cost."""


STATS_DONE_KEY = "alpr:stats:done"
"""Redis hash: frames through the whole chain per camera (for `alpr status`)."""

RETRIES = Retry(max=defaults.JOB_RETRIES)
"""A failed job is queued again twice (a Postgres restart, say) before it lands in the failed registry.
No interval: intervals need RQ's scheduler process, whose shutdown can hang a stopping worker."""


def connect_redis(url: str, password: str | None = None, timeout_s: float = defaults.REDIS_TIMEOUT_S) -> redis.Redis:
    """A Redis client with timeouts, so a dead server is an error, not a hang. `password` is used
    when the URL carries none."""
    return redis.Redis.from_url(
        url, password=password, socket_connect_timeout=5, socket_timeout=timeout_s, health_check_interval=30
    )


def redis_now(connection: redis.Redis) -> float:
    """Redis's clock, in seconds: the one clock every host of the chain shares."""
    seconds, microseconds = connection.time()
    return seconds + microseconds / 1e6


BEAT_MEMBER = """
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
for i, kind in ipairs({'zset', 'hash'}) do
    local found = redis.call('TYPE', KEYS[i])['ok']
    if found ~= kind and found ~= 'none' then
        redis.call('DEL', KEYS[i])
    end
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local oldest = '(' .. string.format('%.6f', now - ttl)
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', oldest, 'LIMIT', 0, 1000)) do
    redis.call('HDEL', KEYS[2], name)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', oldest)
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], math.ceil(2 * ttl))
redis.call('EXPIRE', KEYS[2], math.ceil(2 * ttl))
return 0
"""
"""One member's beat, in one step: KEYS the members' sorted set and their entries' hash (SETTINGS_SUFFIX);
ARGV the member, Redis's time, the TTL and its entry ('' for none). Members silent past the TTL are
forgotten with their entries; both keys are gone once every member is. A key of another type (written by a
client of Redis: no member writes one) is replaced: `SET alpr:ingest-nodes x` failed every beat."""

SETTINGS_SUFFIX = ":settings"
"""A members' sorted set's hash of their published settings (common/role_settings.py) has its key and this."""

INGEST_NODES_KEY = "alpr:ingest-nodes"
"""Redis sorted set: ingest nodes scored by their last claim on their cameras (ingest/claims.py), which
is their heartbeat; beside it their settings (`alpr status` compares them)."""


def beat_member(connection: redis.Redis, members_key: str, name: str, ttl_s: float, entry: str | None = None) -> None:
    """Marks member `name` of a pool alive by Redis's clock (hosts' clocks need not agree), with the
    settings `entry` it publishes (kept from its last beat when None), and forgets members silent for
    longer than `ttl_s`."""
    keys = (members_key, members_key + SETTINGS_SUFFIX)
    connection.eval(BEAT_MEMBER, 2, *keys, name, f"{redis_now(connection):.6f}", ttl_s, entry or "")


def leave(connection: redis.Redis, members_key: str, name: str) -> None:
    """Member `name` stopped: no longer counted, its entry gone (a killed one ages out)."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.zrem(members_key, name)
        pipe.hdel(members_key + SETTINGS_SUFFIX, name)
        pipe.execute()


def beat_sighting_worker(connection: redis.Redis, name: str, entry: str | None = None) -> None:
    """Marks sighting worker `name` alive (`beat_member`)."""
    beat_member(connection, SIGHTING_WORKERS_KEY, name, defaults.SIGHTING_HEARTBEAT_TTL_S, entry)


def live_sighting_workers(connection: redis.Redis) -> int:
    """Sighting workers whose heartbeat is at most SIGHTING_HEARTBEAT_TTL_S old (by Redis's clock)."""
    now = redis_now(connection)
    return int(connection.zcount(SIGHTING_WORKERS_KEY, now - defaults.SIGHTING_HEARTBEAT_TTL_S, "+inf"))


MAX_MEMBERS_READ = 1000
"""The most live members of one pool whose settings `live_members` reads."""


MEMBER_SCORE_SKEW_S = 5.0
"""How far past Redis's clock a live member's score may lie: members are scored with Redis's own time
(`beat_member`), so one scored later was written by another client, and never lapsed (a review)."""


def live_members(connection: redis.Redis, members_key: str, ttl_s: float) -> list[str]:
    """The names of the members whose heartbeat is at most `ttl_s` old (by Redis's clock) and not later
    than it (MEMBER_SCORE_SKEW_S), at most MAX_MEMBERS_READ; a name that is not UTF-8 is no member of ours."""
    now = redis_now(connection)
    found = connection.zrangebyscore(members_key, now - ttl_s, now + MEMBER_SCORE_SKEW_S, start=0, num=MAX_MEMBERS_READ)
    names = []
    for name in found:
        try:
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        except UnicodeDecodeError:
            continue
    return names


class StageQueue(Queue):
    """A stage's queue, with the key its jobs are signed with and checked by (None: neither)."""

    job_key: str | None = None


def stage_queue(connection: redis.Redis, stage: str, job_key: str | None = None) -> StageQueue:
    """A stage's queue; its jobs (and its registries' cleaning) are StageJobs: only our function runs,
    and with `job_key` (ALPR_JOB_KEY), only jobs signed with it."""
    queue = StageQueue(QUEUE_NAMES[stage], connection=connection, serializer=JSONSerializer, job_class=StageJob)
    queue.job_key = job_key
    return queue


def queue_keys(stages: tuple[StageName, ...] = STAGES) -> dict[str, str]:
    """Redis list key of each stage's queue (by default the queues that hold frames)."""
    return {stage: Queue.redis_queue_namespace_prefix + QUEUE_NAMES[stage] for stage in stages}


def enqueue(queue: Queue, job: Job, timeout_s: int, pipeline: redis.client.Pipeline | None = None) -> str:
    """Put a job on its stage's queue under a deterministic id; returns the id. With `pipeline`, the job
    is queued when the caller executes it (jobs handed on together: all of them or none). A record left
    under the id is replaced whole, in the same transaction: RQ writes only the fields it has, and a
    batch sent again kept the old record's meta (marked permanent by a rejection: never retried, never
    replayed) or a planted webhook."""
    identifier = job_id(job.stage, job.batch_id)
    if pipeline is None:
        with queue.connection.pipeline() as own:
            enqueue(queue, job, timeout_s, own)
            own.execute()
        return identifier
    if not pipeline.explicit_transaction:  # as RQ would, before our first command
        pipeline.multi()
    pipeline.delete(RqJob.key_for(identifier))
    payload = job.model_dump(mode="json")
    key = queue.job_key if isinstance(queue, StageQueue) else None
    queue.enqueue_call(
        func=STAGE_JOB_FUNCTION,
        args=(payload,),
        meta={SIGNATURE: job_signature(key, identifier, payload)} if key else None,
        job_id=identifier,
        timeout=timeout_s,
        result_ttl=defaults.RESULT_TTL_S,
        failure_ttl=defaults.FAILURE_TTL_S,
        retry=RETRIES,
        description=f"{job.stage} {len(job.frames)} frames" if not isinstance(job, AlertJob) else "alert",
        pipeline=pipeline,
    )
    return identifier


def add_stats(
    connection: redis.Redis,
    counts: dict[str, dict[str, int]],
    seconds: dict[str, dict[str, float]] | None = None,
    pipeline: redis.client.Pipeline | None = None,
) -> None:
    """Add to the statistics hashes `alpr status` reads (hash key -> field -> amount): whole counts, and
    seconds. Executed at once in one round trip, or added to the caller's `pipeline`. Statistics only:
    a Redis error is the caller's to log, never a job's failure."""
    pipe = pipeline if pipeline is not None else connection.pipeline(transaction=False)
    for key, whole in counts.items():
        for name, count in whole.items():
            pipe.hincrby(key, name, count)
    for key, fractional in (seconds or {}).items():
        for name, value in fractional.items():
            pipe.hincrbyfloat(key, name, value)
    if pipeline is None:
        pipe.execute()


def pool_stats_buckets(now_s: float) -> list[str]:
    """The keys of the buckets that make up the window ending at `now_s`, oldest first (the oldest may
    reach up to a bucket further back)."""
    last = int(now_s // POOL_STATS_BUCKET_S)
    first = int((now_s - POOL_STATS_WINDOW_S) // POOL_STATS_BUCKET_S)
    return [f"{POOL_STATS_PREFIX}{bucket}" for bucket in range(first, last + 1)]


def add_pool_stats(pipe: redis.client.Pipeline, stage: str, busy_s: float, frames: int, now_s: float) -> None:
    """Add a finished job's seconds and frames to its pool's current bucket (on `pipe`, executed by the
    caller), which expires once the window has passed it."""
    key = pool_stats_buckets(now_s)[-1]
    pipe.hincrbyfloat(key, f"{stage}:busy_seconds", busy_s)
    pipe.hincrby(key, f"{stage}:frames", frames)
    pipe.expire(key, POOL_STATS_WINDOW_S + 2 * POOL_STATS_BUCKET_S)
