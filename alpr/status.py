"""`alpr status`: what an operator checks first — queues, workers and failures; per camera its state,
source errors, frames/s queued, skipped and done, and the frames whose record the ingest node could not
keep (unrecorded: the frames log cannot show them); per pool the workers the frames offered need; the
roles whose job keys differ, if any (common/job_key.py); per pool whether its live members run with the
same settings that change results (alpr/pool_settings.py); and, with a database, every sampled frame
accounted for (or still in the chain). `--json`: the queues, the workers and the pools' settings as one
JSON object (no rates, cameras nor accounting).

A pool whose members disagree is a warning: shown, told on stderr, and the exit status stays 0 (as a job
key differing between roles is); 2 says only that the queues' Redis could not be read, or, with `alpr: error:`,
that Postgres could not: a statement of the frames-log part unanswered within STATUS_STATEMENT_TIMEOUT_S
(behind a lock it hung until killed, a review) ends it so, the chain's part already shown."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from typing import Any

import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from alpr.pool_settings import PoolSettings, pool_settings
from alpr.wiring import database_pool, reach_redis
from common import defaults, queues
from common.config import Settings
from common.credentials import escape_controls, mask_url
from common.errors import AlprError, ConfigError
from common.frame_log import recent_per_camera
from common.job_key import disagreement as key_disagreement
from common.jobs import DetectJob, StageName, parse_job
from common.queues import QUEUED_STAGES, STAGES, StageJob, stage_queue


def status(args: argparse.Namespace, settings: Settings) -> int:
    """The chain's state (queues' Redis), then with a database the frames log's accounting. With Redis
    unreachable the accounting is still shown (it said only "cannot reach Redis", just when an operator
    needs to know what the frames log holds), and the exit status is 2."""
    if getattr(args, "json", False):
        print(json.dumps(chain_document(settings), indent=2, sort_keys=True))
        return 0
    try:
        print_chain(args, settings)
    except (ConfigError, redis.RedisError) as error:
        if not settings.database_url:
            raise
        print(f"alpr: {mask_url(str(error))}; the frames log follows", file=sys.stderr)
        print_accounting(settings, args.hours * 3600)
        return 2
    if settings.database_url:
        print_accounting(settings, args.hours * 3600)
    return 0


def print_chain(args: argparse.Namespace, settings: Settings) -> None:
    """Queues, workers, cameras and pool sizes, from the queues' Redis."""
    connection = reach_redis(settings)
    keys = (queues.STATS_INGESTED_KEY, queues.STATS_SKIPPED_KEY, queues.STATS_DONE_KEY, queues.STATS_UNRECORDED_KEY)
    first = [connection.hgetall(key) for key in keys]
    time.sleep(args.interval)
    then = [connection.hgetall(key) for key in keys]
    print(f"{'queue':<8} {'waiting':>7} {'running':>7} {'workers':>7} {'failed':>6}")
    worker_keys: dict[str, list[str]] = {
        stage: readable_worker_keys(connection, stage_queue(connection, stage)) for stage in QUEUED_STAGES
    }
    workers: dict[StageName, int] = {stage: len(worker_keys[stage]) for stage in QUEUED_STAGES}
    for stage in QUEUED_STAGES:
        queue = stage_queue(connection, stage)
        running = StartedJobRegistry(queue=queue, job_class=StageJob).get_job_count(cleanup=False)
        failed = FailedJobRegistry(queue=queue, job_class=StageJob).get_job_count(cleanup=False)
        print(f"{stage:<8} {queue.count:>7} {running:>7} {workers[stage]:>7} {failed:>6}")
    sighting_workers = queues.live_sighting_workers(connection)
    print(f"sighting workers (no queue: they read the logs): {sighting_workers}")
    print(f"oldest waiting frame: {oldest_waiting(connection, frame_ttls(settings, connection))}")
    if differing := key_disagreement(connection):  # every job between them refused, its frames lost
        print(f"job keys differ between roles (ALPR_JOB_KEY: each refuses the others' jobs): {differing}")
    states = {raw(k): camera_state(v) for k, v in connection.hgetall(queues.CAMERA_STATE_KEY).items()}
    mark_cameras_without_node(connection, states)
    cameras = sorted({raw(k) for table in then for k in table} | set(states))  # shown by text(), looked up as is
    if cameras:
        print(f"\n{'camera':<20} {'state':<16} {'errors':>6} {'in fps':>7} {'skip fps':>8} {'out fps':>7} "
              f"{'queued':>8} {'skipped':>8} {'done':>8} {'unrecorded':>10}")  # fmt: skip
    offered_fps = 0.0
    for key in cameras:
        rates = [(number(b.get(key)) - number(a.get(key))) / args.interval for a, b in zip(first, then, strict=True)]
        totals = [int(number(table.get(key))) for table in then]
        state, camera = states.get(key, {}), text(key)
        if "since" in state:
            state["state"] = f"{state.get('state', '-')} {format_age(time.time() - number(state['since']))}"
        offered_fps += rates[0] + rates[1]  # the pools must keep up with what cameras offer, skipped too
        print(f"{camera:<20} {state.get('state', '-'):<16} {state.get('errors', 0):>6} {rates[0]:>7.1f} "
              f"{rates[1]:>8.1f} {rates[2]:>7.1f} {totals[0]:>8} {totals[1]:>8} {totals[2]:>8} "
              f"{totals[3]:>10}")  # fmt: skip
    print_unclaimed_cameras(connection)
    print_pool_sizes(connection, offered_fps, workers)
    print_pool_settings(pool_settings(connection, worker_keys))


