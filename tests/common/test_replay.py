"""`alpr replay` (common/replay.py) on a private Redis: failed jobs whose frames are still stored go
back on their queue and run; jobs whose frames expired, malformed jobs, and jobs the chain would
refuse (a callback RQ's own cleaning put in the failed registry) are left there and counted."""

from __future__ import annotations

import time

import numpy as np
from rq import Callback
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from alpr.cli import main
from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import SCHEMA_VERSION, DetectJob, FrameRef, RedactJob, parse_job
from common.queues import connect_redis, enqueue, stage_queue
from common.replay import replay_failed
from common.stage_job import STAGE_JOB_FUNCTION


def ref(frame_id: str, age_s: float = 0.0) -> FrameRef:
    return FrameRef(frame_id=frame_id, camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time() - age_s,
                    source_time_s=0.0, key=frame_key(frame_id), region="us")  # fmt: skip


def canary_callback(job, connection, *exc_info) -> None:  # type: ignore[no-untyped-def]
    """A function a crafted job names as its callback: nothing may ever call it."""
    raise AssertionError(f"a crafted job's callback ran ({job.id})")


def test_replay_requeues_failed_jobs_whose_frames_are_still_stored(redis_url, settings, capsys):
    connection = connect_redis(redis_url)
    detect, store = stage_queue(connection, "detect"), FrameStore(connection, 60)
    image = np.full((360, 640, 3), 100, np.uint8)
    store.put_many([(frame_key("cam:1:0"), encode_jpeg(image, 90))])  # cam:1:1's frame has expired
    failed = FailedJobRegistry(queue=detect)
    for batch, frame_id in (("fixable", "cam:1:0"), ("gone", "cam:1:1")):  # failed on a transient cause
        # two minutes ago: past the live age limit, as any replay an operator runs after a failure is
        enqueue(detect, DetectJob(batch_id=batch, frames=[ref(frame_id, age_s=120)]), 60)
    no_frames = {"v": SCHEMA_VERSION, "stage": "detect", "batch_id": "b"}
    malformed = detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=(no_frames,))
    for job_id in detect.get_job_ids():
        detect.remove(job_id)
        job = detect.fetch_job(job_id)
        job.origin = "someone-elses-queue"  # the record names another queue: replay puts it back on the stage's
        job.save()
        failed.add(job, ttl=600)
    worker = ["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]

    capsys.readouterr()
    assert main(["replay", "--dry-run", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["detect", "1", "1", "1", "0"]
    assert failed.count == 3
    assert main(["replay", "--stage", "detect", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["detect", "1", "1", "1", "0"]
    assert failed.count == 2 and detect.get_job_ids() == ["detect-fixable"]
    assert main(worker) == 0
    redact = stage_queue(connection, "redact")
    assert redact.get_job_ids() == ["redact-fixable"]  # no plate: nothing to read
    frames = parse_job(redact.fetch_job("redact-fixable").args[0], RedactJob).frames  # type: ignore[union-attr]
    assert [(f.outcome, f.detail) for f in frames] == [("done", None)]  # detected, not skipped as too old
    assert failed.count == 2 and malformed.id in failed.get_job_ids()


def test_replay_leaves_a_crafted_job_that_failed_without_running(redis_url):
    """A job with a parseable payload and live frames, but a callback, put in the failed registry by RQ's
    own cleaning (no worker ran it, so no refusal mark): replay sees the refusal and leaves it."""
    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")
    connection.set(frame_key("cam:1:0"), b"jpeg")
    payload = DetectJob(batch_id="b", frames=[ref("cam:1:0")]).model_dump(mode="json")
    plain = detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=(payload,))
    crafted = detect.enqueue_call(
        func=STAGE_JOB_FUNCTION, args=(payload,), on_failure=Callback(f"{__name__}.canary_callback")
    )
    failed = FailedJobRegistry(queue=detect)
    for job in (plain, crafted):
        detect.remove(job.id)
        failed.add(job)
    report = replay_failed(connection, connection, ["detect"], dry_run=True)
    assert report.requeued["detect"] == 1 and report.refused["detect"] == 1  # the plain one is a positive control
    assert failed.count == 2 and detect.get_job_ids() == []  # a dry run moves nothing
    report = replay_failed(connection, connection, ["detect"])
    assert (report.requeued["detect"], report.refused["detect"]) == (1, 1)
    assert detect.get_job_ids() == [plain.id] and failed.get_job_ids() == [crafted.id]


def test_replay_reads_no_forged_field_whole(redis_url):
    """A failed job's status field set to 20 MB: the job is read within its bounds (StageJob.refresh), but
    RQ's get_status then fetched the field again, whole. It is counted refused, and Redis sends little."""
    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")
    connection.set(frame_key("cam:1:0"), b"jpeg")
    payload = DetectJob(batch_id="b", frames=[ref("cam:1:0")]).model_dump(mode="json")
    job = detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=(payload,))
    detect.remove(job.id)
    FailedJobRegistry(queue=detect).add(job)
    connection.hset(job.key, "status", b"x" * 20_000_000)
    sent = connection.info("stats")["total_net_output_bytes"]
    report = replay_failed(connection, connection, ["detect"], dry_run=True)
    assert connection.info("stats")["total_net_output_bytes"] - sent < 1_000_000
    assert report.refused["detect"] == 1 and report.requeued["detect"] == 0


def test_with_a_job_key_only_signed_jobs_run_and_a_replayed_one_is_signed_again(redis_url, settings, monkeypatch):
    """A security audit: whoever can write to the queues' Redis forged a redaction job with its box away
    from the plate, and the plate was kept sharp. With ALPR_JOB_KEY set, a job unsigned, signed with
    another key or changed since it was signed is refused unrun; `alpr replay` signs what it changes."""
    from common.stage_job import PERMANENT, StageJob

    key = "job-key-0123456789abcdef"
    monkeypatch.setenv("ALPR_JOB_KEY", key)
    connection = connect_redis(redis_url)
    store = FrameStore(connection, 60)
    image = encode_jpeg(np.full((360, 640, 3), 100, np.uint8), 90)
    store.put_many([(frame_key(f"cam:1:{i}"), image) for i in range(5)])
    enqueue(stage_queue(connection, "detect", key), DetectJob(batch_id="signed", frames=[ref("cam:1:0")]), 60)
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="unsigned", frames=[ref("cam:1:1")]), 60)
    other = stage_queue(connection, "detect", "another-key-0123456789")
    enqueue(other, DetectJob(batch_id="other-key", frames=[ref("cam:1:2")]), 60)
    enqueue(stage_queue(connection, "detect", key), DetectJob(batch_id="changed", frames=[ref("cam:1:3")]), 60)
    changed = StageJob.fetch("detect-changed", connection=connection, serializer=JSONSerializer)
    assert changed.func_name == STAGE_JOB_FUNCTION  # (its data read: RQ then writes the new args back)
    changed.args = [DetectJob(batch_id="changed", frames=[ref("cam:1:4")]).model_dump(mode="json")]
    changed.save()  # its signature kept, its payload another
    worker = ["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    assert main(worker) == 0
    redact = stage_queue(connection, "redact", key)
    assert redact.get_job_ids() == ["redact-signed"]
    failed = FailedJobRegistry(queue=stage_queue(connection, "detect"))
    assert sorted(failed.get_job_ids()) == ["detect-changed", "detect-other-key", "detect-unsigned"]
    for job_id in failed.get_job_ids():
        meta = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer).meta
        assert meta[PERMANENT] == "refused: not signed with the chain's job key (ALPR_JOB_KEY)"
    report = replay_failed(connection, connection, ["detect"], job_key=key)
    assert report.requeued["detect"] == 0 and report.refused["detect"] == 3  # none of ours: never replayed

    detect = stage_queue(connection, "detect", key)  # a signed job that failed (Redis away, say): replayed
    enqueue(detect, DetectJob(batch_id="again", frames=[ref("cam:1:0", age_s=120)]), 60)
    detect.remove("detect-again")
    failed.add(StageJob.fetch("detect-again", connection=connection, serializer=JSONSerializer), ttl=600)
    # replayed with another key than the workers': counted malformed (junk, left to expire); now its own count
    wrong = replay_failed(connection, connection, ["detect"], job_key="wrong-key-0123456789abcdef")
    assert wrong.requeued["detect"] == 0 and wrong.other_key["detect"] == 1 and wrong.refused["detect"] == 3
    monkeypatch.setenv("ALPR_JOB_KEY", "wrong-key-0123456789abcdef")
    assert main(["replay", "--stage", "detect", "--dry-run", "--redis-url", redis_url]) == 1  # and says so
    monkeypatch.setenv("ALPR_JOB_KEY", key)
    unkeyed = replay_failed(connection, connection, ["detect"])  # replayed unsigned: refused, its frames lost
    assert unkeyed.requeued["detect"] == 0 and unkeyed.signed["detect"] == 1
    assert replay_failed(connection, connection, ["detect"], job_key=key).requeued["detect"] == 1
    assert main(worker) == 0
    assert sorted(redact.get_job_ids()) == ["redact-again", "redact-signed"]  # run, though replay changed it


def test_a_signed_job_is_checked_once_however_often_its_refusal_is_asked(redis_url):
    """The worker checks a job and RQ's `func` checks it again: the largest job's signature cost 10 ms, twice."""
    from common.stage_job import SIGNATURE, StageJob

    key = "job-key-0123456789abcdef"
    connection = connect_redis(redis_url)
    enqueue(stage_queue(connection, "detect", key), DetectJob(batch_id="b", frames=[ref("cam:1:0")]), 60)
    job = StageJob.fetch("detect-b", connection=connection, serializer=JSONSerializer)
    job.job_key = key
    assert job.refusal() is None and job.verified_with == key
    job.meta[SIGNATURE] = "0" * 64  # not looked at again in this process: found good once
    assert job.refusal() is None
    job.refresh()  # read again (another process may have changed it): checked afresh
    job.job_key = "another-key-0123456789"
    assert job.refusal() == "not signed with the chain's job key (ALPR_JOB_KEY)"


def test_a_redact_job_is_replayed_though_its_frames_expired(redis_url):
    """Its redactor records each frame, as kept where an earlier attempt kept it whole (the attempt's
    recording failed, then its frames expired), else as expired: left in the registry, the frame was
    logged `lost` and its kept file stayed unnamed by the log."""
    from common.jobs import DetectedFrame

    connection = connect_redis(redis_url)
    redact = stage_queue(connection, "redact")
    job = RedactJob(batch_id="b", frames=[DetectedFrame(frame=ref("cam:1:0"), plates=[])])  # its frame expired
    enqueue(redact, job, 60)
    (job_id,) = redact.get_job_ids()
    redact.remove(job_id)
    FailedJobRegistry(queue=redact).add(redact.fetch_job(job_id))
    report = replay_failed(connection, connection, ["redact"])
    assert (report.requeued["redact"], report.expired["redact"]) == (1, 0)
    assert redact.get_job_ids() == [job_id]


def test_a_failed_entry_whose_job_was_queued_again_since_is_not_pushed_twice(redis_url, capsys):
    """A detect job run again hands on its batch's ids afresh: an OCR or redact job failed for good under
    the same id stayed in the failed registry, and replay pushed the id once more beside the fresh one:
    it sat in the queue twice and ran twice (a review)."""
    connection = connect_redis(redis_url)
    detect, store = stage_queue(connection, "detect"), FrameStore(connection, 60)
    store.put_many([(frame_key("cam:1:0"), encode_jpeg(np.full((36, 64, 3), 100, np.uint8), 90))])
    job = DetectJob(batch_id="b", frames=[ref("cam:1:0", age_s=120)])
    enqueue(detect, job, 60)
    detect.remove("detect-b")
    FailedJobRegistry(queue=detect).add(detect.fetch_job("detect-b"), ttl=600)  # failed for good
    enqueue(detect, job, 60)  # the same id queued afresh
    assert main(["replay", "--stage", "detect", "--redis-url", redis_url]) == 0
    assert connection.lrange(detect.key, 0, -1) == [b"detect-b"]  # once
    connection.lmove(detect.key, detect.intermediate_queue_key)  # taken by a worker, not yet started
    assert main(["replay", "--stage", "detect", "--redis-url", redis_url]) == 0
    assert connection.llen(detect.key) == 0
    connection.delete(detect.intermediate_queue_key)
    detect.fetch_job("detect-b").set_status("finished")  # the fresh run done since
    assert main(["replay", "--stage", "detect", "--redis-url", redis_url]) == 0
    assert connection.llen(detect.key) == 0
