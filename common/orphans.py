"""Orphaned frames: frames the frames log holds `pending` that no job of the chain holds — not waiting in a
queue, taken or running, nor failed (kept for `alpr replay`). Their jobs were lost with the queues' Redis
(restarted without persistence) or never queued (an ingest node killed between its record and its job).
Nothing will finish them unless `alpr replay --orphans` queues them again while their bytes live
(common/orphan_replay.py): the redactor pool's sweep records them `lost` ALPR_FRAME_TTL_S +
ALPR_JOB_TIMEOUT_S after their record. `alpr status` counted them as in the chain until then, and said
nothing else (a fault review: 44 frames `in chain` for 12 minutes, every queue empty).

Bounded at a city's scale: the window's pending frames are read from their index's range, the oldest
ORPHAN_FRAMES_EXAMINED at most; the jobs' ids are read from each queue and registry in one atomic step,
ORPHAN_JOBS_READ at most in all, and their payloads ORPHAN_JOBS_BATCH at a time, each within a bound.
A job that can never run a frame (not of the chain's form, or refused at claim) holds none; one whose payload
could not be read and that may hold frames is counted (`held_frame_ids`): its frames would be told in no job."""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from psycopg_pool import ConnectionPool
from rq.job import Job as RqJob
from rq.registry import FailedJobRegistry, StartedJobRegistry

from common import defaults
from common.bounded_hash import read_many_within_bounds
from common.queues import STAGES, stage_queue
from common.stage_job import MAX_JOB_FIELD_BYTES, PERMANENT, REFUSED, STAGE_JOB_FUNCTION

ORPHAN_FRAMES_EXAMINED = 10_000
"""The most pending frames of the window `find_orphans` examines (the oldest: the first to be swept)."""

ORPHAN_JOBS_READ = 20_000
"""The most job ids read from the frames' queues and registries together; past it, orphans are not told
(a frame in a job not read would be called one)."""

ORPHAN_JOBS_BATCH = 500
"""Job payloads read a round trip."""

MAX_JOB_DATA_BYTES = defaults.MAX_JOB_DATA_BYTES
"""The most bytes of a job's payload read, compressed and decompressed (a detect job of MAX_FRAMES_PER_JOB
frames, each with a 256-point ROI, is some 400 KB): the workers' own bound, so a larger one, refused at claim
(common/stage_job.py), holds no frame."""

PENDING_IN_WINDOW = """
SELECT frame_id, camera_id, extract(epoch FROM done_at) FROM frames
WHERE outcome = 'pending' AND captured_at >= now() - make_interval(secs => %s)
ORDER BY captured_at LIMIT %s
"""
"""The window's pending frames, oldest first (frames_pending's range), with when each was recorded."""

STILL_PENDING = "SELECT frame_id FROM frames WHERE frame_id = ANY(%s) AND outcome = 'pending'"
"""Of these frames, those still pending (a frame finished while the jobs were read is no orphan)."""


@dataclass
class Orphans:
    """What `find_orphans` found: per camera the pending frames no job holds, the earliest and latest
    time (Unix s, Postgres's clock) any was recorded, how many pending frames were examined and whether
    that was all the window's, and `unknown`: why no count can be told (None when it can)."""

    per_camera: Counter[str] = field(default_factory=Counter)
    frame_ids: list[str] = field(default_factory=list)
    recorded_s: tuple[float, float] | None = None
    examined: int = 0
    all_examined: bool = True
    unreadable_jobs: int = 0
    unknown: str | None = None


def held_job_ids(connection: redis.Redis, most: int | None = None) -> list[str] | None:
    """The ids of the jobs each frame stage's queue, intermediate list (taken, not started), started and
    failed registries hold (a failed one's entries not yet expired), read in one MULTI (no job moves between
    them meanwhile: a detector hands its batch on while its own job is still started); None when they hold more
    than `most` in all, or a key holds another type. `most`: ORPHAN_JOBS_READ unless given."""
    most = ORPHAN_JOBS_READ if most is None else most
    listings: list[tuple[str, str]] = []
    for stage in STAGES:
        queue = stage_queue(connection, stage)
        listings += [(queue.key, "list"), (queue.intermediate_queue_key, "list")]
        listings += [(StartedJobRegistry(queue=queue).key, "zset"), (FailedJobRegistry(queue=queue).key, "failed")]
    # a failed registry's entry is scored with its expiry, the record's own (RQ's `add`): one scored before now
    # names a record gone with its TTL, which nothing can queue again, until a worker's maintenance drops it;
    # read, it counted as unreadable and stopped `alpr replay --orphans` while the detect pool was down (a review)
    now = int(time.time())
    try:
        with connection.pipeline(transaction=True) as pipe:  # their lengths first: none read when too many
            for key, kind in listings:
                if kind == "list":
                    pipe.llen(key)
                elif kind == "zset":
                    pipe.zcard(key)
                else:
                    pipe.zcount(key, now, "+inf")
            if sum(pipe.execute()) > most:
                return None
            for key, kind in listings:  # one past `most`: told apart
                if kind == "list":
                    pipe.lrange(key, 0, most)
                elif kind == "zset":
                    pipe.zrange(key, 0, most)
                else:
                    pipe.zrangebyscore(key, now, "+inf", start=0, num=most + 1)
            replies = pipe.execute()
    except redis.ResponseError:  # WRONGTYPE: status tells the key elsewhere (alpr/status_reads.py)
        return None
    entries = [entry for reply in replies for entry in reply]
    if len(entries) > most:
        return None
    # RQ's started registry names `<job id>:<execution id>`; the chain's job ids hold no colon
    return sorted({(e.decode(errors="replace") if isinstance(e, bytes) else str(e)).split(":")[0] for e in entries})