def readable_worker_keys(connection: redis.Redis, queue: Queue) -> list[str]:
    """The keys of the workers registered on `queue` whose records RQ can read: a record it cannot (a
    forged one, a foreign app's, a name that is not UTF-8) is no worker of ours, and made `alpr status` end
    in a traceback, the frames log's accounting lost with it (a review)."""
    keys = []
    for key in connection.smembers(WORKERS_BY_QUEUE_KEY % queue.name):
        try:
            name = key.decode() if isinstance(key, bytes) else key
            if Worker.find_by_key(name, connection=connection) is not None:
                keys.append(name)
        except Exception:  # noqa: BLE001 - whatever a record RQ cannot read raises, it is not a worker
            continue
    return sorted(keys)


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
    """`alpr status --json`: per queue its jobs and workers, the live sighting workers, the roles whose
    job keys differ, and per pool its members' settings (`mixed`: the pools whose members disagree)."""
    connection = reach_redis(settings)
    document: dict[str, Any] = {"queues": {}}
    worker_keys: dict[str, list[str]] = {}
    for stage in QUEUED_STAGES:
        queue = stage_queue(connection, stage)
        worker_keys[stage] = readable_worker_keys(connection, queue)
        document["queues"][stage] = {
            "waiting": queue.count,
            "running": StartedJobRegistry(queue=queue, job_class=StageJob).get_job_count(cleanup=False),
            "workers": len(worker_keys[stage]),
            "failed": FailedJobRegistry(queue=queue, job_class=StageJob).get_job_count(cleanup=False),
        }
    document["sighting_workers"] = queues.live_sighting_workers(connection)
    document["job_keys_differ"] = key_disagreement(connection)
    pools = [pool for pool in pool_settings(connection, worker_keys) if pool.members]
    document["pools"] = {pool.pool: pool.as_dict() for pool in pools}
    document["mixed"] = [pool.pool for pool in pools if pool.mixed]
    return document


LIVE_STATES = ("connected", "reconnecting")
"""A camera's states while its ingest node runs (the others, failed and ended, it leaves when done)."""

NODE_GONE = "node gone"
"""The state shown for a camera left live by a node whose claim on it lapsed (a node killed)."""


def mark_cameras_without_node(connection: redis.Redis, states: dict[bytes, dict[str, Any]]) -> None:
    """A camera whose last state is live but that no node claims any more (ingest/claims.py: a claim
    lapses CAMERA_CLAIM_TTL_S after a killed node's last renewal) shows NODE_GONE: it showed `connected`
    for ever after its node was killed, the state having no expiry (a review)."""
    from ingest.claims import CLAIM_PREFIX

    live = [camera for camera, state in states.items() if state.get("state") in LIVE_STATES]
    with connection.pipeline(transaction=False) as pipeline:
        for camera in live:
            pipeline.exists(CLAIM_PREFIX.encode() + camera)
        claimed = pipeline.execute()
    for camera, held in zip(live, claimed, strict=True):
        if not held:
            states[camera]["state"] = NODE_GONE


