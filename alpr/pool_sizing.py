"""`alpr status`'s pool sizes: per pool its seconds of work per frame entering the chain (`pool_work`), and the
workers it needs (`workers_needed`) to keep up with the frames offered and to drain what its queue holds
within BACKLOG_DRAIN_S, at TARGET_BUSY of their time. Sized by the frames offered alone, a pool whose queue
still held jobs once the cameras stopped was told it needed 0 workers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from rq.serializers import JSONSerializer

from alpr.status_reads import STAT_BYTES, number
from common import defaults, queues
from common.bounded_hash import read_many_within_bounds, read_within_bounds
from common.jobs import StageName
from common.queues import STAGES, StageJob, stage_queue

BACKLOG_DRAIN_S = 600.0
"""The time a pool is sized to drain its queue's backlog in (jobs waiting and running), besides keeping up
with the frames offered: 10 minutes."""

BACKLOG_SAMPLE_JOBS = 20
"""The waiting jobs at a queue's head whose frames are counted, the backlog's frames per job their mean (a
city's queue may hold a hundred thousand jobs: reading each would hold `alpr status` up)."""


def workers_needed(
    busy_s: float, frames: int, in_fps: float, backlog_s: float = 0.0, drain_s: float = BACKLOG_DRAIN_S
) -> int | None:
    """Workers a pool needs to keep up with `in_fps` frames/s and to finish the `backlog_s` seconds of work
    its queue holds within `drain_s`, at TARGET_BUSY of their time, from the pool's measured seconds of work
    per frame; at least 1 while either is more than none; None before it has handled any frame, and where
    the count is no number (past a float's range: forged statistics)."""
    if frames <= 0:
        return None
    needed = (in_fps * busy_s / frames + backlog_s / drain_s) / defaults.TARGET_BUSY
    if not math.isfinite(needed):
        return None
    return max(1, math.ceil(needed)) if in_fps > 0 or backlog_s > 0 else 0


@dataclass(frozen=True)
class PoolWork:
    """A pool's finished work: its seconds, the frames entering the chain they stand for, whether these are
    the last POOL_STATS_WINDOW_S's, and the frames its own jobs held in the same span (the OCR pool's: those
    with plates; the others': the frames entering)."""

    busy_s: float
    frames: int
    in_window: bool
    own_frames: int

    def backlog_s(self, queued_frames: float) -> float:
        """Seconds of work in `queued_frames` frames of its own jobs (an OCR job's: frames with plates)."""
        return queued_frames * self.busy_s / self.own_frames if self.own_frames > 0 else 0.0


def pool_costs(connection: redis.Redis, now_s: float) -> dict[StageName, PoolWork]:
    """Per pool: the seconds its finished jobs took, the frames entering the chain they stand for (the
    OCR pool reads only the frames with plates: its work counts per frame detected) and whether these are
    the last POOL_STATS_WINDOW_S's — else all time, for a pool that finished no job in the window (one
    whose workers all died is sized by what it did before; an OCR pool that read in the window while the
    detectors did not stands for its frames read over all time's share of frames with plates)."""
    fields = {f"{stage}:{what}": STAT_BYTES for stage in STAGES for what in ("busy_seconds", "frames")}
    recent = {stage: (0.0, 0) for stage in STAGES}
    for bucket in read_many_within_bounds(connection, queues.pool_stats_buckets(now_s), fields):
        if bucket is None:  # as reading it whole raised: the section is left out, the bucket told (WrongTypes)
            raise redis.ResponseError("WRONGTYPE a pool statistics bucket holds another type than a hash")
        for stage, (busy_s, count) in recent.items():
            recent[stage] = (
                busy_s + number(bucket.values.get(f"{stage}:busy_seconds")),
                count + int(number(bucket.values.get(f"{stage}:frames"))),
            )
    busy, handled = (read_within_bounds(connection, key, dict.fromkeys(STAGES, STAT_BYTES)).values
                     for key in (queues.STATS_BUSY_KEY, queues.STATS_FRAMES_KEY))  # fmt: skip
    total = {s: (number(busy.get(s)), int(number(handled.get(s)))) for s in STAGES}
    work: dict[StageName, PoolWork] = {}
    for stage in STAGES:
        source, in_window = (recent, True) if recent[stage][1] else (total, False)
        busy_s, own = source[stage]
        frames = own
        if stage == "ocr" and frames:  # at one frame in five with a plate, per frame read was 5x the workers
            if source["detect"][1]:
                frames = source["detect"][1]
            elif total["detect"][1] and total["ocr"][1]:  # the detectors finished nothing in the window (all
                frames = round(frames * total["detect"][1] / total["ocr"][1])  # dead): their all-time share
        work[stage] = PoolWork(busy_s, frames, in_window, own)
    return work


def pool_work(connection: redis.Redis, now_s: float) -> dict[StageName, tuple[float, int, bool]]:
    """`pool_costs` as (seconds, frames entering the chain, in the window) per pool."""
    return {stage: (w.busy_s, w.frames, w.in_window) for stage, w in pool_costs(connection, now_s).items()}


def queued_frames(connection: redis.Redis, stage: StageName, jobs: int) -> float:
    """The frames `jobs` jobs of `stage`'s queue hold, at the mean of the first BACKLOG_SAMPLE_JOBS waiting
    (each job holds at least one; one each where none of them can be read: not the chain's, gone meanwhile)."""
    if jobs <= 0:
        return 0.0
    counts = []
    try:
        ids = stage_queue(connection, stage).get_job_ids(0, BACKLOG_SAMPLE_JOBS - 1)
        for job in StageJob.fetch_many(ids, connection=connection, serializer=JSONSerializer):
            payload = job.args[0] if job is not None and job.args else None
            held = payload.get("frames") if isinstance(payload, dict) else None
            if isinstance(held, list) and held:
                counts.append(min(len(held), defaults.MAX_FRAMES_PER_JOB))
    except Exception:  # a job not the chain's: the floor, one frame a job
        counts = []
    return jobs * (sum(counts) / len(counts) if counts else 1.0)


def print_pool_sizes(
    connection: redis.Redis,
    in_fps: float,
    workers: Mapping[StageName, int | str],
    queued: Mapping[StageName, int] | None = None,
) -> None:
    """Per pool: live workers, seconds of work per frame entering the chain in the last hour (jobs that
    finished; all time for a pool that finished none), and the workers the current input and the jobs
    `queued` in its queue (waiting and running) need: those drained within BACKLOG_DRAIN_S."""
    work = pool_costs(connection, queues.redis_now(connection))  # the clock the workers' buckets are numbered by
    drain = f"{BACKLOG_DRAIN_S / 60:g} min"
    print(f"\npools, sized for {in_fps:.1f} frames/s offered (queued + skipped) and to drain their queues within"
          f" {drain}, workers {defaults.TARGET_BUSY:.0%} busy:")  # fmt: skip
    print(f"{'pool':<8} {'workers':>7} {'s/frame':>8} {'needed':>7}  over")
    for stage in STAGES:
        pool = work[stage]
        jobs = (queued or {}).get(stage, 0)
        backlog_s = pool.backlog_s(queued_frames(connection, stage, jobs))
        needed = workers_needed(pool.busy_s, pool.frames, in_fps, backlog_s)
        if needed == 0 and jobs > 0:  # jobs queued, their work not measured (0 s): never "none needed"
            needed = 1
        per_frame = f"{pool.busy_s / pool.frames:.3f}" if pool.frames else "-"
        over = "the last hour" if pool.in_window else "all time (no job in the last hour)" if pool.frames else ""
        print(f"{stage:<8} {workers[stage]:>7} {per_frame:>8} {'-' if needed is None else needed:>7}  {over}".rstrip())
