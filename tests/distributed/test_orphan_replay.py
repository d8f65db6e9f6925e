"""`alpr replay --orphans` (common/orphan_replay.py) on a private Redis and the real Postgres: frames an ingest
node stored and recorded pending whose detect jobs the queues' Redis lost are queued again from their rows'
references (migration 23) while their bytes live, signed with the chain's job key, and end `done` through real
detect and redact workers; a frame a queued job holds is never queued twice, a second run queues nothing, and a
frame whose bytes expired is counted and left for the sweep to record `lost` (such frames could not be queued
again: their rows lacked the store key, region, ROI and source time a detect job needs); a frame requeued carries
its camera's ROI (the ingest node's ledger buffers records without it), and one whose ROI is not known (adopted from
a spool file) is counted and left, never detected over the whole frame."""

from __future__ import annotations

from typing import Any

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


def chain_environment(monkeypatch: Any, redis_url: str, postgres_url: str, model_dir: Any) -> None:
    """The chain's settings in the environment, as every role of it reads them (the job key JOB_KEY)."""
    for name, value in {"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url, "ALPR_JOB_KEY": JOB_KEY,
                        "ALPR_MODEL_DIR": str(model_dir)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)


def two_stored_orphans(postgres_url: str, redis_url: str) -> tuple[list[FrameRef], Any]:
    """Two frames recorded pending now, with their references, their bytes in the frame store and no job
    holding them; and a connection to the queues' Redis."""
    import time

    refs = [FrameRef(frame_id=f"cam:run:{i}", camera_id="cam", seq=i, frame_index=i, captured_at_s=time.time(),
                     source_time_s=float(i), key=frame_key(f"cam:run:{i}"), region="us") for i in range(2)]  # fmt: skip
    pool = open_pool(postgres_url, max_size=1)
    try:
        FrameLog(pool, 0).record_sampled([FrameRecord(ref, "pending") for ref in refs])
    finally:
        pool.close()
    connection = connect_redis(redis_url)
    for ref in refs:
        connection.set(ref.key, b"its JPEG")
    return refs, connection


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


def queued_rois(connection) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The detect queue's frames -> the ROI each job carries for it."""
    queue = stage_queue(connection, "detect")
    return {f["frame_id"]: f["roi"] for job_id in queue.get_job_ids()
            for f in queue.fetch_job(job_id).args[0]["frames"]}  # type: ignore[union-attr]  # fmt: skip


