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
from common.worker import StageWorker
from common.worker_context import StageResult, WorkerContext
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


class DutyFlapping(Failing):
    """A detect stage whose pool duty fails at every other round (a flaky database: one round fails, the
    next goes through)."""

    rounds = 0

    def maintain(self) -> None:
        self.rounds += 1
        if self.rounds % 2:
            raise RuntimeError("Postgres read-only")


def test_a_pool_duty_failing_every_other_round_is_told_once_a_minute_not_each_time(redis_url, caplog):
    """A review: `end()` forgot when the last line was said, so a duty alternating fail/succeed told each
    failure (WARNING) and each recovery (INFO): 60 + 60 lines in 120 rounds of a second, where a steady
    failure tells one. The bound holds across a recovery: a spell begun within the minute of the last line
    is counted, told with the next line (its count since), and its end said only once a failure was told."""
    connection = redis.Redis.from_url(redis_url)
    worker = StageWorker(stage_queue(connection, "detect"), WorkerContext(DutyFlapping(), Metrics()))  # type: ignore[arg-type]
    now = [1000.0]
    worker.duty_failures.clock = lambda: now[0]
    caplog.set_level(logging.INFO)
    for _ in range(120):  # two minutes of rounds a second apart
        worker.run_maintenance_tasks()
        now[0] += 1.0
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "pool duty" in r.getMessage()]
    assert [level for level, _ in lines] == ["WARNING", "INFO"] * 2, lines
    assert lines[0][1] == "detect pool duty failed (1 time since the last such line): Postgres read-only"
    assert lines[2][1] == "detect pool duty failed (30 times since the last such line): Postgres read-only"
    assert lines[3][1] == "detect pool duty answers again, after 1 failures in 1 s"


def test_a_spell_told_once_whole_is_told_again_a_minute_after_the_last_spells_line():
    """A throttle of a line a spell (math.inf: the alert pool's first duty) tells each spell's first event
    at once where the last line is a minute old, and a spell begun within that minute at its next line."""
    import math

    from common.log_throttle import Throttle

    now = [0.0]
    throttle = Throttle(math.inf, lambda: now[0])
    told = []
    for at, failed in [(0, True), (5, True), (6, False), (7, True), (8, False), (70, True), (500, True), (501, False)]:
        now[0] = at
        told.append(throttle.note() if failed else throttle.end())
    assert told == [1, 0, (2, 6.0), 0, None, 2, 0, (2, 431.0)]