def unclaimed_cameras(connection: redis.Redis) -> list[tuple[str, str]]:
    """The cameras a node's cameras file names (enabled) or a node has held within HOLDER_TTL_S that no live
    node claims now (ingest/claims.py), each with its last holder in words: a camera only a node refused
    named, or whose node died with no standby, was sampled by none and listed nowhere (a review)."""
    from ingest.claims import CLAIM_PREFIX, HOLDER_PREFIX, WANTED_PREFIX

    known = {raw(key)[len(prefix) :] for prefix in (WANTED_PREFIX, HOLDER_PREFIX)
             for key in connection.scan_iter(match=prefix + "*", count=500)}  # fmt: skip
    cameras = sorted(known)
    with connection.pipeline(transaction=False) as pipeline:
        for camera in cameras:
            pipeline.exists(CLAIM_PREFIX.encode() + camera)
            pipeline.hmget(HOLDER_PREFIX.encode() + camera, "node", "renewed", "released")
        answers = pipeline.execute()
    unclaimed = []
    for camera, held, (node, renewed, released) in zip(cameras, answers[::2], answers[1::2], strict=True):
        if held:
            continue
        if node is None:
            last = "never claimed"
        else:
            how = "gave it up" if released == b"1" else "stopped renewing"
            last = f"last held by ingest node {text(node)}, which {how} {format_age(time.time() - number(renewed))} ago"
        unclaimed.append((text(camera), last))
    return unclaimed


def print_unclaimed_cameras(connection: redis.Redis) -> None:
    """`unclaimed_cameras`, listed when there are any."""
    if unclaimed := unclaimed_cameras(connection):
        print("\ncameras no live ingest node claims (sampled by none):")
        for camera, last in unclaimed:
            print(f"  {camera:<20} {last}")


def format_age(seconds: float) -> str:
    return (
        f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"
    )


def raw(value: bytes | str) -> bytes:
    """A Redis key as the bytes it is (redis-py gives bytes; a str only from a hand-made mapping)."""
    return value if isinstance(value, bytes) else value.encode()


def text(value: bytes | str) -> str:
    """A Redis key or value as text to print: bytes that are not UTF-8 shown with replacement characters,
    control characters written out (a camera named with a line break forged rows of the table, and
    escape codes reached the operator's terminal: a security audit)."""
    return escape_controls(value.decode(errors="replace") if isinstance(value, bytes) else value)


RECENT_SIGHTINGS = recent_per_camera("sightings", "first_seen")
"""Sightings per camera begun within a window (sightings_by_camera_time)."""


def print_accounting(settings: Settings, window_s: float) -> None:
    """Per camera from the frames log, of the frames captured in the last `window_s` seconds: frames
    sampled, how they ended, those not yet accounted for, and the frames whose reads are pending, expired
    (crops gone) or lost (no OCR job recorded them); the sightings begun and alert deliveries of that window
    (those pending: all). Each count reads an index's range: counting the whole log read every row (0.46 s
    a 2 million; a city's 30 days hold billions, past the statements' 5 s: a soak review)."""
    import psycopg

    from common.alert_log import AlertLog
    from common.db import STATUS_SESSION_SETTINGS
    from common.frame_log import FrameLog

    pool = None
    try:
        pool = database_pool(settings, "status", session_settings=STATUS_SESSION_SETTINGS)
        counts, reads = FrameLog(pool, 0).recent_outcome_counts(window_s)
        deliveries = AlertLog(pool, 0).recent_counts(window_s)
        with pool.connection() as connection:
            sightings: dict[str, int] = dict(connection.execute(RECENT_SIGHTINGS, (window_s,)).fetchall())
    except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
        raise UnansweredError(f"frames log not answered in {defaults.STATUS_STATEMENT_TIMEOUT_S:g} s"
                              " (a lock? see pg_locks)") from None  # fmt: skip
    finally:
        if pool is not None:
            pool.close()
    window = f"the last {window_s / 3600:g} h"
    print(f"\nsightings begun in {window}: "
          + (", ".join(f"{text(c)} {n}" for c, n in sorted(sightings.items())) or "none"))  # fmt: skip
    statuses = ("pending", "sending", "delivered", "failed", "rejected")
    shown_deliveries = " ".join(f"{s} {deliveries.get(s, 0)}" for s in statuses)
    print(f"alert deliveries (pending: all; the others of alerts raised in {window}): {shown_deliveries}")
    outcomes = ("done", "skipped", "expired", "corrupt", "lost")
    read_outcomes = ("pending", "expired", "corrupt", "lost", "refused", "skipped")
    print(f"\nframes log: frames captured in {window} (--hours)")
    print(
        f"{'':<12}{'camera':<20} {'sampled':>8} " + " ".join(f"{o:>8}" for o in outcomes) + f" {'in chain':>8}"
        " | frames' reads " + " ".join(f"{o:>8}" for o in read_outcomes)
    )
    for camera, by_outcome in sorted(counts.items()):
        sampled = sum(by_outcome.values())
        cells = " ".join(f"{by_outcome.get(o, 0):>8}" for o in outcomes)
        read_cells = " ".join(f"{reads.get(camera, {}).get(o, 0):>8}" for o in read_outcomes)
        shown = text(camera)
        print(f"{'':<12}{shown:<20} {sampled:>8} {cells} {by_outcome.get('pending', 0):>8} | {'':>14}{read_cells}")


