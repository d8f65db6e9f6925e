"""`alpr status`: what an operator checks first — queues, workers and failures; per camera its state,
source errors, frames/s queued, skipped and done, and the frames whose record the ingest node could not
keep (unrecorded: the frames log cannot show them); per pool the workers the frames offered need; the
roles whose job keys differ, if any (common/job_key.py); the frame store at or near its maxmemory
(alpr/status_store.py); per pool whether its live members run with the same settings that change results
(alpr/pool_settings.py); and, with a database, every sampled frame accounted for (or still in the chain).
`--json`: the queues, the workers, the cameras their nodes judge silent, the frame store's memory and the
pools' settings as one JSON object (no rates nor the other cameras' states), and with a database the
accounting per camera (alpr/status_accounting.py) and the frames in no job.

A pool whose members disagree is a warning: shown, told on stderr, and the exit status stays 0 (as a job
key differing between roles is, or a listing cut at its most: alpr/status_reads.py); 2 says that the queues'
Redis could not be read, or that a key of the chain's there holds another type than the chain writes (each
such key named on stderr in one line, what status reads there left out, the rest shown), or, with `alpr:
error:`, that the frames log in Postgres could not be: Postgres unreachable, its schema not current, or a
statement of the frames-log part unanswered within STATUS_STATEMENT_TIMEOUT_S (behind a lock it hung until
killed, a review) ends it so, the chain's part already shown: a check that read half of what it was asked
for does not pass. `--json` exits 2 the same way, the keys listed under `unreadable_keys`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from functools import partial
from typing import Any

import redis
from rq.serializers import JSONSerializer

from alpr.connections import reach_redis
from alpr.deployment_check import mixed_deployments
from alpr.pool_settings import POOLS, PoolSettings, one_pool, pool_keys
from alpr.pool_sizing import pool_work as pool_work  # where the tests and detector_worker read it
from alpr.pool_sizing import print_pool_sizes
from alpr.pool_sizing import workers_needed as workers_needed
from alpr.status_accounting import accounting_document, print_accounting
from alpr.status_cameras import camera_states, shown_state, silent_document, silent_for, silent_meaning, text
from alpr.status_orphans import orphans_document, print_orphans
from alpr.status_reads import (
    MAX_CAMERAS_READ,
    STAT_BYTES,
    QueueRow,
    WrongTypes,
    camera_fields,
    cut_short,
    number,
    queue_row,
    tell_unread_members,
    unclaimed_cameras,
)
from alpr.status_store import store_document, store_room
from common import queues
from common.bounded_scan import Fields
from common.config import Settings
from common.credentials import mask_url
from common.errors import AlprError, ConfigError
from common.job_key import FINGERPRINTS_KEY
from common.job_key import disagreement as key_disagreement
from common.jobs import DetectJob, StageName, parse_job
from common.queues import QUEUED_STAGES, StageJob, stage_queue


def status(args: argparse.Namespace, settings: Settings) -> int:
    """The chain's state (queues' Redis), then with a database the frames log's accounting. With Redis
    unreachable the accounting is still shown (it said only "cannot reach Redis", just when an operator
    needs to know what the frames log holds), and the exit status is 2."""
    if getattr(args, "json", False):
        return print_document(settings, args.hours * 3600)
    try:
        types = print_chain(args, settings)
    except (ConfigError, redis.RedisError) as error:
        if not settings.database_url:
            raise
        print(f"alpr: {mask_url(str(error))}; the frames log follows", file=sys.stderr)
        print_accounting(settings, args.hours * 3600)
        return 2
    if settings.database_url:
        print_accounting(settings, args.hours * 3600)
        print_orphans(settings, args.hours * 3600)
    return 2 if types.found else 0


def print_document(settings: Settings, window_s: float) -> int:
    """`alpr status --json`: the chain's document, and with a database (`--database-url` or ALPR_DATABASE_URL,
    ignored here without a word before) its `accounting` and `frames_in_no_job` of the last `window_s`
    seconds. The exit status as the text's: 2 for keys of another type, or a frames log that could not be
    read (then both are null, the document printed all the same, and the `alpr: error:` line on stderr).
    With the queues' Redis unreachable it ends as before (`alpr: error:`, exit 2): no document."""
    import psycopg

    from alpr.cli import one_line_error

    document, failed = chain_document(settings), None
    if settings.database_url:
        try:
            document["accounting"] = accounting_document(settings, window_s)
            document["frames_in_no_job"] = orphans_document(settings, window_s)
        except AlprError as error:  # as alpr/cli.py tells it
            document["accounting"] = document["frames_in_no_job"] = None
            failed = f"alpr: error: {mask_url(str(error))}"
        except psycopg.Error as error:
            document["accounting"] = document["frames_in_no_job"] = None
            failed = one_line_error(error, settings.database_url)
    print(json.dumps(document, indent=2, sort_keys=True))
    if failed:
        print(failed, file=sys.stderr)
    return 2 if document["unreadable_keys"] or failed else 0


