"""`alpr status` sizes a pool for its queue's backlog too, on a real Redis with real queued jobs: once the
cameras stopped (nothing offered), a pool whose queue still held jobs was sized at 0 workers, the answer a
city operator asking "how many workers" with a backlog read as "none needed"."""

from __future__ import annotations

import time
import tracemalloc
import zlib
from typing import Any

from alpr.pool_sizing import BACKLOG_SAMPLE_JOBS, queued_frames
from alpr.status import print_pool_sizes, workers_needed
from common import defaults
from common.frame_store import frame_key
from common.jobs import DetectJob, FrameRef
from common.queues import STATS_BUSY_KEY, STATS_FRAMES_KEY, add_stats, connect_redis, enqueue, stage_queue


def test_a_backlog_is_sized_to_drain_in_the_time_stated():
    assert workers_needed(busy_s=12.0, frames=100, in_fps=0.0) == 0  # nothing offered, nothing queued
    assert workers_needed(busy_s=12.0, frames=100, in_fps=0.0, backlog_s=1.0) == 1  # a job queued: never 0
    drain_s = defaults.TARGET_BUSY * 600.0
    assert workers_needed(busy_s=1.0, frames=1, in_fps=0.0, backlog_s=2.5 * drain_s, drain_s=600.0) == 3
    assert workers_needed(busy_s=1.0, frames=1, in_fps=0.8, backlog_s=drain_s, drain_s=600.0) == 2  # input and drain
    assert workers_needed(busy_s=0.0, frames=0, in_fps=0.0, backlog_s=5.0) is None  # no measure: "-", not 0


def frames(batch: int, count: int) -> list[FrameRef]:
    return [
        FrameRef(
            frame_id=f"cam:1:{batch * count + i}",
            camera_id="cam",
            seq=i,
            frame_index=i,
            captured_at_s=0.0,
            source_time_s=float(i),
            key=frame_key(f"cam:1:{batch * count + i}"),
            region="us",
        )
        for i in range(count)
    ]


def pool_rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:4] for line in out.splitlines() if line.split()[:1] in (["detect"],
            ["ocr"], ["redact"]) and len(line.split()) >= 4}  # fmt: skip


def test_a_queue_holding_jobs_after_the_cameras_stopped_is_not_sized_at_0(redis_url, capsys):
    """1 s of detection a frame; 250 jobs of 4 frames waiting, none offered: 1,000 s of work, drained within
    the stated 10 minutes at 80% busy by 3 workers (1000 / 600 / 0.8 = 2.1). The empty queues stay at 0."""
    connection = connect_redis(redis_url)
    add_stats(connection, {STATS_FRAMES_KEY: {"detect": 100, "ocr": 20, "redact": 100}},
              {STATS_BUSY_KEY: {"detect": 100.0, "ocr": 4.0, "redact": 1.0}})  # fmt: skip
    detect = stage_queue(connection, "detect")
    for batch in range(250):
        enqueue(detect, DetectJob(batch_id=f"b{batch}", frames=frames(batch, 4)), 60)
    queued = {"detect": 250, "ocr": 0, "redact": 0}
    print_pool_sizes(connection, 0.0, {"detect": 0, "ocr": 0, "redact": 0}, queued)
    out = capsys.readouterr().out
    assert "drain" in out.splitlines()[1] and "10 min" in out.splitlines()[1], out
    assert pool_rows(out) == {"detect": ["0", "1.000", "3"], "ocr": ["0", "0.040", "0"], "redact": ["0", "0.010", "0"]}


def test_a_small_backlog_needs_one_worker_not_0(redis_url, capsys):
    connection = connect_redis(redis_url)
    add_stats(connection, {STATS_FRAMES_KEY: {"detect": 100}}, {STATS_BUSY_KEY: {"detect": 5.0}})
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="last", frames=frames(0, 1)), 60)
    print_pool_sizes(connection, 0.0, {"detect": 0, "ocr": 0, "redact": 0}, {"detect": 1, "ocr": 0, "redact": 0})
    assert pool_rows(capsys.readouterr().out)["detect"] == ["0", "0.050", "1"]


def queued_detect_jobs(connection: Any, frames_each: list[int]) -> list[str]:
    queue = stage_queue(connection, "detect")
    return [enqueue(queue, DetectJob(batch_id=f"b{i}", frames=frames(i, n)), 60) for i, n in enumerate(frames_each)]


def test_an_unreadable_job_in_the_sample_is_left_out_not_the_whole_sample(redis_url):
    """One job of the sample that cannot be read (not the chain's data) made every job of the backlog count as
    one frame: 20 jobs of 4 frames read as 20 frames, not 76 (19 readable jobs of 4)."""
    connection = connect_redis(redis_url)
    ids = queued_detect_jobs(connection, [4] * 20)
    connection.hset(f"rq:job:{ids[0]}", "data", b"not a job")
    assert queued_frames(connection, "detect", 20) == 80.0  # the mean of the 19 read: 4 a job


def test_the_sample_is_the_first_20_waiting(redis_url):
    """RQ's get_job_ids takes a length, not a last index: the sample read 19 jobs."""
    connection = connect_redis(redis_url)
    queued_detect_jobs(connection, [1] * (BACKLOG_SAMPLE_JOBS - 1) + [41] + [1] * 5)
    assert queued_frames(connection, "detect", BACKLOG_SAMPLE_JOBS) == (BACKLOG_SAMPLE_JOBS - 1 + 41)


def test_forged_jobs_at_the_size_bound_are_sampled_in_little_memory(redis_url):
    """20 forged jobs, each data a list of two million frames within MAX_JOB_DATA_BYTES once decompressed: read
    together and decoded whole they took 2.7 s and some 490 MB (a review); each counts as MAX_FRAMES_PER_JOB."""
    connection = connect_redis(redis_url)
    ids = queued_detect_jobs(connection, [1] * BACKLOG_SAMPLE_JOBS)
    listed = (defaults.MAX_JOB_DATA_BYTES - 200) // 2
    body = '["common.worker.run_stage_job", null, [{"frames": [' + ",".join(["0"] * listed) + "]}], {}]"
    assert len(body) <= defaults.MAX_JOB_DATA_BYTES
    data = zlib.compress(body.encode(), 9)
    for job_id in ids:
        connection.hset(f"rq:job:{job_id}", "data", data)
    del body
    tracemalloc.start()
    try:
        started = time.thread_time()  # this thread's CPU: the decoding, not the machine's load (a wall clock read
        # 0.12 s quiet and 0.74 s beside a test run, for 0.1 to 0.15 s of CPU; decoded whole, 20 such jobs take
        # some 26 s of CPU under tracemalloc)
        counted = queued_frames(connection, "detect", BACKLOG_SAMPLE_JOBS)
        took_s = time.thread_time() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counted == BACKLOG_SAMPLE_JOBS * defaults.MAX_FRAMES_PER_JOB
    assert peak < 32 * 1024 * 1024, peak
    assert took_s < 2.0, took_s
