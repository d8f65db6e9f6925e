"""A crafted job hash RQ cannot read back, on a private Redis with a real StageWorker: RQ raises while
dequeuing it (a date, timeout or count that is no number; no data at all), and the worker quit with the
job stuck in the queue's intermediate list, uncounted. Now it is refused like any job not of ours:
counted, failed once into the failed registry (not retried, not replayed), gone from the intermediate
list, and the worker goes on to the next job."""

from __future__ import annotations

import time
import zlib
from typing import Any

import pytest
import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry

from common import defaults
from common.metrics import Metrics
from common.queues import enqueue, stage_queue
from common.replay import replay_failed
from common.stage_job import JOB_HASH_FIELDS, PERMANENT, StageJob, field_bound
from common.worker import StageWorker
from common.worker_context import StageResult, WorkerContext
from tests.common.recording_stage import Recorder, detect_job

CRAFTED: dict[str, dict[str, bytes | None]] = {
    "created_at": {"created_at": b"garbage"},
    "timeout": {"timeout": b"abc"},
    "retries_left": {"retries_left": b"x"},
    "no data": {"data": None},
    "dependency_ids": {"dependency_ids": b"x"},
    "bad meta too": {"meta": b"notjson", "enqueued_at": b"yesterday"},
    "no data, no origin": {"data": None, "origin": None},
    "undecodable data": {"data": b"\x00notjson"},  # RQ reads the hash; the data itself is refused
    "zlib bomb": {"data": zlib.compress(b"\0" * (defaults.MAX_JOB_DATA_BYTES + 1))},  # RQ would inflate it whole
    "data over the bound": {"data": b"x" * (defaults.MAX_JOB_DATA_BYTES + 1)},
    "kwargs a list": {"data": zlib.compress(b'["alpr.stage", null, [{}], []]')},  # got past: RQ raised, uncounted,
    "kwargs null": {"data": zlib.compress(b'["alpr.stage", null, [{}], null]')},  # retried, replayed
    "args not a list": {"data": zlib.compress(b'["alpr.stage", null, "x", {}]')},
    "meta a list": {"meta": b"[1]"},  # RQ reads it; marking the job refused raised, and the worker quit
    "meta a string": {"meta": b'"x"'},
    "meta null": {"meta": b"null"},
}
"""Fields of a queued job's hash as an attacker with Redis access may set them (None: field deleted)."""


@pytest.mark.parametrize("fields", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_job_hash_rq_cannot_read_is_refused_once_and_the_worker_goes_on(redis_url, fields):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    crafted = enqueue(queue, detect_job("crafted"), 60)
    for name, value in fields.items():
        if value is None:
            connection.hdel(f"rq:job:{crafted}", name)
        else:
            connection.hset(f"rq:job:{crafted}", name, value)
    good = enqueue(queue, detect_job("good"), 60)
    stage, metrics = Recorder(), Metrics()
    worker = StageWorker(queue, WorkerContext(stage, metrics))  # type: ignore[arg-type]

    worker.work(burst=True, logging_level="WARNING")

    assert stage.batches == ["good"]  # the crafted job never reached the stage; the worker went on
    counted = metrics.registry.get_sample_value
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "refused"}) == 1  # once: never retried
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "done"}) == 1
    assert counted("alpr_jobs_total", {"stage": "detect", "outcome": "rejected"}) == 0  # exported from the start
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == [] and queue.count == 0
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert FailedJobRegistry(queue=queue).get_job_ids() == [crafted] and good != crafted
    job = queue.fetch_job(crafted)  # RQ and `alpr replay` read it back now, without raising
    assert isinstance(job, StageJob) and job.meta[PERMANENT].startswith("refused: ")
    report = replay_failed(connection, connection, ["detect"])
    assert report.requeued["detect"] == 0 and report.refused["detect"] == 1 and report.malformed["detect"] == 0


