"""What a worker logs of a job that fails (on a private Redis, with a real StageWorker): one line for a
failure the chain explains (a job refused, a job rejected as malformed), its traceback at DEBUG alone;
RQ's traceback for one it does not. Each refused job was logged twice, a WARNING and RQ's traceback at
ERROR: 30-90 tracebacks an incident, burying the line that said why."""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq import Retry

from common.errors import InputError
from common.metrics import Metrics
from common.queues import enqueue, stage_queue
from common.worker import StageResult, StageWorker, WorkerContext
from tests.common.recording_stage import detect_job


class Failing:
    """A detect stage whose batch `malformed` is bad input, `broken` an unforeseen failure."""

    name = "detect"

    def handle(self, payload: Any) -> StageResult:
        if payload["batch_id"] == "malformed":
            raise InputError("malformed detect job: frames.0.key: not a frame-store key")
        if payload["batch_id"] == "broken":
            raise RuntimeError("a bug")
        return StageResult(frames=len(payload["frames"]))

    def maintain(self) -> None:
        pass


def test_an_explained_failure_is_one_line_and_an_unforeseen_one_keeps_its_traceback(redis_url, caplog):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    crafted = queue.enqueue_call(func="os.getcwd", retry=Retry(max=2)).id  # not one of the chain's jobs
    undecodable = enqueue(queue, detect_job("undecodable"), 60)
    connection.hset(f"rq:job:{undecodable}", "data", b"\x00not json")  # RQ raises its own error on it
    for batch in ("malformed", "broken", "good"):
        enqueue(queue, detect_job(batch), 60)
    metrics = Metrics()
    caplog.set_level(logging.INFO)
    StageWorker(queue, WorkerContext(Failing(), metrics)).work(burst=True, logging_level="WARNING")  # type: ignore[arg-type]

    def lines(job_id: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if job_id in r.getMessage() and r.levelno >= logging.WARNING]

    counted = metrics.registry.get_sample_value
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "refused"}) == 2
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "done"}) == 1
    (refused,) = lines(crafted)  # one line, naming the job and why
    assert refused.levelname == "WARNING" and "'os.getcwd' is not alpr.stage" in refused.getMessage()
    (garbled,) = lines(undecodable)
    assert garbled.levelname == "WARNING" and garbled.getMessage().endswith("refused: undecodable job data")
    (rejected,) = lines("detect-malformed")
    assert rejected.levelname == "WARNING" and "rejected, not retried: malformed detect job" in rejected.getMessage()
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in [refused, garbled, rejected])
    broken = lines("detect-broken")  # run three times (retried twice): its traceback each time, once
    assert [r.levelname for r in broken] == ["ERROR"] * 3
    assert all(r.getMessage().count("RuntimeError: a bug") == 1 for r in broken)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == [refused, garbled, rejected, *broken]


class DutyFailing(Failing):
    """A detect stage whose pool duty fails every time (its database read-only, or away)."""

    def maintain(self) -> None:
        raise RuntimeError("Postgres read-only")


def test_a_pool_duty_failing_at_every_maintenance_is_told_once_a_minute_with_its_count(redis_url, caplog):
    """The alert pool's duties run every second: a read-only spell of a minute logged 56 lines (a review)."""
    connection = redis.Redis.from_url(redis_url)
    worker = StageWorker(stage_queue(connection, "detect"), WorkerContext(DutyFailing(), Metrics()))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    for _ in range(5):
        worker.run_maintenance_tasks()
    failed = [r.getMessage() for r in caplog.records if "pool duty failed" in r.getMessage()]
    assert failed == ["detect pool duty failed (1 time since the last such line): Postgres read-only"], failed
    worker.duty_failures.reported_at = -1e9  # a minute on
    worker.run_maintenance_tasks()
    failed = [r.getMessage() for r in caplog.records if "pool duty failed" in r.getMessage()]
    assert failed[-1] == "detect pool duty failed (5 times since the last such line): Postgres read-only", failed
