"""Replaying failed jobs: after an outage longer than the retries cover (Postgres down past the
patience of three attempts, a bug fixed and deployed), the jobs RQ kept in its failed registries go
back on their stage's queue — those whose frames are still in the frame store; a detect job marked
`replayed`, so that its frames are detected however old (the age limit sheds live overload: every
frame of a replay, minutes after the failure, would be skipped as too old). A job whose frames have
all expired, or whose payload is malformed, would only fail again: it is left in the registry (a
week, for inspection) and counted. But for a redact job: its redactor records every frame, as kept where
an earlier attempt kept it whole (its recording failed, then its frames expired) or else as expired;
left in the registry, its frames were logged `lost` and a kept file stayed unnamed by the log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import redis
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import JobStatus
from rq.queue import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from common.errors import InputError
from common.jobs import DetectJob, Job, OcrJob, RedactJob, parse_job
from common.queues import stage_queue
from common.stage_job import NOT_SIGNED_WITH_KEY, PERMANENT, REFUSED, SIGNATURE, StageJob

JOB_TYPES: dict[str, type[DetectJob] | type[OcrJob] | type[RedactJob]] = {
    "detect": DetectJob,
    "ocr": OcrJob,
    "redact": RedactJob,
}


@dataclass
class ReplayReport:
    """Per stage: failed jobs requeued, left because their frames expired, left as malformed or
    refused (they would fail the same way again)."""

    requeued: Counter[str] = field(default_factory=Counter)
    expired: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    """Rejected (a payload that always fails), or an entry RQ cannot fetch."""
    refused: Counter[str] = field(default_factory=Counter)
    """Not one of the chain's jobs: another function or callbacks, a hash RQ cannot read, or not signed
    with the workers' key (a key differing between roles has every job refused: they were all called
    malformed, which hid the cause)."""
    signed: Counter[str] = field(default_factory=Counter)
    """Signed jobs replay would change, left where they are: it was run without the job key (ALPR_JOB_KEY)."""
    other_key: Counter[str] = field(default_factory=Counter)
    """Jobs signed with another key than replay's, left where they are: replay's ALPR_JOB_KEY is not the
    workers' (they were counted malformed, and left to expire as junk)."""

    def left(self, stage: str, reason: str | None) -> None:
        """Count a job left for good: refused when `reason` (a PERMANENT mark, a refusal) says so."""
        (self.refused if str(reason).startswith(REFUSED) else self.malformed)[stage] += 1


def needed_keys(job: Job) -> list[str]:
    """The frame-store keys a job reads: frames to detect in, plate crops to read, frames to redact."""
    if isinstance(job, DetectJob):
        return [f.key for f in job.frames]
    if isinstance(job, OcrJob):
        return [p.crop_key for f in job.frames for p in f.plates if p.crop_key]
    if isinstance(job, RedactJob):
        return [f.frame.key for f in job.frames if f.outcome == "done"]
    return []  # an alert job reads the alerts log, not the frame store


LIVE_STATUSES = (JobStatus.STARTED, JobStatus.FINISHED)
"""A failed entry's job in these is a fresh run under its id: running, or done since."""


def job_is_live(connection: redis.Redis, queue: Queue, job_id: str, job: StageJob) -> bool:
    """Whether the job a failed entry names has been queued afresh under its id since (a detect job run
    again hands on its batch's ids): waiting, taken by a worker and not yet started, running, or done.
    Pushed again, it ran twice (a review)."""
    for key in (queue.key, queue.intermediate_queue_key):
        if connection.lpos(key, job_id) is not None:
            return True
    return job.get_status(refresh=False) in LIVE_STATUSES  # as just fetched (bounded): RQ's own HGET was not


def replay_failed(
    connection: redis.Redis, frames: redis.Redis, stages: list[str], dry_run: bool = False, job_key: str | None = None
) -> ReplayReport:
    """Requeue the failed jobs of `stages` that still have frames to work on (in the frame store's
    Redis, `frames`, which may be the queues' own); with `job_key`, only jobs signed with it (signed
    again when replay changes them); without, no signed job it would change (counted in `signed`)."""
    report = ReplayReport()
    for stage in stages:
        queue = stage_queue(connection, stage, job_key)
        registry = FailedJobRegistry(queue=queue, job_class=StageJob)
        registry.cleanup()
        for entry in connection.zrange(registry.key, 0, -1):  # raw: RQ's get_job_ids raised on an id not UTF-8
            try:
                job_id = entry.decode() if isinstance(entry, bytes) else str(entry)
                rq_job = cast(StageJob, StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer))
                if job_is_live(connection, queue, job_id, rq_job):
                    continue
                rq_job.job_key = job_key
                refusal = None if PERMANENT in rq_job.meta else rq_job.refusal()
                if refusal == NOT_SIGNED_WITH_KEY and SIGNATURE in rq_job.meta:
                    report.other_key[stage] += 1
                    continue
                if PERMANENT in rq_job.meta or refusal:  # refused or rejected, or never run (RQ's own cleaning)
                    report.left(stage, rq_job.meta.get(PERMANENT, f"{REFUSED}{refusal}"))
                    continue
                job = parse_job(rq_job.args[0] if rq_job.args else None, JOB_TYPES[stage])
            except (InputError, NoSuchJobError, DeserializationError, ValueError, TypeError, redis.ResponseError):
                # malformed, or an entry RQ cannot fetch (a job key that is no hash, an id RQ refuses)
                report.malformed[stage] += 1
                continue
            keys = needed_keys(job)
            if keys and not isinstance(job, RedactJob) and not frames.exists(*keys):  # see the module's words
                report.expired[stage] += 1
                continue
            changed = isinstance(job, DetectJob) and not job.replayed  # marked: its frames detected however old
            if changed and job_key is None and SIGNATURE in rq_job.meta:  # changed unsigned, a keyed worker
                report.signed[stage] += 1  # refused it for good: its frames were lost (a review)
                continue
            if not dry_run:
                if changed:
                    rq_job.args = [job.model_copy(update={"replayed": True}).model_dump(mode="json")]
                    rq_job.sign(job_key)
                rq_job.origin = queue.name  # back on the stage's queue, whatever queue its record names
                try:
                    registry.requeue(rq_job)
                except (InvalidJobOperation, NoSuchJobError):  # replayed meanwhile by another, or expired
                    continue
            report.requeued[stage] += 1
    return report
