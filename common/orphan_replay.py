"""Queueing orphaned frames again (`alpr replay --orphans`): the frames the frames log holds `pending` that
no job of the chain holds (common/orphans.py: their jobs lost with the queues' Redis, restarted without
persistence, or never queued by an ingest node killed) go back on the detect queue while their bytes live in
the frame store, rebuilt from the reference their pending row keeps (`frame_ref`, migration 23: the FrameRef
their detect job carried — store key, region, ROI, source time, digest). Without it they waited, bytes and
all, for the redactor pool's sweep to record them `lost` ALPR_FRAME_TTL_S + ALPR_JOB_TIMEOUT_S after their
record: the row lacked what a detect job needs.

What holds: only the orphan finder's frames are queued (a frame a queue, a taken, running or failed job holds
never is: it is no orphan), so a second run queues nothing the first did; nothing is queued while a job that may hold
frames could not be read (its record gone since its id was read, or one without data no worker refused: the frames
it holds are counted in no job), but a job that can never run a frame does not stop it (not of the chain's form,
or refused at claim: one anyone with Redis access queued sat in the failed registry its hour, and no orphan was
queued meanwhile; common/orphans.held_frame_ids);
jobs go out signed with the chain's job key through the ingest node's own `enqueue`, marked `replayed` (detected
however old, as `alpr replay`'s); one run at a time (a lock in the queues' Redis: two at once had queued each
frame twice); bounded as the finder is, the references read REFS_READ at a time and the frame store asked
STORE_CHECKS keys a round trip.
A frame whose bytes expired, or whose row has no reference (recorded by an earlier release, or from a spool
file a stopped ingest node left, whose lines hold no ROI: queued again without it, a frame was detected over the
whole frame, the plates outside its camera's ROI read and logged) or one that does not validate, is counted and
left: the sweep records it `lost` as before."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import redis
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from common.errors import ConfigError
from common.jobs import DetectJob, FrameRef
from common.orphans import find_orphans
from common.queues import enqueue, stage_queue

REFS_READ = 1_000
"""Frame references read from the frames log a statement."""

STORE_CHECKS = 500
"""Frame-store keys asked about a round trip."""

REPLAY_LOCK_KEY = "alpr:replay:orphans"
"""The queues' Redis key a run of `alpr replay --orphans` holds while it runs."""

REPLAY_LOCK_S = 300
"""How long a run's lock lasts unless released (a run killed leaves it this long at most)."""

BATCH_PREFIX = "orphans."
"""How a requeued job's batch id begins, its first frame's id after it (deterministic: a frame id is at most
190 characters, the batch id 200)."""

PENDING_REFS = "SELECT frame_id, frame_ref FROM frames WHERE frame_id = ANY(%s) AND outcome = 'pending'"
"""The references of these frames still pending (a frame finished since the finder read it is left)."""


@dataclass
class OrphanReplay:
    """What `replay_orphans` did: the frames in no job found (`orphans`), how many of them were queued
    again (`requeued`, in `jobs` detect jobs), left because their bytes expired from the frame store,
    left because their row keeps no reference (`unreferenced`: recorded by a release before migration 23, or
    from a spool file, its ROI not known: common/frame_log.queued_ref) or one that does not validate
    (`malformed`); as the finder says, how many pending frames were examined and whether that was all of the
    window's, why nothing could be told (`unknown`), and how many jobs that may hold frames could not be read
    (`unreadable_jobs`: then nothing is queued, as the frames they hold are counted in no job)."""

    orphans: int = 0
    requeued: int = 0
    jobs: int = 0
    expired: int = 0
    unreferenced: int = 0
    malformed: int = 0
    examined: int = 0
    all_examined: bool = True
    unknown: str | None = None
    unreadable_jobs: int = 0


def pending_refs(pool: ConnectionPool, frame_ids: list[str]) -> dict[str, Any]:
    """frame id -> its row's `frame_ref` (None: it keeps none), for those of `frame_ids` still pending,
    REFS_READ a statement."""
    found: dict[str, Any] = {}
    with pool.connection() as db:
        for start in range(0, len(frame_ids), REFS_READ):
            for frame_id, frame_ref in db.execute(PENDING_REFS, (frame_ids[start : start + REFS_READ],)):
                found[str(frame_id)] = frame_ref
    return found


