"""common/queues.py on a private Redis: each stage's queue holds StageJobs stored as JSON (never
pickle), and `enqueue` gives a job a deterministic id, a bounded result and failure TTL and retries."""

from __future__ import annotations

import json
import re
import time
import zlib

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from rq.serializers import JSONSerializer

from common import defaults, queues
from common.frame_store import frame_key
from common.jobs import ID_PATTERN, DetectedFrame, DetectJob, FrameRef, OcrJob, job_id
from common.queues import QUEUE_NAMES, RETRIES, STAGES, enqueue, queue_keys, stage_queue
from common.stage_job import STAGE_JOB_FUNCTION, StageJob
from tests.strategies import FUZZ_SETTINGS


def ref(frame_id: str) -> FrameRef:
    return FrameRef(frame_id=frame_id, camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                    source_time_s=0.0, key=frame_key(frame_id), region="us")  # fmt: skip


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_queue_holds_stage_jobs_as_json(redis_url, stage):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, stage)
    assert queue.name == QUEUE_NAMES[stage] == f"alpr-{stage}"
    assert queue.job_class is StageJob and queue.serializer is JSONSerializer
    assert queue_keys()[stage] == queue.key
    job = DetectJob(batch_id="node-1:0", frames=[ref("cam:1:0")])
    identifier = enqueue(queue, job, 60)
    assert queue.get_job_ids() == [identifier]
    fetched = queue.fetch_job(identifier)
    assert isinstance(fetched, StageJob) and fetched.refusal() is None
    func, instance, args, kwargs = json.loads(zlib.decompress(connection.hget(f"rq:job:{identifier}", "data")))
    assert (func, instance, args, kwargs) == (STAGE_JOB_FUNCTION, None, [job.model_dump(mode="json")], {})


def test_enqueue_ids_are_deterministic_per_batch_and_stage(redis_url):
    connection = redis.Redis.from_url(redis_url)
    detect, ocr = stage_queue(connection, "detect"), stage_queue(connection, "ocr")
    job = DetectJob(batch_id="node-1:7", frames=[ref("cam:1:0")])
    first = enqueue(detect, job, 60)
    again = enqueue(detect, DetectJob(batch_id="node-1:7", frames=[ref("cam:1:1")]), 60)  # the batch, resent
    other = enqueue(detect, DetectJob(batch_id="node-1:8", frames=[ref("cam:1:0")]), 60)
    assert first == again == "detect-node-1_c7" and other == "detect-node-1_c8"
    assert detect.fetch_job(first).args[0]["frames"][0]["frame_id"] == "cam:1:1"  # one job record: the latest
    passed_on = OcrJob(batch_id="node-1:7", frames=[DetectedFrame(frame=ref("cam:1:0"), plates=[])])
    elsewhere = enqueue(ocr, passed_on, 60)  # the same batch at another stage is another job
    assert elsewhere == job_id("ocr", "node-1:7") == "ocr-node-1_c7" != first


@FUZZ_SETTINGS
@given(stage=st.sampled_from(STAGES), batch_id=st.from_regex(ID_PATTERN, fullmatch=True))
def test_job_ids_hold_only_what_rq_allows(stage, batch_id):
    identifier = job_id(stage, batch_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", identifier), identifier
    assert identifier == job_id(stage, batch_id) and identifier.startswith(f"{stage}-")
    escaped = re.sub("_[udc]", lambda m: {"_u": "_", "_d": ".", "_c": ":"}[m[0]], identifier.removeprefix(f"{stage}-"))
    assert escaped == batch_id  # read back whole: no two batches share an id


def test_enqueue_sets_ttls_retries_and_the_timeout(redis_url):
    connection = redis.Redis.from_url(redis_url)
    queue = stage_queue(connection, "detect")
    identifier = enqueue(queue, DetectJob(batch_id="b", frames=[ref("cam:1:0"), ref("cam:1:1")]), 45)
    job = queue.fetch_job(identifier)  # as stored in Redis, not the object enqueue built
    assert job is not None
    assert (job.result_ttl, job.failure_ttl) == (defaults.RESULT_TTL_S, defaults.FAILURE_TTL_S)
    assert defaults.RESULT_TTL_S <= 600 and defaults.FAILURE_TTL_S == 7 * 24 * 3600  # bounded, a week to replay
    assert job.timeout == 45
    assert job.retries_left == RETRIES.max == 2
    assert job.retry_intervals == RETRIES.intervals == [0]  # no interval: no scheduler process needed
    assert job.description == "detect 2 frames"


def test_sighting_workers_are_counted_while_their_heartbeat_is_fresh(redis_url):
    """Fresh heartbeats count, a worker silent longer than the TTL does not, and the next heartbeat
    forgets it."""
    connection = redis.Redis.from_url(redis_url)
    ttl = defaults.SIGHTING_HEARTBEAT_TTL_S
    now = queues.redis_now(connection)
    connection.zadd(queues.SIGHTING_WORKERS_KEY, {"host-1": now - ttl - 5, "host-2": now - ttl + 5})  # earlier beats
    assert queues.live_sighting_workers(connection) == 1
    queues.beat_sighting_worker(connection, "host-3")
    assert queues.live_sighting_workers(connection) == 2
    assert connection.zrange(queues.SIGHTING_WORKERS_KEY, 0, -1) == [b"host-2", b"host-3"]  # host-1 forgotten
    queues.beat_sighting_worker(connection, "host-2")  # renewed, not added twice
    assert connection.zcard(queues.SIGHTING_WORKERS_KEY) == 2
    assert 0 < connection.ttl(queues.SIGHTING_WORKERS_KEY) <= 2 * ttl  # gone once every worker is


def test_sighting_heartbeats_go_by_redis_clock_not_the_hosts(redis_url, monkeypatch):
    """Workers on hosts whose clocks run an hour ahead or behind are counted, and do not make the others
    look dead; a silent one is still forgotten."""
    connection = redis.Redis.from_url(redis_url)
    redis_time = queues.redis_now(connection)
    connection.zadd(queues.SIGHTING_WORKERS_KEY, {"silent": redis_time - defaults.SIGHTING_HEARTBEAT_TTL_S - 1})
    queues.beat_sighting_worker(connection, "right")
    for name, skew in (("ahead", 3600), ("behind", -3600)):
        monkeypatch.setattr(time, "time", lambda skew=skew: redis_time + skew)  # this host's clock
        queues.beat_sighting_worker(connection, name)
        monkeypatch.undo()
    assert queues.live_sighting_workers(connection) == 3
    assert sorted(connection.zrange(queues.SIGHTING_WORKERS_KEY, 0, -1)) == [b"ahead", b"behind", b"right"]
