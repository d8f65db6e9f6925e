"""`alpr status`'s pool sizes: per pool its seconds of work per frame entering the chain (`pool_work`), and the
workers it needs (`workers_needed`) to keep up with the frames offered and to drain what its queue holds
within BACKLOG_DRAIN_S, at TARGET_BUSY of their time. Sized by the frames offered alone, a pool whose queue
still held jobs once the cameras stopped was told it needed 0 workers."""

from __future__ import annotations

import contextlib
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from rq.job import Job

from alpr.status_reads import STAT_BYTES, number
from common import defaults, queues
from common.bounded_hash import read_many_within_bounds, read_within_bounds
from common.jobs import StageName
from common.queues import STAGES, stage_queue

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
    (each job holds at least one; one each where none of them can be read: not the chain's, gone meanwhile).
    The jobs are read one at a time, each within MAX_JOB_DATA_BYTES, and their frames counted up to
    MAX_FRAMES_PER_JOB, never decoded whole (`frames_held`); one that cannot be read is left out of the mean
    (one such job made the whole backlog count a frame a job, a review; and 20 forged jobs at the size bound,
    read together and decoded whole, took 2.7 s and some 490 MB)."""
    if jobs <= 0:
        return 0.0
    counts = []
    try:
        ids = connection.lrange(stage_queue(connection, stage).key, 0, BACKLOG_SAMPLE_JOBS - 1)
        for job_id in ids:
            with contextlib.suppress(redis.ResponseError, ValueError):  # a key of another type, an id not UTF-8
                read = read_within_bounds(connection, job_key(job_id), {"data": defaults.MAX_JOB_DATA_BYTES})
                if (data := read.values.get("data")) is not None and (held := frames_held(data)):
                    counts.append(held)
    except redis.RedisError:  # Redis gone meanwhile: the jobs read so far, if any
        pass
    return jobs * (sum(counts) / len(counts) if counts else 1.0)


def job_key(job_id: bytes | str) -> str:
    """The key of the hash of the job `job_id`, as a queue lists it (UnicodeDecodeError: not UTF-8)."""
    return Job.redis_job_namespace_prefix + (job_id.decode() if isinstance(job_id, bytes) else job_id)


def frames_held(data: bytes) -> int | None:
    """The frames a job's stored data holds (its payload's `frames`: a list), up to MAX_FRAMES_PER_JOB; None where
    it holds none, is not of a stage job's form, or decompresses to over MAX_JOB_DATA_BYTES. The list's items
    are decoded one by one and no further than the bound: a forged list of two million held them all at once."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, defaults.MAX_JOB_DATA_BYTES)
        if inflater.unconsumed_tail:
            return None
    except zlib.error:
        raw = data  # RQ's fallback: stored uncompressed
    try:
        payload = JsonWalk(raw.decode())
        payload.enter("[")
        payload.value()  # the function
        payload.enter(",")
        payload.value()  # its instance
        payload.enter(",")
        payload.enter("[")  # the arguments: the payload first
        return payload.list_length_at("frames", defaults.MAX_FRAMES_PER_JOB) or None
    except (ValueError, RecursionError):
        return None


class JsonWalk:
    """A walk through JSON text, each value decoded apart (json's raw_decode) and let go: what is not needed of a
    large document is never held as objects all at once. ValueError where the text is not of the form asked."""

    DECODER = json.JSONDecoder()
    SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def skip_space(self) -> None:
        self.at = self.SPACE.match(self.text, self.at).end()  # type: ignore[union-attr]  # (matches "" at least)

    def take(self, mark: str) -> bool:
        """Whether `mark` is next (after any space), taken if so."""
        self.skip_space()
        if self.text.startswith(mark, self.at):
            self.at += len(mark)
            return True
        return False

    def enter(self, mark: str) -> None:
        if not self.take(mark):
            raise ValueError(f"{mark!r} expected at {self.at}")

    def value(self) -> object:
        """The next value, decoded."""
        self.skip_space()
        value, self.at = self.DECODER.raw_decode(self.text, self.at)
        return value

    def list_length_at(self, name: str, most: int) -> int:
        """In the object that comes next: the length of the list at key `name`, counted up to `most`; 0 where
        the key is not there or holds no list. Keys before it are decoded and let go, one by one."""
        self.enter("{")
        if self.take("}"):
            return 0
        while True:
            key = self.value()
            self.enter(":")
            if key == name:
                return self.items_up_to(most) if self.take("[") else 0
            self.value()
            if not self.take(","):
                return 0

    def items_up_to(self, most: int) -> int:
        """The items of the list just entered, counted up to `most`, each decoded and let go."""
        if self.take("]"):
            return 0
        count = 0
        while count < most:
            self.value()
            count += 1
            if self.take("]"):
                return count
            self.enter(",")
        return count


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
