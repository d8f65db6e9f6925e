"""`alpr status` on frames in the chain that no job holds (common/orphans.py, alpr/status_orphans.py): on a
private Redis restarted without persistence and the real Postgres, the frames whose jobs Redis lost are
told apart from those a queue, a running job or a failed job still holds, per camera, with when the sweep
records them lost (status counted them `in chain` for 12 minutes, every queue empty: a fault review)."""

from __future__ import annotations

import time

import numpy as np
from rq.registry import FailedJobRegistry, StartedJobRegistry

from alpr.cli import main
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import DetectedFrame, DetectJob, FrameRef, RedactJob
from common.queues import connect_redis, enqueue, stage_queue


def ref(camera_id: str, index: int) -> FrameRef:
    frame_id = f"{camera_id}:run:{index}"
    return FrameRef(frame_id=frame_id, camera_id=camera_id, seq=index, frame_index=index,
                    captured_at_s=time.time() - 30, source_time_s=float(index), key=frame_key(frame_id),
                    region="us")  # fmt: skip


def queue_jobs(redis_url: str, frames: list[FrameRef]) -> None:
    """frames[0:2] in a waiting detect job, frames[2] in a failed one, frames[3] in a redact job, frames[4]
    in a running detect job (its started registry's entry `<job id>:<execution id>`, as RQ writes it)."""
    connection, node = connect_redis(redis_url), f"node{frames[0].camera_id}"
    FrameStore(connection, 600).put_many([(f.key, encode_jpeg(np.zeros((32, 32, 3), np.uint8), 90)) for f in frames])
    detect = stage_queue(connection, "detect")
    enqueue(detect, DetectJob(batch_id=f"{node}:0", frames=frames[0:2]), 60)
    enqueue(detect, DetectJob(batch_id=f"{node}:1", frames=frames[2:3]), 60)
    failed = detect.fetch_job(f"detect-{node}_c1")
    detect.remove(failed.id)
    FailedJobRegistry(queue=detect).add(failed, ttl=600)
    redact = stage_queue(connection, "redact")
    enqueue(redact, RedactJob(batch_id=f"{node}:2", frames=[DetectedFrame(frame=frames[3], plates=[])]), 60)
    enqueue(detect, DetectJob(batch_id=f"{node}:3", frames=frames[4:5]), 60)
    detect.remove(f"detect-{node}_c3")
    connection.zadd(StartedJobRegistry(queue=detect).key, {f"detect-{node}_c3:0f1e2d": time.time() + 600})