def print_chain(args: argparse.Namespace, settings: Settings) -> WrongTypes:
    """Queues, workers, cameras and pool sizes, from the queues' Redis; the keys found holding another
    type than the chain writes (each told on stderr, what status reads there left out)."""
    connection = reach_redis(settings)
    types = WrongTypes(connection)
    keys = (queues.STATS_INGESTED_KEY, queues.STATS_SKIPPED_KEY, queues.STATS_DONE_KEY, queues.STATS_UNRECORDED_KEY)
    first = [camera_fields(connection, types, key, STAT_BYTES) for key in keys]
    time.sleep(args.interval)
    then = [camera_fields(connection, types, key, STAT_BYTES) for key in keys]
    print(f"{'queue':<8} {'waiting':>7} {'running':>7} {'workers':>7} {'failed':>6}")
    rows: dict[str, QueueRow] = {stage: queue_row(connection, types, stage) for stage in QUEUED_STAGES}
    worker_keys = {stage: row.workers.keys if row.workers else [] for stage, row in rows.items()}
    workers: dict[StageName, int | str] = {stage: rows[stage].worker_count for stage in QUEUED_STAGES}
    for stage, row in rows.items():
        waiting, running, failed = row.counts or ("?", "?", "?")
        print(f"{stage:<8} {waiting:>7} {running:>7} {row.worker_count:>7} {failed:>6}")
    tell_unread_members(rows)
    sighting_workers = types.read(
        {queues.SIGHTING_WORKERS_KEY: "zset"}, partial(queues.live_sighting_workers, connection), "?"
    )
    print(f"sighting workers (no queue: they read the logs): {sighting_workers}")
    store = frame_ttls(settings, connection)
    print(f"oldest waiting frame: {oldest_waiting(connection, store)}")
    if room := store_room(store):  # at or near its maxmemory: the crops' reserve, and what it means
        print(room)
    differing = types.read({FINGERPRINTS_KEY: "hash"}, partial(key_disagreement, connection), None)
    if differing:  # every job between them refused, its frames lost
        print(f"job keys differ between roles (ALPR_JOB_KEY: each refuses the others' jobs): {differing}")
    offered_fps = print_cameras(connection, types, args.interval, first, then)
    print_unclaimed_cameras(connection, types)
    queued: dict[StageName, int] = {stage: sum(counts[:2]) for stage in QUEUED_STAGES  # waiting + running: a backlog
                                    if (counts := rows[stage].counts)}  # fmt: skip
    types.read(pool_stats_keys(connection), partial(print_pool_sizes, connection, offered_fps, workers, queued), None)
    pools = guarded_pool_settings(connection, types, worker_keys)
    if deployments := mixed_deployments(pools):  # each takes the others' jobs (alpr/deployment_check.py)
        print(f"roles of two deployments share this Redis (each takes the others' jobs; give each its own Redis or"
              f" Redis database number): {deployments}")  # fmt: skip
    print_pool_settings(pools)
    return types


def print_cameras(
    connection: redis.Redis, types: WrongTypes, interval_s: float, first: list[Fields], then: list[Fields]
) -> float:
    """Per camera its state and its counts' rates over `interval_s` (`first` and `then`: each count's
    hash read, camera -> count); at most MAX_CAMERAS_READ cameras, the rest counted. The frames/s the
    cameras offer (queued + skipped)."""
    stored, states = camera_states(connection, types)
    cameras = sorted({k for table in then for k in table.values} | set(states))  # shown by text(), looked up as is
    if cameras:
        print(f"\n{'camera':<20} {'state':<16} {'errors':>6} {'in fps':>7} {'skip fps':>8} {'out fps':>7} "
              f"{'queued':>8} {'skipped':>8} {'done':>8} {'unrecorded':>10}")  # fmt: skip
    offered_fps, now = 0.0, time.time()
    for key in cameras[:MAX_CAMERAS_READ]:
        rates = [(number(b.values.get(key)) - number(a.values.get(key))) / interval_s
                 for a, b in zip(first, then, strict=True)]  # fmt: skip
        totals = [int(number(table.values.get(key))) for table in then]
        state, camera = states.get(key, {}), text(key)
        offered_fps += rates[0] + rates[1]  # the pools must keep up with what cameras offer, skipped too
        print(f"{camera:<20} {shown_state(state, now):<16} {state.get('errors', 0):>6} {rates[0]:>7.1f} "
              f"{rates[1]:>8.1f} {rates[2]:>7.1f} {totals[0]:>8} {totals[1]:>8} {totals[2]:>8} "
              f"{totals[3]:>10}")  # fmt: skip
    if any(silent_for(states.get(key, {}), now) is not None for key in cameras[:MAX_CAMERAS_READ]):
        print(silent_meaning())
    for line in cut_short([*then, stored], len(cameras)):
        print(line)
    return offered_fps


def pool_stats_keys(connection: redis.Redis) -> dict[str | bytes, str]:
    """The hashes the pools are sized by (`pool_work`)."""
    buckets = queues.pool_stats_buckets(queues.redis_now(connection))
    return dict.fromkeys([queues.STATS_BUSY_KEY, queues.STATS_FRAMES_KEY, *buckets], "hash")


