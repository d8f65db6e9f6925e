"""The chain as an attacker and a careless operator would try it, on a private Redis and the real
Postgres, with real workers in this process: only the chain's own jobs run, jobs cannot name other
Redis keys, every plate is blurred whatever the region of interest, a corrupt or stale frame is
isolated from the rest of its job, and every frame ends with a record."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest
from rq import Callback, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.webhook import Webhook

from alpr.cli import main
from common.frame_counts import FrameCounts
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import FrameStore, decode_jpeg, encode_jpeg, frame_key
from common.jobs import DetectJob, FrameRef
from common.queues import STAGE_JOB_FUNCTION, connect_redis, enqueue, stage_queue
from common.replay import replay_failed
from common.stage_job import PERMANENT
from tests.helpers import clip_frames, write_clip

PLATE = "KPX4721"


def ref(frame_id: str, age_s: float = 0.0, roi: list[tuple[float, float]] | None = None) -> FrameRef:
    return FrameRef(frame_id=frame_id, camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time() - age_s,
                    source_time_s=0.0, key=frame_key(frame_id), region="us", roi=roi)  # fmt: skip


def burst(stage: str, redis_url: str, postgres_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    args = ["worker", stage, "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    assert main([*args, "--database-url", postgres_url] if stage != "detect" else args) == 0


def test_jobs_naming_another_function_arguments_or_callbacks_are_refused_unrun(redis_url, settings, tmp_path):
    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")
    canary = tmp_path / "canary"
    attacks = [
        detect.enqueue_call(func="os.system", args=(f"touch {canary}",), retry=Retry(max=2)),
        detect.enqueue_call(func="subprocess.call", args=(["touch", str(canary)],)),
        detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=({}, f"touch {canary}")),
        detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=({},), on_success=Callback("os.system")),
    ]
    image = np.full((360, 640, 3), 100, np.uint8)
    FrameStore(connection, 600).put_many([(frame_key("cam:1:0"), encode_jpeg(image, 90))])
    enqueue(detect, DetectJob(batch_id="good", frames=[ref("cam:1:0")]), 60)
    burst("detect", redis_url, "", settings)
    assert not canary.exists()
    failed = FailedJobRegistry(queue=detect)
    assert sorted(failed.get_job_ids()) == sorted(job.id for job in attacks)
    for attack in attacks:
        job = detect.fetch_job(attack.id)
        assert job is not None and job.meta[PERMANENT].startswith("refused")
    assert detect.fetch_job(attacks[0].id).retries_left == 2  # refused once, never retried
    assert stage_queue(connection, "redact").get_job_ids() == ["redact-good"]  # the worker went on
    report = replay_failed(connection, connection, ["detect"])
    assert report.requeued["detect"] == 0 and report.refused["detect"] == len(attacks)


def test_a_crafted_function_name_forges_no_log_line_and_no_terminal_escape(redis_url, settings, caplog):
    """RQ logs a failed job's function name as it is: a name with a line break and escape codes wrote a
    line of its own (a WARNING of common.worker, forged) and cleared the terminal of whoever read the log."""
    connection = connect_redis(redis_url)
    forged = "x)\nWARNING common.worker: FORGED LINE: redactor keeps no frames\x1b[2J\x1b[31mRED"
    stage_queue(connection, "detect").enqueue_call(func=forged, args=())
    burst("detect", redis_url, "", settings)
    assert "FORGED LINE" in caplog.text  # logged, written out
    assert "\nWARNING common.worker: FORGED" not in caplog.text and "\x1b" not in caplog.text


CALLED: list[str] = []


def canary_callback(job, connection, *exc_info) -> None:  # type: ignore[no-untyped-def]
    """A function a crafted job names as its callback: the test fails if anything ever calls it."""
    CALLED.append(job.id)


def test_callbacks_and_webhooks_of_a_crafted_job_never_run_even_from_registry_cleaning(redis_url, settings):
    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")
    requests: list[str] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = Webhook(f"http://127.0.0.1:{server.server_address[1]}/hook", "failed")
    callback = Callback(f"{__name__}.canary_callback")
    try:
        queued = detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=({},), webhooks=[hook])
        abandoned = detect.enqueue_call(func=STAGE_JOB_FUNCTION, args=({},), on_failure=callback, webhooks=[hook])
        detect.remove(abandoned.id)  # as if a worker had died holding it: RQ's cleaning fails it
        connection.zadd(StartedJobRegistry(queue=detect).key, {f"{abandoned.id}:x": 1})
        burst("detect", redis_url, "", settings)
        time.sleep(0.5)
    finally:
        server.shutdown()
        server.server_close()
    assert CALLED == [] and requests == []
    crafted = Job.fetch(abandoned.id, connection=connection, serializer=JSONSerializer)
    assert crafted.failure_callback is canary_callback and crafted.webhooks  # positive control: a real attack
    assert abandoned.id in FailedJobRegistry(queue=detect).get_job_ids()  # and RQ's cleaning did fail it
    job = detect.fetch_job(queued.id)
    assert job is not None and job.meta[PERMANENT].startswith("refused")


def test_a_malformed_job_fails_once_and_a_key_outside_the_store_is_untouched(redis_url, postgres_url, settings):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    connection.set("canary:x", b"keep me")
    redact = stage_queue(connection, "redact")
    frame = {**ref("cam:1:0").model_dump(mode="json"), "key": "canary:x"}
    payload = {"v": 2, "stage": "redact", "batch_id": "b", "frames": [{"frame": frame, "plates": []}]}
    job = redact.enqueue_call(func=STAGE_JOB_FUNCTION, args=(payload,), retry=Retry(max=2))
    burst("redact", redis_url, postgres_url, settings)
    assert connection.get("canary:x") == b"keep me"
    job = redact.fetch_job(job.id)
    assert job is not None and job.meta[PERMANENT].startswith("rejected: malformed redact job")
    assert job.retries_left == 2 and FailedJobRegistry(queue=redact).get_job_ids() == [job.id]


@pytest.fixture(scope="module")
def plate_frames(tmp_path_factory) -> dict[int, np.ndarray]:  # type: ignore[no-untyped-def]
    clip = tmp_path_factory.mktemp("clip") / "one.mp4"
    truth = write_clip(clip, (PLATE,))
    boxes = {b["frame_index"]: b["box_xyxy"] for b in truth["boxes"]}  # type: ignore[index, union-attr]
    frames = clip_frames(clip, {20, 24})
    return {i: frames[i] for i in frames} | {-1: np.asarray(boxes[20]), -2: np.asarray(boxes[24])}


def test_every_plate_is_blurred_and_bad_frames_are_isolated(
    redis_url, postgres_url, settings, reader_us, plate_frames, tmp_path, monkeypatch
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "kept"))
    connection = connect_redis(redis_url)
    x1, y1, x2, y2 = (int(v) for v in plate_frames[-1])
    assert reader_us.read(plate_frames[20][y1:y2, x1:x2])[0].text == PLATE  # positive control: readable
    elsewhere = [(0.0, 0.0), (60.0, 0.0), (60.0, 60.0), (0.0, 60.0)]
    frames = {
        "cam:1:0": (ref("cam:1:0", roi=elsewhere), encode_jpeg(plate_frames[20], 95)),  # plate outside the ROI
        "cam:1:1": (ref("cam:1:1"), b"\xff\xd8 not a jpeg"),  # corrupt
        "cam:1:2": (ref("cam:1:2", age_s=120), encode_jpeg(plate_frames[24], 95)),  # older than the max age
        "cam:1:3": (ref("cam:1:3"), encode_jpeg(plate_frames[24], 95)),  # read and blurred
        "cam:1:4": (ref("cam:1:4"), encode_jpeg(np.full((720, 1280, 3), 90, np.uint8), 95)),  # no plate
    }
    FrameStore(connection, 600).put_many([(r.key, data) for r, data in frames.values()])
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="b", frames=[r for r, _ in frames.values()]), 60)
    for stage in ("detect", "ocr", "redact"):
        burst(stage, redis_url, postgres_url, settings)
    for stage in ("detect", "ocr", "redact"):
        assert FailedJobRegistry(queue=stage_queue(connection, stage)).count == 0, stage
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT frame_id, outcome, detail, kept_path FROM frames ORDER BY 1").fetchall()
        reads = db.execute("SELECT DISTINCT frame_id, plate_text FROM plate_reads WHERE confidence >= 0.5").fetchall()
    outcomes = {frame_id: (outcome, detail) for frame_id, outcome, detail, _ in rows}
    assert outcomes == {
        "cam:1:0": ("done", None), "cam:1:1": ("corrupt", "undecodable JPEG"), "cam:1:2": ("skipped", "too old"),
        "cam:1:3": ("done", None), "cam:1:4": ("done", None),
    }  # fmt: skip
    assert reads == [("cam:1:3", PLATE)]  # the ROI chose what is read: nothing from cam:1:0
    kept = {frame_id: path for frame_id, _, _, path in rows if path}
    assert set(kept) == {"cam:1:0", "cam:1:3"}  # policy `plates`: the plate-less frame is not kept
    blurred = decode_jpeg(Path(kept["cam:1:0"]).read_bytes(), "kept")
    readings = reader_us.read(blurred[y1:y2, x1:x2])
    assert all(c.text != PLATE for c in readings), readings  # outside the ROI, still blurred
    assert (
        cv2.Laplacian(blurred[y1:y2, x1:x2], cv2.CV_64F).var()
        < 0.2 * cv2.Laplacian(plate_frames[20][y1:y2, x1:x2], cv2.CV_64F).var()
    )
    assert connection.keys("alpr:frame:*") == []


def test_frames_no_stage_finished_are_swept_as_lost_and_a_late_outcome_wins(postgres_url):
    from common.db import open_pool

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)
    try:
        frame_log, tally = FrameLog(pool, patience_s=0), FrameCounts(pool)
        old, new = ref("cam:1:0"), ref("cam:1:1")
        frame_log.record_sampled([FrameRecord(old, "pending")])
        time.sleep(1.5)
        frame_log.record_sampled([FrameRecord(new, "pending")])
        frame_log.record_sampled([FrameRecord(old, "pending")])  # a re-read after a restart: no change
        assert frame_log.sweep_lost(older_than_s=1.0) == (1, 0)  # pending longer than that since it was recorded
        assert tally.outcome_counts() == {"cam": {"lost": 1, "pending": 1}}
        frame_log.record_final([FrameRecord(old, "done"), FrameRecord(new, "done")])
        frame_log.record_final([FrameRecord(new, "expired", "before redaction")])  # a final outcome stays
        assert tally.outcome_counts() == {"cam": {"done": 2}}
        assert tally.pending_counts() == {}
    finally:
        pool.close()


def test_reads_no_ocr_job_recorded_are_swept_as_lost_and_reads_once_done_stay_done(postgres_url):
    from common.db import open_pool

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)
    try:
        frame_log, tally = FrameLog(pool, patience_s=0), FrameCounts(pool)
        unread, read, plateless, read_first, crops_gone = (ref(f"cam:1:{i}") for i in range(5))
        frame_log.record_reads([(read_first, "done"), (crops_gone, "expired")])  # OCR before the redactor
        frame_log.record_final([
            FrameRecord(unread, "done", plates=1, read_outcome="pending"),
            FrameRecord(read, "done", plates=1, read_outcome="pending"),
            FrameRecord(plateless, "done"),
            FrameRecord(read_first, "done", plates=1, read_outcome="pending"),  # the OCR pool's word stands
            FrameRecord(crops_gone, "done", plates=1, read_outcome="pending"),
        ])  # fmt: skip
        frame_log.record_reads([(read, "done")])
        time.sleep(1.5)
        assert frame_log.sweep_lost(older_than_s=1.0) == (0, 1)  # only the reads no OCR job recorded
        assert tally.read_outcome_counts() == {"cam": {"lost": 1, "done": 2, "expired": 1}}
        with pool.connection() as connection:
            rows = dict(connection.execute("SELECT frame_id, read_outcome FROM frames").fetchall())
        assert rows == {"cam:1:0": "lost", "cam:1:1": "done", "cam:1:2": None, "cam:1:3": "done", "cam:1:4": "expired"}
        frame_log.record_reads([(unread, "done"), (read, "expired")])  # a late OCR job; a replay finds no crops
        assert tally.read_outcome_counts() == {"cam": {"done": 3, "expired": 1}}
        frame_log.record_reads([(plateless, "corrupt")])  # a crop swapped in the frames Redis
        frame_log.record_reads([(plateless, "expired")])  # its job run again (a lease ran out): the crops gone
        assert tally.read_outcome_counts() == {"cam": {"done": 3, "expired": 1, "corrupt": 1}}
        assert tally.outcome_counts() == {"cam": {"done": 5}}  # the frames' own outcomes untouched
    finally:
        pool.close()