def test_a_readable_job_is_not_marked_unreadable(redis_url):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    job = queue.fetch_job(enqueue(queue, detect_job("good"), 60))
    assert isinstance(job, StageJob) and job.unreadable is None and job.refusal() is None


def test_a_crafted_job_stuck_between_queues_is_cleaned_then_refused(redis_url):
    """A crafted job left in the intermediate list (by a worker that quit on it before this fix): RQ's
    registry cleaning reads it too, and raised there, its maintenance lock left held for 15 minutes."""
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    crafted = enqueue(queue, detect_job("crafted"), 60)
    connection.hset(f"rq:job:{crafted}", "created_at", b"garbage")
    connection.lmove(queue.key, queue.intermediate_queue_key)
    connection.set(queue.intermediate_queue.get_first_seen_key(crafted), time.time() - 120)  # stuck 2 min
    stage, metrics = Recorder(), Metrics()
    cleaner = StageWorker(queue, WorkerContext(stage, metrics))  # type: ignore[arg-type]
    cleaner.clean_registries()  # RQ fails it, out of the intermediate list: counted and marked refused
    assert not connection.exists(queue.registry_cleaning_key)
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    worker = StageWorker(queue, WorkerContext(stage, metrics))  # type: ignore[arg-type]
    worker.work(burst=True, logging_level="WARNING")
    assert stage.batches == [] and FailedJobRegistry(queue=queue).get_job_ids() == [crafted]
    assert metrics.registry.get_sample_value("alpr_jobs_total", {"stage": "detect", "outcome": "refused"}) == 1
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == [] and queue.count == 0


class TimeoutRecorder(Recorder):
    """A detect stage that records the timeout and retries of the job it runs, as RQ holds them."""

    def handle(self, payload: Any) -> StageResult:
        from rq import get_current_job

        job = get_current_job()
        assert job is not None
        self.batches.append(f"{job.timeout} {job.retries_left}")
        return StageResult(frames=len(payload["frames"]))


def test_a_job_hash_cannot_lift_the_pools_timeout_or_retries(redis_url):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    crafted = enqueue(queue, detect_job("crafted"), 60)
    connection.hset(f"rq:job:{crafted}", mapping={"timeout": 999999999, "retries_left": 1000000,
                                                  "retry_intervals": "[86400]"})  # fmt: skip
    assert StageJob.fetch(crafted, connection=connection).retry_intervals == [0]
    stage = TimeoutRecorder()
    worker = StageWorker(queue, WorkerContext(stage, Metrics(), 45))  # type: ignore[arg-type]

    worker.work(burst=True, logging_level="WARNING")

    assert stage.batches == [f"45 {defaults.JOB_RETRIES}"]


class FailingRecorder(Recorder):
    """A detect stage that fails the batches named `fail-...`."""

    def handle(self, payload: Any) -> StageResult:
        if payload["batch_id"].startswith("fail"):
            raise ValueError("this batch fails")
        return super().handle(payload)


POISONED = {
    "dependency_ids a number": {"dependency_ids": b"5"},  # RQ writes it back as ids[0]: every cleaning raised
    "dependency_ids nested": {"dependency_ids": b"[[1]]"},
    "dependency_ids a mapping": {"dependency_ids": b'{"a": 1}'},
    "failure_ttl beyond Redis": {"failure_ttl": b"1000000000000000000"},  # EXPIRE refused: the worker quit
    "failure_ttl below zero": {"failure_ttl": b"-5"},  # the hash kept forever
    "result_ttl beyond Redis": {"result_ttl": b"1000000000000000000"},
    "result_ttl below zero": {"result_ttl": b"-5"},
}