def stored(frames: redis.Redis, refs: list[FrameRef]) -> list[bool]:
    """Whether each frame's bytes are in the frame store, STORE_CHECKS keys a round trip."""
    alive: list[bool] = []
    for start in range(0, len(refs), STORE_CHECKS):
        with frames.pipeline(transaction=False) as pipe:
            for ref in refs[start : start + STORE_CHECKS]:
                pipe.exists(ref.key)
            alive += [bool(answer) for answer in pipe.execute()]
    return alive


def rebuilt(frame_id: str, frame_ref: Any) -> FrameRef | None:
    """The FrameRef a row keeps, validated as a job's is, and naming the row's own frame; None when it does not."""
    try:
        ref = FrameRef.model_validate(frame_ref)
    except (ValidationError, RecursionError, ValueError):
        return None
    return ref if ref.frame_id == frame_id else None


def replay_orphans(
    pool: ConnectionPool,
    connection: redis.Redis,
    frames: redis.Redis,
    window_s: float,
    *,
    frames_per_job: int,
    job_timeout_s: int,
    job_key: str | None,
    dry_run: bool = False,
) -> OrphanReplay:
    """Queue again, in detect jobs of `frames_per_job` frames, the frames captured in the last `window_s`
    seconds that no job holds (the queues' Redis: `connection`) whose bytes are still in the frame store
    (`frames`, which may be the queues' own), signed with `job_key` as the ingest node signs; with `dry_run`,
    only count them. ConfigError when another run holds the lock."""
    token = secrets.token_hex(8)
    if not connection.set(REPLAY_LOCK_KEY, token, nx=True, ex=REPLAY_LOCK_S):
        raise ConfigError(f"another `alpr replay --orphans` is under way (it holds {REPLAY_LOCK_KEY}); try again later")
    try:
        return _replay(pool, connection, frames, window_s, frames_per_job, job_timeout_s, job_key, dry_run)
    finally:
        if connection.get(REPLAY_LOCK_KEY) in (token, token.encode()):
            connection.delete(REPLAY_LOCK_KEY)


def _replay(
    pool: ConnectionPool,
    connection: redis.Redis,
    frames: redis.Redis,
    window_s: float,
    frames_per_job: int,
    job_timeout_s: int,
    job_key: str | None,
    dry_run: bool,
) -> OrphanReplay:
    """replay_orphans' work, under its lock."""
    found = find_orphans(pool, connection, window_s)
    report = OrphanReplay(orphans=len(found.frame_ids), examined=found.examined, all_examined=found.all_examined,
                          unknown=found.unknown, unreadable_jobs=found.unreadable_jobs)  # fmt: skip
    if found.unknown or found.unreadable_jobs or not found.frame_ids:
        return report  # a job not read may hold frames counted in no job: queued again, each ran twice (a review)
    refs: list[FrameRef] = []
    for frame_id, frame_ref in sorted(pending_refs(pool, found.frame_ids).items()):
        if frame_ref is None:
            report.unreferenced += 1
        elif (ref := rebuilt(frame_id, frame_ref)) is None:
            report.malformed += 1
        else:
            refs.append(ref)
    alive = [ref for ref, there in zip(refs, stored(frames, refs), strict=True) if there]
    report.expired = len(refs) - len(alive)
    queue = stage_queue(connection, "detect", job_key)
    for start in range(0, len(alive), frames_per_job):
        batch = alive[start : start + frames_per_job]
        # when their ingest node stored them, its lost job alone said: their age is told from capture
        job = DetectJob(batch_id=f"{BATCH_PREFIX}{batch[0].frame_id}", frames=batch, stored_at_s=None,
                        frame_ttl_s=None, replayed=True)  # fmt: skip
        if not dry_run:
            enqueue(queue, job, job_timeout_s)
        report.jobs += 1
        report.requeued += len(batch)
    return report