def guarded_pool_settings(
    connection: redis.Redis, types: WrongTypes, worker_keys: dict[str, list[str]]
) -> list[PoolSettings]:
    """`pool_settings`, each pool read apart: one whose keys hold another type is shown with no members."""
    return [
        types.read(
            pool_keys(pool, worker_keys), partial(one_pool, connection, pool, worker_keys), PoolSettings(pool, {})
        )
        for pool in POOLS
    ]


def print_pool_settings(pools: list[PoolSettings]) -> None:
    """Per pool with live members, whether they publish the same settings that change results; a mixed
    pool told on stderr too (the exit status stays 0: a warning)."""
    shown = [pool for pool in pools if pool.members]
    if shown:
        print("\nsettings that change results, per pool (common/role_settings.py):")
    for pool in shown:
        print(pool.line())
    if mixed := [pool.pool for pool in shown if pool.mixed]:
        print(f"alpr: warning: members of the {', '.join(mixed)} pool{'s' if len(mixed) > 1 else ''} run with"
              " different settings that change results (`alpr status` lists them)", file=sys.stderr)  # fmt: skip


def chain_document(settings: Settings) -> dict[str, Any]:
    """`alpr status --json`: per queue its jobs and workers, the live sighting workers, the cameras their nodes
    judge silent (alpr/status_cameras.py), the frame store's memory (alpr/status_store.py), the roles whose
    job keys differ, the live members of two deployments (`deployments_differ`), and per pool its members'
    settings (`mixed`: the pools whose members disagree)."""
    connection = reach_redis(settings)
    types = WrongTypes(connection)
    document: dict[str, Any] = {"queues": {}}
    rows: dict[str, QueueRow] = {stage: queue_row(connection, types, stage) for stage in QUEUED_STAGES}
    worker_keys = {stage: row.workers.keys if row.workers else [] for stage, row in rows.items()}
    for stage, row in rows.items():
        waiting, running, failed = row.counts or (None, None, None)
        workers = row.worker_count if row.workers else None
        document["queues"][stage] = {"waiting": waiting, "running": running, "workers": workers, "failed": failed}
    tell_unread_members(rows)
    document["sighting_workers"] = types.read(
        {queues.SIGHTING_WORKERS_KEY: "zset"}, partial(queues.live_sighting_workers, connection), None
    )
    document["silent_cameras"] = silent_document(camera_states(connection, types)[1], time.time())
    document["frame_store"] = store_document(frame_ttls(settings, connection))
    document["job_keys_differ"] = types.read({FINGERPRINTS_KEY: "hash"}, partial(key_disagreement, connection), None)
    pools = [pool for pool in guarded_pool_settings(connection, types, worker_keys) if pool.members]
    document["deployments_differ"] = mixed_deployments(pools)
    document["pools"] = {pool.pool: pool.as_dict() for pool in pools}
    document["mixed"] = [pool.pool for pool in pools if pool.mixed]
    document["unreadable_keys"] = dict(sorted(types.found.items()))
    return document


def print_unclaimed_cameras(connection: redis.Redis, types: WrongTypes) -> None:
    """The cameras no live ingest node claims (alpr/status_reads.py), listed when there are any."""
    unclaimed = unclaimed_cameras(connection, types)
    if unclaimed.cameras or unclaimed.too_long or not unclaimed.complete:
        print("\ncameras no live ingest node claims (sampled by none):")
        print("\n".join(unclaimed.lines()))


def frame_ttls(settings: Settings, connection: redis.Redis) -> redis.Redis | None:
    """The frame store's Redis, to age waiting frames by (their keys' TTLs); None where it is not reached."""
    if settings.store_url == settings.redis_url:
        return connection
    try:
        return reach_redis(settings, settings.store_url, "frame store")
    except ConfigError:
        return None


def oldest_waiting(connection: redis.Redis, store: redis.Redis | None = None) -> str:
    """Age of the oldest frame of the first job waiting in the detect queue, as the detector ages it
    (`DetectJob.age_s`: the ingest host's clock until stored, then the store's TTL, Redis's clock): by
    its capture date on this host's clock, recorded footage (dated ahead by design) showed a negative
    age, and an ingest host's clock behind a frame minutes old that was stored a second ago."""
    try:
        ids = stage_queue(connection, "detect").get_job_ids(0, 1)
        if not ids:
            return "none"
        job = parse_job(StageJob.fetch(ids[0], connection=connection, serializer=JSONSerializer).args[0], DetectJob)
    except Exception:  # not one of ours, or gone meanwhile: a worker will refuse or skip it
        return "unknown (the first waiting job is not a readable detect job)"
    ttls: list[float | None] = [None] * len(job.frames)
    if store is not None:
        with contextlib.suppress(redis.RedisError), store.pipeline(transaction=False) as pipeline:
            for frame in job.frames:
                pipeline.pttl(frame.key)
            ttls = [ms / 1000 if isinstance(ms, int) and ms >= 0 else None for ms in pipeline.execute()]
    now = time.time()
    return f"{max(0.0, *(job.age_s(frame, ttl, now) for frame, ttl in zip(job.frames, ttls, strict=True))):.1f} s ago"