@pytest.mark.parametrize("fields", POISONED.values(), ids=POISONED.keys())
def test_a_job_hash_cannot_set_dependencies_or_ttls_that_wedge_the_pool(redis_url, fields):
    """A security audit: a job hash naming dependencies made the worker quit on it, left in the started
    registry, and every registry cleaning after raised on it, so no job a killed worker abandoned ever
    came back; TTLs Redis refuses made the worker quit, or kept the hash forever."""
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    crafted = [enqueue(queue, detect_job(batch), 60) for batch in ("ok-crafted", "fail-crafted")]
    for job_id in crafted:
        connection.hset(f"rq:job:{job_id}", mapping=fields)
    good = enqueue(queue, detect_job("good"), 60)
    abandoned = enqueue(queue, detect_job("abandoned"), 60)
    connection.hset(f"rq:job:{abandoned}", mapping=fields)
    connection.lrem(queue.key, 0, abandoned)  # a worker took it and was killed: expired in the started registry
    connection.zadd(StartedJobRegistry(queue=queue).key, {f"{abandoned}:gone": time.time() - 600})
    stage = FailingRecorder()
    worker = StageWorker(queue, WorkerContext(stage, Metrics()))  # type: ignore[arg-type]

    worker.clean_registries()  # the abandoned job comes back (it raised, every 15 s, for good)
    worker.work(burst=True, logging_level="WARNING")

    assert sorted(stage.batches) == ["abandoned", "good", "ok-crafted"] and good not in crafted
    assert FailedJobRegistry(queue=queue).get_job_ids() == [crafted[1]]
    for job_id in crafted:
        assert 0 < connection.ttl(f"rq:job:{job_id}") <= defaults.FAILURE_TTL_S
        assert "dependency_ids" not in StageJob.fetch(job_id, connection=connection).to_dict()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (zlib.compress(b"\0" * (defaults.MAX_JOB_DATA_BYTES + 1)), "decompresses to over"),
        (b"x" * (defaults.MAX_JOB_DATA_BYTES + 1), "data over"),
    ],
    ids=["zlib bomb", "too large"],
)
def test_job_data_over_the_bound_is_never_decompressed_whole(redis_url, data, reason):
    connection = redis.Redis.from_url(redis_url)
    crafted = enqueue(stage_queue(connection, "detect"), detect_job("crafted"), 60)
    connection.hset(f"rq:job:{crafted}", "data", data)
    job = StageJob.fetch(crafted, connection=connection)
    assert job.unreadable and reason in job.unreadable and job.data == b""
    twice = zlib.compress(zlib.compress(b"\0" * (defaults.MAX_JOB_DATA_BYTES + 1)))  # a second layer
    connection.hset(f"rq:job:{crafted}", "data", twice)
    job = StageJob.fetch(crafted, connection=connection)
    assert len(job.data) < 1_000_000  # RQ decompresses once: what was checked, not the inner layer


def test_a_bomb_in_exc_info_is_refused_too_and_a_hash_cannot_ask_for_repeats(redis_url):
    connection = redis.Redis.from_url(redis_url)
    crafted = enqueue(stage_queue(connection, "detect"), detect_job("crafted"), 60)
    connection.hset(f"rq:job:{crafted}", mapping={"repeats_left": 1000, "repeat_intervals": "[0]"})
    job = StageJob.fetch(crafted, connection=connection)
    assert job.unreadable is None and job.repeats_left is None and job.repeat_intervals is None
    connection.hset(f"rq:job:{crafted}", "exc_info", zlib.compress(b"\0" * (defaults.MAX_JOB_DATA_BYTES + 1)))
    job = StageJob.fetch(crafted, connection=connection)
    assert job.unreadable and "exc_info decompresses to over" in job.unreadable


