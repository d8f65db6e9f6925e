"""`alpr replay --orphans` (common/orphan_replay.py) on a private Redis and the real Postgres: frames an ingest
node stored and recorded pending whose detect jobs the queues' Redis lost are queued again from their rows'
references (migration 23) while their bytes live, signed with the chain's job key, and end `done` through real
detect and redact workers; a frame a queued job holds is never queued twice, a second run queues nothing, and a
frame whose bytes expired is counted and left for the sweep to record `lost` (such frames could not be queued
again: their rows lacked the store key, region, ROI and source time a detect job needs)."""

from __future__ import annotations

import psycopg
from rq.job import Job as RqJob

from alpr.cli import main
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.orphan_replay import REPLAY_LOCK_KEY
from common.queues import connect_redis, stage_queue
from tests.helpers import write_cameras, write_clip

JOB_KEY = "chain-job-key-0123456789"


def detect_frames(connection) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """The detect queue's jobs -> the frame ids each names."""
    queue = stage_queue(connection, "detect")
    return {job_id: [f["frame_id"] for f in queue.fetch_job(job_id).args[0]["frames"]]  # type: ignore[union-attr]
            for job_id in queue.get_job_ids()}  # fmt: skip


def outcomes(postgres_url: str) -> dict[str, tuple[str, bool]]:
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_id, outcome, frame_ref IS NOT NULL FROM frames").fetchall()
    return {frame_id: (outcome, has_ref) for frame_id, outcome, has_ref in rows}


def test_frames_whose_jobs_the_queues_redis_lost_are_queued_again_and_end_done(
    redis_url, postgres_url, settings, tmp_path, monkeypatch, capsys
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    for name, value in {"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url, "ALPR_JOB_KEY": JOB_KEY,
                        "ALPR_FRAMES_PER_JOB": "2", "ALPR_MODEL_DIR": str(settings.model_dir),
                        "ALPR_KEEP_DIR": str(tmp_path / "kept")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    clip = tmp_path / "one.mp4"
    write_clip(clip, ("KPX4721",))  # 40 frames at 10 fps
    cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "cam", "source": str(clip), "sample_fps": 2}])
    assert main(["ingest", "--cameras", str(cameras)]) == 0
    connection = connect_redis(redis_url)
    queued = detect_frames(connection)
    frame_ids = sorted(f for names in queued.values() for f in names)
    assert len(queued) >= 3 and len(frame_ids) >= 6
    assert all(has_ref for outcome, has_ref in outcomes(postgres_url).values() if outcome == "pending")

    # the queues' Redis loses every detect job but the first (restarted without persistence); the frame store
    # keeps the frames, all but one whose TTL ran out
    kept_job, *lost_jobs = sorted(queued)
    detect = stage_queue(connection, "detect")
    connection.delete(detect.key, *(RqJob.key_for(job_id) for job_id in lost_jobs))
    connection.rpush(detect.key, kept_job)
    held = set(queued[kept_job])
    orphans = sorted(set(frame_ids) - held)
    expired = orphans[-1]
    with psycopg.connect(postgres_url) as db:  # the key the node stored it under, as its row keeps it
        (key,) = db.execute("SELECT frame_ref ->> 'key' FROM frames WHERE frame_id = %s", (expired,)).fetchone()
    assert connection.delete(key) == 1
    jobs = -(-(len(orphans) - 1) // 2)  # two frames a job (ALPR_FRAMES_PER_JOB)
    argv = ["replay", "--orphans"]
    capsys.readouterr()
    assert main(["status", "--interval", "0.01"]) == 0
    told = capsys.readouterr().out
    assert f"of the frames in chain, {len(orphans)} are in no job" in told and "alpr replay --orphans" in told

    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == [str(len(orphans)), str(len(orphans) - 1),
                                                               str(jobs), "1", "0", "0"]  # fmt: skip
    assert detect_frames(connection) == {kept_job: queued[kept_job]}  # a dry run queues nothing
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == [str(len(orphans)), str(len(orphans) - 1),
                                                                   str(jobs), "1"]  # fmt: skip
    requeued = detect_frames(connection)
    named = sorted(f for names in requeued.values() for f in names)
    assert named == sorted(set(frame_ids) - {expired})  # each frame in one job: the held ones not again
    assert main(argv) == 0  # run again: the frames requeued are held now, only the expired one is in no job
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["1", "0", "0", "1"]
    assert detect_frames(connection) == requeued
    assert connection.get(REPLAY_LOCK_KEY) is None  # released

    assert main(["worker", "detect", "--burst"]) == 0  # signed as the ingest node signs: run, not refused
    assert main(["worker", "redact", "--burst"]) == 0
    ended = outcomes(postgres_url)
    assert {f: ended[f] for f in frame_ids if f != expired} == {f: ("done", False) for f in frame_ids if f != expired}
    assert ended[expired] == ("pending", True)

    pool = open_pool(postgres_url, max_size=1)
    try:
        with psycopg.connect(postgres_url) as db:  # its TTL and the job timeout past: the sweep's to record
            db.execute("UPDATE frames SET done_at = now() - interval '1 hour' WHERE outcome = 'pending'")
        assert FrameLog(pool, 0).sweep_lost(settings.frame_ttl_s + settings.job_timeout_s) == (1, 0)
    finally:
        pool.close()
    assert outcomes(postgres_url)[expired] == ("lost", False)


def test_only_a_queued_frame_keeps_its_reference_and_options_are_checked(postgres_url, redis_url, capsys):
    """A pending row keeps the frame's reference, a skipped one none; an ended frame's is dropped;
    --orphans with --stage is refused; with another run under way, refused."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    refs = [FrameRef(frame_id=f"cam:run:{i}", camera_id="cam", seq=i, frame_index=i, captured_at_s=1.7e9 + i,
                     source_time_s=float(i), key=frame_key(f"cam:run:{i}"), region="us", roi=[(0, 0), (9, 0), (9, 9)])
            for i in range(3)]  # fmt: skip
    pool = open_pool(postgres_url, max_size=1)
    try:
        log = FrameLog(pool, 0)
        log.record_sampled([FrameRecord(refs[0], "pending"), FrameRecord(refs[1], "skipped", "backpressure"),
                            FrameRecord(refs[2], "pending")])  # fmt: skip
        with psycopg.connect(postgres_url) as db:
            kept = dict(db.execute("SELECT frame_id, frame_ref FROM frames").fetchall())
        assert FrameRef.model_validate(kept["cam:run:0"]) == refs[0] and kept["cam:run:1"] is None
        log.record_final([FrameRecord(refs[2], "done")])
        assert outcomes(postgres_url)["cam:run:2"] == ("done", False)
    finally:
        pool.close()
    base = ["replay", "--orphans", "--redis-url", redis_url, "--database-url", postgres_url]
    assert main([*base, "--stage", "detect"]) == 2
    assert "--orphans" in capsys.readouterr().err
    connect_redis(redis_url).set(REPLAY_LOCK_KEY, "another")
    assert main(base) == 2
    assert "under way" in capsys.readouterr().err