def test_status_tells_the_frames_in_chain_no_job_holds_after_the_queues_redis_restarts_empty(
    redis_server, postgres_url, capsys
):
    """cam6's jobs lost with the queues' Redis (killed, nothing saved), cam7's queued again after: status
    tells cam6's 5 frames in no job and when the sweep records them lost, and none of cam7's 5, held by a
    waiting, a running and a failed detect job and a redaction job."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        cam6 = [ref("cam6", index) for index in range(5)]
        cam7 = [ref("cam7", index) for index in range(5)]
        queue_jobs(redis_server.url, cam6)
        queue_jobs(redis_server.url, cam7)
        FrameLog(pool, 0).record_sampled([FrameRecord(f, "pending") for f in cam6 + cam7])
        argv = ["status", "--interval", "0.01", "--redis-url", redis_server.url, "--database-url", postgres_url]
        capsys.readouterr()
        assert main(argv) == 0
        assert "in no job" not in capsys.readouterr().out  # every frame in a job

        redis_server.stop()  # killed: nothing saved (`--save ""`, no AOF), as `shutdown nosave`
        redis_server.start()
        queue_jobs(redis_server.url, cam7)  # cam7's jobs queued again; cam6's lost
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "of the frames in chain, 5 are in no job" in out
        assert "the sweep records them lost at" in out
        rows = [line.split() for line in out.splitlines() if line.endswith("in no job")]
        assert rows == [["cam6", "5", "in", "no", "job"]]  # cam7's frames are held by jobs: not counted
    finally:
        pool.close()


def test_orphans_are_the_pending_frames_no_job_names_each_examined_within_its_cap(
    redis_server, postgres_url, monkeypatch
):
    """find_orphans: the frames each kind of job holds are read from their payloads; a frame finished
    meanwhile is none; past the frames' cap the oldest are examined and it says so; past the jobs' cap no
    count is told (a frame in a job not read would be called one)."""
    import common.orphans
    from common.orphans import find_orphans, held_frame_ids, held_job_ids

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        cam6 = [ref("cam6", index) for index in range(6)]
        cam7 = [ref("cam7", index) for index in range(5)]
        queue_jobs(redis_server.url, cam7)
        log = FrameLog(pool, 0)
        log.record_sampled([FrameRecord(f, "pending") for f in cam6 + cam7])
        connection = connect_redis(redis_server.url)
        job_ids = held_job_ids(connection)
        assert job_ids == ["detect-nodecam7_c0", "detect-nodecam7_c1", "detect-nodecam7_c3", "redact-nodecam7_c2"]
        assert held_frame_ids(connection, job_ids) == ({f.frame_id for f in cam7}, 0)

        log.record_final([FrameRecord(cam6[0], "done")])
        found = find_orphans(pool, connection, 3600)
        assert dict(found.per_camera) == {"cam6": 5} and found.examined == 10 and found.all_examined
        assert found.frame_ids == sorted(f.frame_id for f in cam6[1:]) and found.unknown is None

        monkeypatch.setattr(common.orphans, "ORPHAN_FRAMES_EXAMINED", 3)
        capped = find_orphans(pool, connection, 3600)
        assert capped.examined == 3 and not capped.all_examined and sum(capped.per_camera.values()) <= 3
        monkeypatch.setattr(common.orphans, "ORPHAN_JOBS_READ", 3)
        assert held_job_ids(connection) is None
        assert find_orphans(pool, connection, 3600).unknown is not None
    finally:
        pool.close()


def test_status_json_gives_the_frames_logs_accounting_when_a_database_is_named(
    redis_server, postgres_url, capsys, monkeypatch
):
    """`alpr status --json --database-url URL` printed the chain's part only, the URL ignored without a
    word (from ALPR_DATABASE_URL too): a monitoring script asking for the frames log's accounting got none.
    Now `accounting` (per camera the window's frames by outcome, the frames' reads, sightings begun, alert
    deliveries) and `frames_in_no_job`, as the text shows them; without a database, neither key."""
    import json

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        cam6 = [ref("cam6", index) for index in range(5)]
        FrameLog(pool, 0).record_sampled([FrameRecord(f, "pending") for f in cam6])
    finally:
        pool.close()
    base = ["status", "--json", "--redis-url", redis_server.url]
    capsys.readouterr()
    assert main(base) == 0
    assert "accounting" not in json.loads(capsys.readouterr().out)
    for argv, environ in [([*base, "--database-url", postgres_url], {}), (base, {"ALPR_DATABASE_URL": postgres_url})]:
        with monkeypatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            assert main([*argv, "--hours", "2"]) == 0
        document = json.loads(capsys.readouterr().out)
        accounting = document["accounting"]
        assert accounting["window_hours"] == 2 and accounting["counted_from"] is None
        assert accounting["cameras"] == {
            "cam6": {"sampled": 5, "done": 0, "skipped": 0, "expired": 0, "corrupt": 0, "lost": 0, "in_chain": 5,
                     "reads": {"pending": 0, "expired": 0, "corrupt": 0, "lost": 0, "refused": 0, "skipped": 0}}
        }  # fmt: skip
        assert accounting["sightings_begun"] == {}
        assert accounting["alert_deliveries"] == dict.fromkeys(
            ("pending", "sending", "delivered", "failed", "rejected"), 0
        )
        assert document["frames_in_no_job"]["cameras"] == {"cam6": 5}  # no job holds them: none queued
    from tests.helpers import free_port

    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    assert main([*base, "--database-url", unreachable]) == 2  # the frames log unread: no check passes
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # the chain's part printed all the same, the accounting null
    assert document["accounting"] is None and document["frames_in_no_job"] is None and "queues" in document
    [line] = captured.err.strip().splitlines()
    assert line.startswith("alpr: error: ")