def payload_frame_ids(data: bytes) -> list[str] | None:
    """The frame ids a job's stored data names (a detect job's frames, an OCR or redaction job's frames'
    frames); None when it is not a job of the chain's form (another function than STAGE_JOB_FUNCTION: a forged
    job naming frames held them for ever, never recovered) or over MAX_JOB_DATA_BYTES decompressed."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data, MAX_JOB_DATA_BYTES)
        if inflater.unconsumed_tail:
            return None
    except zlib.error:
        raw = data  # RQ's fallback: stored uncompressed
    try:
        function, _, args, _ = json.loads(raw)
        if function != STAGE_JOB_FUNCTION:
            return None  # refused at claim, never run: a job naming another function holds no frame of the chain
        frames = args[0]["frames"]
        found = [frame.get("frame_id") or (frame.get("frame") or {}).get("frame_id") for frame in frames]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None
    return [frame_id for frame_id in found if isinstance(frame_id, str)]


def refused_at_claim(meta: bytes | None) -> bool:
    """Whether a job's meta (JSON, as StageJob writes it) marks it refused by a worker (common/stage_job.py):
    not one of the chain's, failed before it ran, never retried nor replayed."""
    try:
        mark = json.loads(meta)[PERMANENT] if meta is not None else None
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return False
    return isinstance(mark, str) and mark.startswith(REFUSED)


def held_frame_ids(connection: redis.Redis, job_ids: Iterable[str]) -> tuple[set[str], int]:
    """The frame ids the jobs `job_ids` name, their payloads read ORPHAN_JOBS_BATCH at a time, each within
    MAX_JOB_DATA_BYTES; and how many of them could not be read, and may yet hold frames.

    A job that can never run a frame holds none, wherever it is listed, and is not counted: data not of the
    chain's form (another function, a payload not of a stage job's form: a worker refuses or rejects it at
    claim, before it reads a frame: StageJob.refusal in common/stage_job.py, each stage's `parse_job`), data
    over its bound (the worker reads it within the same bound, and refuses it), or a record a worker marked
    refused (it never ran, and is neither retried nor replayed). Counted are those a job of the chain may be
    among: a record gone since its id was read (it ran and handed its frames on to jobs not read, or was
    deleted while its worker runs it), a record without data not marked refused (RQ's heartbeat writes one
    field: a running job's record lost comes back so), a key of another type. A counted job stops `alpr replay
    --orphans` (common/orphan_replay.py); a refused one was counted too, and for the hour it sat in the failed
    registry (LEFT_JOB_TTL_S) anyone with Redis access could stop the recovery of orphaned frames (a review); and
    a refused one whose data names frames held them that hour, past their bytes' life in the frame store: an ingest
    node on the job key before a rotation had its frames refused, then never queued again (a review)."""
    ids, held, unreadable = list(job_ids), set[str](), 0
    bounds = {"data": MAX_JOB_DATA_BYTES, "meta": MAX_JOB_FIELD_BYTES}
    for start in range(0, len(ids), ORPHAN_JOBS_BATCH):
        keys = [RqJob.key_for(job_id) for job_id in ids[start : start + ORPHAN_JOBS_BATCH]]
        for found in read_many_within_bounds(connection, keys, bounds):
            if found is None or not found.exists:
                unreadable += 1
            elif refused_at_claim(found.values.get("meta")):
                continue  # never ran, never retried nor replayed (common/replay.py leaves it): holds no frame
            elif "data" in found.values:
                held.update(payload_frame_ids(found.values["data"]) or ())
            elif "data" not in found.over:
                unreadable += 1
    return held, unreadable


def find_orphans(pool: ConnectionPool, connection: redis.Redis, window_s: float) -> Orphans:
    """The pending frames captured in the last `window_s` seconds that no job holds (see the module's
    words): the frames log's pending rows read first, then the jobs, then those of the rows no job named
    that are still pending (one finished meanwhile left its job, and is no orphan)."""
    found = Orphans()
    with pool.connection() as db:
        rows: list[Any] = db.execute(PENDING_IN_WINDOW, (window_s, ORPHAN_FRAMES_EXAMINED + 1)).fetchall()
    found.all_examined = len(rows) <= ORPHAN_FRAMES_EXAMINED
    rows = rows[:ORPHAN_FRAMES_EXAMINED]
    found.examined = len(rows)
    if not rows:
        return found
    job_ids = held_job_ids(connection)
    if job_ids is None:
        found.unknown = (
            f"the frames' queues and registries hold more than {ORPHAN_JOBS_READ:,} jobs, or a key of theirs"
            " another type"
        )
        return found
    held, found.unreadable_jobs = held_frame_ids(connection, job_ids)
    candidates = {frame_id: (camera_id, float(recorded_s)) for frame_id, camera_id, recorded_s in rows
                  if frame_id not in held}  # fmt: skip
    if not candidates:
        return found
    with pool.connection() as db:
        still = [row[0] for row in db.execute(STILL_PENDING, (list(candidates),)).fetchall()]
    for frame_id in still:
        found.per_camera[candidates[frame_id][0]] += 1
    found.frame_ids = sorted(still)
    times = [candidates[frame_id][1] for frame_id in still]
    found.recorded_s = (min(times), max(times)) if times else None
    return found