def test_a_frame_queued_again_carries_its_cameras_region_of_interest(
    redis_url, postgres_url, settings, tmp_path, monkeypatch
):
    """The ingest node's ledger buffers a record without its frame's ROI (a 256-point polygon made each ten
    times its size while Postgres was away): its pending row kept the reference with `roi` null, and a frame
    queued again was detected over the whole frame, the plates outside the operator's ROI read and logged.
    The ledger puts the camera's ROI back as it writes the row."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    for name, value in {"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url, "ALPR_JOB_KEY": JOB_KEY,
                        "ALPR_FRAMES_PER_JOB": "2", "ALPR_MODEL_DIR": str(settings.model_dir)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    clip = tmp_path / "one.mp4"
    write_clip(clip, ("KPX4721",))
    roi = [[10.0, 20.0], [300.0, 20.0], [300.0, 200.0], [10.0, 200.0]]
    cameras = write_cameras(tmp_path / "cameras.yaml", [{"id": "cam", "source": str(clip), "sample_fps": 2,
                                                         "roi": roi}])  # fmt: skip
    assert main(["ingest", "--cameras", str(cameras)]) == 0
    connection = connect_redis(redis_url)
    queued = detect_frames(connection)
    assert len(queued) >= 2
    assert all(r == roi for r in queued_rois(connection).values())  # the jobs the node queued carry it
    with psycopg.connect(postgres_url) as db:
        kept = [r for (r,) in db.execute("SELECT frame_ref -> 'roi' FROM frames WHERE outcome = 'pending'")]
    assert len(kept) == sum(len(frames) for frames in queued.values()) and all(r == roi for r in kept)

    detect = stage_queue(connection, "detect")  # the queues' Redis loses every detect job
    connection.delete(detect.key, *(RqJob.key_for(job_id) for job_id in queued))
    assert main(["replay", "--orphans"]) == 0
    requeued = queued_rois(connection)
    assert sorted(requeued) == sorted(f for names in queued.values() for f in names)
    assert all(r == roi for r in requeued.values())


def test_a_frame_whose_region_of_interest_is_not_known_is_not_queued_again(
    redis_url, postgres_url, tmp_path, monkeypatch, capsys
):
    """A spool file's lines hold no ROI: a pending frame a killed node left in one, adopted and written by the
    next, may have had one. Its row keeps no reference, and `alpr replay --orphans` counts it (no reference)
    rather than queueing it to be detected over the whole frame."""
    import time

    from common.metrics import Metrics
    from ingest.ledger import FrameLedger
    from ingest.spool_files import record_line
    from tests.helpers import wait_for

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    ref = FrameRef(frame_id="cam:run:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                   source_time_s=0.0, key=frame_key("cam:run:0"), region="us")  # fmt: skip
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    left = spool / "ledger-1-1.jsonl"
    left.write_text(record_line(FrameRecord(ref, "pending")))  # as a node killed left it: the ROI dropped
    connection = connect_redis(redis_url)
    connection.set(ref.key, b"its JPEG")  # its bytes still stored
    pool = open_pool(postgres_url, max_size=2)
    try:
        ledger = FrameLedger(lambda: FrameLog(pool, 0), Metrics(), capacity=10, spool_dir=spool)
        ledger.start()
        wait_for(lambda: not left.exists(), 10, "the spool file adopted and written")
        assert ledger.close(5) == 0
    finally:
        pool.close()
    assert outcomes(postgres_url) == {"cam:run:0": ("pending", False)}
    capsys.readouterr()
    assert main(["replay", "--orphans", "--redis-url", redis_url, "--database-url", postgres_url]) == 0
    told = capsys.readouterr()
    assert told.out.splitlines()[1].split() == ["1", "0", "0", "0", "1", "0"] and "spool" in told.err
    assert detect_frames(connection) == {}


def test_nothing_is_queued_again_while_a_jobs_payload_could_not_be_read(redis_url, postgres_url, monkeypatch, capsys):
    """A job whose payload could not be read and that may hold frames — its record gone since its id was read (it
    may have run and handed them on), or a running job's record lost but for the field RQ's heartbeat writes — may
    hold frames the finder counts in no job: `alpr replay --orphans` queued them again, each detected twice (a
    review). It queues nothing, says why, and fails; once the jobs are gone from the queues, it queues them."""
    import time

    from rq.registry import StartedJobRegistry

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    refs, connection = two_stored_orphans(postgres_url, redis_url)  # their bytes stored, no job holds them
    detect = stage_queue(connection, "detect")
    connection.rpush(detect.key, "gone")  # listed, its record gone: it may hold both frames
    started = StartedJobRegistry(queue=detect).key
    connection.hset(RqJob.key_for("running"), "last_heartbeat", "2025-01-01T00:00:00.000000Z")
    connection.zadd(started, {"running:execution": time.time() + 60})
    base = ["replay", "--orphans", "--redis-url", redis_url, "--database-url", postgres_url]
    capsys.readouterr()
    assert main(base) == 1  # was 0, both frames queued again
    error = capsys.readouterr().err
    assert "nothing queued: 2 jobs of the frames' queues could not be read" in error and "queued twice" in error
    assert detect.get_job_ids() == ["gone"]
    connection.delete(detect.key, started, RqJob.key_for("running"))
    assert main(base) == 0
    assert sorted(f for names in detect_frames(connection).values() for f in names) == [r.frame_id for r in refs]


def test_a_job_not_of_the_chains_form_does_not_stop_orphans_being_queued_again(
    redis_url, postgres_url, settings, monkeypatch, capsys
):
    """A job that can never run a frame — another function (`os.getcwd`, pickled), a payload not of a detect
    job's form signed or not, data over the workers' bound, a record without data that its worker refused — was
    counted as a job whose payload could not be read: refused at claim, it sat in the failed registry its hour,
    and all that time `alpr replay --orphans` queued nothing (anyone with Redis access stopped the recovery of
    orphaned frames). Only a job that may hold frames stops it: the record without data before a worker refused
    it."""

    from rq import Queue
    from rq.registry import FailedJobRegistry

    from common.defaults import MAX_JOB_DATA_BYTES
    from common.stage_job import PERMANENT, SIGNATURE, STAGE_JOB_FUNCTION, job_signature

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    chain_environment(monkeypatch, redis_url, postgres_url, settings.model_dir)
    refs, connection = two_stored_orphans(postgres_url, redis_url)  # their bytes stored, no job holds them
    detect = stage_queue(connection, "detect", JOB_KEY)
    Queue(detect.name, connection=connection).enqueue("os.getcwd", job_id="getcwd")  # RQ's pickle, not ours
    detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=({"detect": "me"},), job_id="unsigned")
    payload = {"batch_id": "b", "frames": "none"}  # signed with the chain's key, not a detect job
    detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=(payload,), job_id="signed",
                        meta={SIGNATURE: job_signature(JOB_KEY, "signed", payload)})  # fmt: skip
    forged = {"batch_id": "b", "frames": [ref.model_dump(mode="json") for ref in refs]}  # their frames named
    detect.enqueue_call(func="os.getcwd", args=(forged,), job_id="forged")  # by another function: never run
    connection.hset(RqJob.key_for("nodata"), "origin", detect.name)  # a record without data, not yet refused
    oversized = b"[" * (MAX_JOB_DATA_BYTES + 1)  # data over the workers' bound: refused at claim
    connection.hset(RqJob.key_for("oversized"), mapping={"origin": detect.name, "data": oversized})
    connection.rpush(detect.key, "nodata", "oversized")
    base = ["replay", "--orphans"]
    capsys.readouterr()
    assert main(base) == 1  # the record without data: not yet claimed, it is not told from one that holds frames
    assert "nothing queued: 1 jobs of the frames' queues could not be read" in capsys.readouterr().err

    assert main(["worker", "detect", "--burst"]) == 0  # each refused, or rejected, at claim
    failed = connection.zrange(FailedJobRegistry(queue=detect).key, 0, -1)
    assert sorted(failed) == [b"forged", b"getcwd", b"nodata", b"oversized", b"signed", b"unsigned"]
    marks = {job_id: detect.fetch_job(job_id).meta.get(PERMANENT, "")  # type: ignore[union-attr]
             for job_id in ("nodata", "oversized", "signed", "unsigned")}  # fmt: skip
    assert all(marks[job_id].startswith("refused: ") for job_id in ("nodata", "oversized", "unsigned"))
    assert marks["signed"].startswith("rejected: ")
    assert main(base) == 0  # was 1: nothing queued for the failed registry's hour (and the forged job's frames
    # were held by it: never queued again)
    assert sorted(f for names in detect_frames(connection).values() for f in names) == [r.frame_id for r in refs]
    assert main(base) == 0  # a second run queues nothing: they are held now
    assert capsys.readouterr().out.splitlines()[-1].split()[:3] == ["0", "0", "0"]


def test_a_failed_jobs_entry_left_after_its_record_expired_does_not_stop_orphans_being_queued_again(
    redis_url, postgres_url, monkeypatch, capsys
):
    """A failed job's record expires with its entry's score (RQ scores a failed registry's entry with the
    record's expiry); the entry stays until a worker's maintenance drops it. Read, it was a record gone since
    its id was read: with the detect pool down past a failed job's hour (when orphans are recovered), `alpr
    replay --orphans` queued nothing until a worker ran. An entry not yet expired whose record is gone still
    stops it (the job may have been taken off meanwhile, its frames handed on)."""
    import time

    from rq.registry import FailedJobRegistry

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_JOB_KEY", JOB_KEY)
    refs, connection = two_stored_orphans(postgres_url, redis_url)  # their bytes stored, no job holds them
    detect = stage_queue(connection, "detect")
    failed = FailedJobRegistry(queue=detect).key
    connection.zadd(failed, {"expired": time.time() - 5, "current": time.time() + 3600})  # neither record there
    base = ["replay", "--orphans", "--redis-url", redis_url, "--database-url", postgres_url]
    capsys.readouterr()
    assert main(base) == 1  # the current entry's record gone: it may have been taken off meanwhile
    assert "1 jobs of the frames' queues could not be read" in capsys.readouterr().err
    connection.zrem(failed, "current")
    assert main(base) == 0  # was 1: the expired entry's record read as gone
    assert sorted(f for names in detect_frames(connection).values() for f in names) == [r.frame_id for r in refs]


def test_a_job_refused_at_claim_holds_none_of_the_frames_it_names(
    redis_url, postgres_url, settings, monkeypatch, capsys
):
    """An ingest node still on the job key before a rotation: its detect job names real frames, and the workers
    refuse it at claim (not signed with their key: never run, never replayed). Counted as holding its frames for
    its hour in the failed registry, they were never queued again, their bytes expired (600 s) and the sweep
    recorded them lost. They are orphans: queued again under the chain's key."""

    from rq.registry import FailedJobRegistry

    from common.stage_job import PERMANENT, SIGNATURE, STAGE_JOB_FUNCTION, job_signature

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    chain_environment(monkeypatch, redis_url, postgres_url, settings.model_dir)
    refs, connection = two_stored_orphans(postgres_url, redis_url)  # their bytes stored, no job holds them
    detect = stage_queue(connection, "detect", JOB_KEY)
    payload = {"batch_id": "b", "frames": [ref.model_dump(mode="json") for ref in refs]}
    detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=(payload,), job_id="old-key",
                        meta={SIGNATURE: job_signature("the-key-before-the-rotation", "old-key", payload)})  # fmt: skip
    assert main(["worker", "detect", "--burst"]) == 0
    assert connection.zrange(FailedJobRegistry(queue=detect).key, 0, -1) == [b"old-key"]
    assert detect.fetch_job("old-key").meta[PERMANENT].startswith("refused: ")  # type: ignore[union-attr]
    assert main(["replay", "--orphans"]) == 0
    assert sorted(f for names in detect_frames(connection).values() for f in names) == [r.frame_id for r in refs]