class UnansweredError(AlprError):
    """A statement of the frames-log part ran past STATUS_STATEMENT_TIMEOUT_S (common/db.STATUS_SESSION_SETTINGS)."""


def workers_needed(busy_s: float, frames: int, in_fps: float) -> int | None:
    """Workers a pool needs to keep up with `in_fps` frames/s at TARGET_BUSY of their time, from the
    pool's measured seconds of work per frame; None before it has handled any frame."""
    if frames <= 0:
        return None
    return max(1, math.ceil(in_fps * busy_s / frames / defaults.TARGET_BUSY)) if in_fps > 0 else 0


def number(value: Any) -> float:
    """A count or time as the chain writes it to Redis; 0 for anything else (a garbled or hand-set
    value must not take the whole status down)."""
    try:
        parsed = float(value.decode() if isinstance(value, bytes) else value) if value is not None else 0.0
    except (TypeError, ValueError, UnicodeDecodeError):
        return 0.0
    return parsed if math.isfinite(parsed) else 0.0


def camera_state(value: bytes | str) -> dict[str, Any]:
    """A camera's state as ingest writes it (JSON: state, since, errors); {} for anything else."""
    try:
        parsed = json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {
        k: text(v) if isinstance(v, str) else v
        for k, v in parsed.items()
        if k in ("state", "since", "errors") and isinstance(v, str | int | float)
    }


def pool_work(connection: redis.Redis, now_s: float) -> dict[StageName, tuple[float, int, bool]]:
    """Per pool: the seconds its finished jobs took, the frames entering the chain they stand for (the
    OCR pool reads only the frames with plates: its work counts per frame detected) and whether these are
    the last POOL_STATS_WINDOW_S's — else all time, for a pool that finished no job in the window (one
    whose workers all died is sized by what it did before; an OCR pool that read in the window while the
    detectors did not stands for its frames read over all time's share of frames with plates)."""
    pipe = connection.pipeline(transaction=False)
    for key in queues.pool_stats_buckets(now_s):
        pipe.hgetall(key)
    recent = {stage: (0.0, 0) for stage in STAGES}
    for bucket in pipe.execute():
        for stage, (busy_s, count) in recent.items():
            recent[stage] = (
                busy_s + number(bucket.get(f"{stage}:busy_seconds".encode())),
                count + int(number(bucket.get(f"{stage}:frames".encode()))),
            )
    busy, handled = connection.hgetall(queues.STATS_BUSY_KEY), connection.hgetall(queues.STATS_FRAMES_KEY)
    total = {s: (number(busy.get(s.encode())), int(number(handled.get(s.encode())))) for s in STAGES}
    work: dict[StageName, tuple[float, int, bool]] = {}
    for stage in STAGES:
        source, in_window = (recent, True) if recent[stage][1] else (total, False)
        busy_s, frames = source[stage]
        if stage == "ocr" and frames:  # at one frame in five with a plate, per frame read was 5x the workers
            if source["detect"][1]:
                frames = source["detect"][1]
            elif total["detect"][1] and total["ocr"][1]:  # the detectors finished nothing in the window (all
                frames = round(frames * total["detect"][1] / total["ocr"][1])  # dead): their all-time share
        work[stage] = (busy_s, frames, in_window)
    return work


def print_pool_sizes(connection: redis.Redis, in_fps: float, workers: dict[StageName, int]) -> None:
    """Per pool: live workers, seconds of work per frame entering the chain in the last hour (jobs that
    finished; all time for a pool that finished none), and the workers the current input needs."""
    work = pool_work(connection, queues.redis_now(connection))  # the clock the workers' buckets are numbered by
    print(
        f"\npools, sized for {in_fps:.1f} frames/s offered (queued + skipped), workers {defaults.TARGET_BUSY:.0%} busy:"
    )
    print(f"{'pool':<8} {'workers':>7} {'s/frame':>8} {'needed':>7}  over")
    for stage in STAGES:
        busy_s, done, in_window = work[stage]
        needed = workers_needed(busy_s, done, in_fps)
        per_frame = f"{busy_s / done:.3f}" if done else "-"
        over = "the last hour" if in_window else "all time (no job in the last hour)" if done else ""
        print(f"{stage:<8} {workers[stage]:>7} {per_frame:>8} {'-' if needed is None else needed:>7}  {over}".rstrip())


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