@pytest.mark.parametrize(
    ("entry", "plant"),
    [
        (b"evil", lambda r: r.set("rq:job:evil", "x")),  # a job key that is no hash: WRONGTYPE
        (b"has space", None),  # an id RQ refuses
        (b"\xff\xfe", None),  # not UTF-8
    ],
)
def test_a_queue_entry_rq_cannot_fetch_is_dropped_and_the_worker_goes_on(redis_url, entry, plant):
    """RQ raised while dequeuing it: the worker quit, the entry stayed between queues, and every registry
    cleaning after raised on it with the queue's maintenance lock held (15 minutes without bringing back
    a killed worker's jobs); `alpr replay` crashed on it too."""
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    if plant:
        plant(connection)
    connection.rpush(queue.key, entry)
    good = enqueue(queue, detect_job("good"), 60)
    stage, metrics = Recorder(), Metrics()
    StageWorker(queue, WorkerContext(stage, metrics)).work(burst=True, logging_level="WARNING")  # type: ignore[arg-type]
    assert stage.batches == ["good"] and connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert metrics.registry.get_sample_value("alpr_jobs_total", {"stage": "detect", "outcome": "refused"}) == 1
    connection.rpush(queue.intermediate_queue_key, entry)  # left there by a worker of an older version
    connection.zadd(queue.started_job_registry.key, {entry + b":x": 1})  # and in the started registry
    cleaner = StageWorker(queue, WorkerContext(stage, metrics))  # type: ignore[arg-type]
    cleaner.clean_registries()
    assert (
        not connection.exists(queue.registry_cleaning_key)
        and connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    )
    assert connection.zcard(queue.started_job_registry.key) == 0
    connection.zadd(FailedJobRegistry(queue=queue).key, {entry: time.time() + 3600})
    report = replay_failed(connection, connection, ["detect"])
    assert report.requeued["detect"] == 0 and report.malformed["detect"] == 1 and good


def test_a_registry_cleaning_that_fails_waits_for_the_next_maintenance(redis_url, caplog):
    """RQ notes a cleaning only when it succeeds: one that kept failing (an entry RQ's worker registry
    cannot read) ran again before every job, with the pool's duties and a warning each time."""
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    connection.sadd(f"rq:workers:{queue.name}", b"\xff\xfe")  # RQ's worker-registry cleaning raises on it
    worker = StageWorker(queue, WorkerContext(Recorder(), Metrics()))  # type: ignore[arg-type]
    worker.clean_registries()
    assert worker.last_cleaned_at is not None and not worker.should_run_maintenance_tasks
    assert not connection.exists(queue.registry_cleaning_key)
    assert any("registry cleaning failed" in r.getMessage() for r in caplog.records)


def test_a_forged_field_over_its_bound_is_never_read_from_redis(redis_url):
    """An attacker with Redis access set a 400 MB field: RQ fetched the whole hash (1.3 GB in `alpr status`)
    before the data bound was checked. Each field's length is asked first: Redis sends none of it."""
    connection = redis.Redis.from_url(redis_url)
    crafted = enqueue(stage_queue(connection, "detect"), detect_job("crafted"), 60)
    for field, size in (("data", defaults.MAX_JOB_DATA_BYTES + 1), ("description", 20_000_000)):
        connection.hset(f"rq:job:{crafted}", field, b"x" * size)
        sent = connection.info("stats")["total_net_output_bytes"]
        job = StageJob.fetch(crafted, connection=connection)
        assert connection.info("stats")["total_net_output_bytes"] - sent < 200_000
        assert job.unreadable == f"unreadable job hash ({field} over {field_bound(field)} bytes)"
        assert StageJob.fetch_many([crafted, "gone"], connection=connection)[1] is None
        connection.hset(f"rq:job:{crafted}", field, b"small")


def test_the_job_hash_fields_fetched_are_every_one_rq_reads():
    """RQ's restore reads the fields JOB_HASH_FIELDS names, no other: one it read and `refresh` did not
    fetch would be taken as missing (an RQ upgrade that adds one fails here)."""
    import inspect
    import re

    from rq.job import Job

    source = inspect.getsource(Job.restore)
    read = set(re.findall(r"obj\.get\(['\"](\w+)['\"]", source)) | set(re.findall(r"obj\[['\"](\w+)['\"]\]", source))
    assert read == set(JOB_HASH_FIELDS)
