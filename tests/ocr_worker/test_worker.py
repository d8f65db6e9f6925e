"""The OCR pool's edge on a private Redis and a fresh Postgres schema, with the real reader in
`alpr worker ocr` / `alpr worker redact` bursts: OCR and redaction of a batch run side by side in
either order; the reads are logged with the frame's stage timings, the OCR time reaches the frame's
row whichever stage finishes first, each stage records its own outcome (the frame's is the redactor's,
its reads' the OCR pool's; reads no OCR job records end lost, and a frame of a region the pool does
not know is refused alone), and the crops are deleted."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest
from rq.registry import FailedJobRegistry

from alpr.cli import main
from common import geometry
from common.db import open_pool
from common.frame_counts import FrameCounts, RecentCounts
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import DetectedFrame, FrameRef, OcrJob, PlateBox, RedactJob
from common.queues import connect_redis, enqueue, stage_queue
from ocr_worker.core import SIDE_EDGE_MAX_CONFIDENCE
from tests.helpers import clip_frames, write_clip

PLATE = "KPX4721"


@pytest.fixture(scope="module")
def plate_frame(tmp_path_factory) -> tuple[np.ndarray, tuple[float, float, float, float]]:  # type: ignore[no-untyped-def]
    clip = tmp_path_factory.mktemp("clip") / "one.mp4"
    truth = write_clip(clip, (PLATE,))
    box = next(b["box_xyxy"] for b in truth["boxes"] if b["frame_index"] == 22)  # type: ignore[index, union-attr]
    return clip_frames(clip, {22})[22], tuple(float(v) for v in box)  # type: ignore[return-value]


def burst(stage: str, redis_url: str, postgres_url: str, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["worker", stage, "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    assert main([*args, "--database-url", postgres_url]) == 0


@pytest.mark.parametrize("first", ["ocr", "redact"])
def test_ocr_and_redaction_of_a_batch_finish_in_either_order(
    first, redis_url, postgres_url, settings, plate_frame, tmp_path, monkeypatch
):
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "kept"))
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    frame = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=22, captured_at_s=time.time(),
                     source_time_s=4.4, key=frame_key("cam:1:0"), region="us", stage_ms={"detect": 40.0})  # fmt: skip
    crop_key = frame_key("cam:1:0:plate0")
    FrameStore(connection, 600).put_many([
        (frame.key, encode_jpeg(image, 95)), (crop_key, encode_jpeg(geometry.crop(image, box, 0.08), 95)),
    ])  # fmt: skip
    detected = DetectedFrame(frame=frame, plates=[PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key)])
    enqueue(stage_queue(connection, "ocr"), OcrJob(batch_id="b", frames=[detected]), 60)
    enqueue(stage_queue(connection, "redact"), RedactJob(batch_id="b", frames=[detected]), 60)

    burst(first, redis_url, postgres_url, settings, tmp_path)
    with psycopg.connect(postgres_url) as db:
        outcome, reads_outcome = db.execute("SELECT outcome, read_outcome FROM frames").fetchone()  # type: ignore[misc]
    assert outcome == ("pending" if first == "ocr" else "done")  # each stage records its own outcome
    assert reads_outcome == ("done" if first == "ocr" else "pending")
    burst("redact" if first == "ocr" else "ocr", redis_url, postgres_url, settings, tmp_path)

    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT outcome, stage_ms, plates, read_outcome FROM frames").fetchall()
        reads = db.execute("SELECT plate_text, source_time_s, stage_ms FROM plate_reads").fetchall()
    assert len(rows) == 1 and rows[0][0] == "done" and rows[0][2] == 1 and rows[0][3] == "done"
    assert set(rows[0][1]) == {"detect", "ocr", "redact"}  # each stage's time, in either order
    assert [(text, t) for text, t, _ in reads] == [(PLATE, 4.4)]
    assert set(reads[0][2]) == {"detect", "ocr"} and reads[0][2]["detect"] == 40.0
    assert connection.keys("alpr:frame:*") == []  # the crop (OCR) and the frame (redactor) are gone


def test_a_crop_whose_stored_bytes_are_not_those_detected_is_not_read(
    redis_url, postgres_url, settings, plate_frame, tmp_path
):
    """Plate crops had no digest: other bytes put under a crop's key (whoever can write to the frames
    Redis, without the job key) were read and logged as the frame's plate — a listed plate planted on a
    camera, or a real one blanked. A crop that is not the one its detector stored is now not read, and
    the frame's reads are recorded as corrupt; the job's other frames are read."""
    from common.frame_store import jpeg_digest

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    crop = geometry.crop(image, box, 0.08)
    detected_crop, other_bytes = encode_jpeg(crop, 95), encode_jpeg(crop, 60)  # the same plate, other bytes
    frames = []
    for index, stored in enumerate((other_bytes, detected_crop)):
        frame_id = f"cam:1:{index}"
        frame = FrameRef(frame_id=frame_id, camera_id="cam", seq=index, frame_index=index, captured_at_s=time.time(),
                         source_time_s=index / 5, key=frame_key(frame_id), region="us")  # fmt: skip
        crop_key = frame_key(f"{frame_id}:plate0")
        FrameStore(connection, 600).put_many([(crop_key, stored)])
        FrameLog(open_pool(postgres_url), 0).record_sampled([FrameRecord(frame, "pending")])
        plate = PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key, crop_digest=jpeg_digest(detected_crop))
        frames.append(DetectedFrame(frame=frame, plates=[plate]))
    enqueue(stage_queue(connection, "ocr"), OcrJob(batch_id="swap", frames=frames), 60)
    burst("ocr", redis_url, postgres_url, settings, tmp_path)
    with psycopg.connect(postgres_url) as db:
        outcomes = db.execute("SELECT frame_id, read_outcome FROM frames ORDER BY frame_id").fetchall()
        reads = db.execute("SELECT frame_id, plate_text FROM plate_reads").fetchall()
    assert outcomes == [("cam:1:0", "corrupt"), ("cam:1:1", "done")]
    assert reads == [("cam:1:1", PLATE)]


def test_a_plate_the_detector_found_at_the_frames_side_edge_is_logged_but_not_trusted(
    redis_url, postgres_url, settings, plate_frame
):
    """The detector's flag travels with the box: the read is logged, its confidence capped, and counted
    per camera (a camera whose lane runs along the border shows)."""
    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.metrics import Metrics

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    detected = []
    for index, edge in enumerate((False, True)):
        frame = FrameRef(frame_id=f"cam:1:{index}", camera_id="cam", seq=index, frame_index=index, region="us",
                         captured_at_s=time.time(), source_time_s=0.0, key=frame_key(f"cam:1:{index}"))  # fmt: skip
        crop_key = frame_key(f"cam:1:{index}:plate0")
        FrameStore(connection, 600).put_many([(crop_key, encode_jpeg(geometry.crop(image, box, 0.08), 95))])
        plate = PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key, at_side_edge=edge)
        detected.append(DetectedFrame(frame=frame, plates=[plate]))
    metrics = Metrics()
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, model_dir=settings.model_dir)
    build_worker_context("ocr", loaded, connection, metrics).stage.handle(
        OcrJob(batch_id="b", frames=detected).model_dump(mode="json")
    )
    with psycopg.connect(postgres_url) as db:
        reads = db.execute("SELECT frame_id, plate_text, confidence FROM plate_reads ORDER BY frame_id").fetchall()
    assert [(frame_id, text) for frame_id, text, _ in reads] == [("cam:1:0", PLATE), ("cam:1:1", PLATE)]
    assert reads[0][2] > SIDE_EDGE_MAX_CONFIDENCE and reads[1][2] == SIDE_EDGE_MAX_CONFIDENCE
    assert metrics.registry.get_sample_value("alpr_plate_reads_side_edge_total", {"camera": "cam"}) == 1


def test_a_frame_of_an_unknown_plate_region_is_refused_and_the_rest_of_its_job_read(
    redis_url, postgres_url, settings, plate_frame, tmp_path, monkeypatch, caplog
):
    """A newer ingest node's region (an upgrade under way) fails that frame's reads, recorded as refused,
    not the whole job with other cameras' frames in it; reads that no OCR job records end lost."""
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "kept"))
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    detected = []
    for camera, region in (("new", "zz"), ("cam", "us"), ("late", "us")):
        frame = FrameRef(frame_id=f"{camera}:1:0", camera_id=camera, seq=0, frame_index=22, captured_at_s=time.time(),
                         source_time_s=4.4, key=frame_key(f"{camera}:1:0"), region=region)  # fmt: skip
        crop_key = frame_key(f"{camera}:1:0:plate0")
        FrameStore(connection, 600).put_many([
            (frame.key, encode_jpeg(image, 95)), (crop_key, encode_jpeg(geometry.crop(image, box, 0.08), 95)),
        ])  # fmt: skip
        detected.append(DetectedFrame(frame=frame, plates=[PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key)]))
    ocr = stage_queue(connection, "ocr")
    job_id = enqueue(ocr, OcrJob(batch_id="b", frames=detected[:2]), 60)  # "late": its OCR job never ran
    enqueue(stage_queue(connection, "redact"), RedactJob(batch_id="b", frames=detected), 60)
    burst("ocr", redis_url, postgres_url, settings, tmp_path)
    job = ocr.fetch_job(job_id)
    assert job is not None and job.is_finished and FailedJobRegistry(queue=ocr).get_job_ids() == []
    assert caplog.text.count("camera new: unknown plate region 'zz'") == 1  # once per camera and region
    burst("redact", redis_url, postgres_url, settings, tmp_path)
    with psycopg.connect(postgres_url) as db:
        reads = db.execute("SELECT camera_id, plate_text FROM plate_reads").fetchall()
    assert reads == [("cam", PLATE)]
    pool = open_pool(postgres_url)
    try:
        frame_log, tally = FrameLog(pool, patience_s=0), FrameCounts(pool)
        assert tally.outcome_counts() == {"new": {"done": 1}, "cam": {"done": 1}, "late": {"done": 1}}
        assert frame_log.sweep_lost(older_than_s=0.0) == (0, 1)
        assert tally.read_outcome_counts() == {"new": {"refused": 1}, "cam": {"done": 1}, "late": {"lost": 1}}
    finally:
        pool.close()
    assert connection.keys("alpr:frame:new:*") == []  # the refused frame's crop is deleted with the rest


def test_a_job_run_again_after_its_reads_were_logged_counts_them_once(
    redis_url, postgres_url, settings, plate_frame, monkeypatch
):
    """RQ runs a job again when it failed after its commit (Redis gone while deleting the crops): the
    reads are logged once (keyed by frame and plate), and now counted once in the metrics too."""
    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.metrics import Metrics

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    frame = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=22, captured_at_s=time.time(),
                     source_time_s=4.4, key=frame_key("cam:1:0"), region="us")  # fmt: skip
    crop_key = frame_key("cam:1:0:plate0")
    job = OcrJob(batch_id="b", frames=[DetectedFrame(frame=frame, plates=[PlateBox(box_xyxy=box, confidence=0.9,
                                                                                    crop_key=crop_key)])])  # fmt: skip
    metrics = Metrics()
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, model_dir=settings.model_dir)
    stage = build_worker_context("ocr", loaded, connection, metrics).stage
    for _ in range(2):  # the crop stored again: as if its deletion had failed
        FrameStore(connection, 600).put_many([(crop_key, encode_jpeg(geometry.crop(image, box, 0.08), 95))])
        stage.handle(job.model_dump(mode="json"))
    counted = metrics.registry.get_sample_value("alpr_plate_reads_total", {"format_match": "true"})
    assert counted == 1
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM plate_reads").fetchone() == (1,)


def test_cameras_named_by_jobs_from_outside_cannot_grow_the_metrics_without_end(
    redis_url, postgres_url, settings, monkeypatch
):
    """A job names its camera, and a label per camera made a series per name: jobs from whoever reaches
    Redis, each naming a new camera, grew the worker's memory and every scrape. Past the bound, cameras
    share one label."""
    import common.metrics
    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.metrics import OTHER_CAMERA, Metrics

    monkeypatch.setattr(common.metrics, "MAX_CAMERA_LABELS", 3)
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    frames = [
        DetectedFrame(frame=FrameRef(frame_id=f"c{i}:1:0", camera_id=f"c{i}", seq=0, frame_index=0, region="zz",
                                     captured_at_s=time.time(), source_time_s=0.0, key=frame_key(f"c{i}:1:0")),
                      plates=[])
        for i in range(10)
    ]  # fmt: skip
    metrics = Metrics()
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, model_dir=settings.model_dir)
    stage = build_worker_context("ocr", loaded, connect_redis(redis_url), metrics).stage
    stage.handle(OcrJob(batch_id="b", frames=frames).model_dump(mode="json"))
    skipped = {
        s.labels["camera"]: s.value
        for m in metrics.registry.collect() if m.name == "alpr_frames_skipped"
        for s in m.samples if s.name.endswith("_total")
    }  # fmt: skip
    assert skipped == {"c0": 1, "c1": 1, "c2": 1, OTHER_CAMERA: 7}


def test_a_crop_that_is_there_but_unreadable_is_recorded_corrupt_not_expired(
    redis_url, postgres_url, settings, tmp_path, plate_frame
):
    """A crop that is not a JPEG was recorded `expired`: an operator looked for a TTL problem (migration 11);
    so was one whose key held an empty value or a list (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    detected = []
    for camera, stored in (
        ("bad", b"not a jpeg"),
        ("empty", b""),  # an empty value, or one of another type (below): counted 0 bytes, recorded expired
        ("list", None),
        ("gone", None),
        ("cam", encode_jpeg(geometry.crop(image, box, 0.08), 95)),
    ):
        frame = FrameRef(frame_id=f"{camera}:1:0", camera_id=camera, seq=0, frame_index=0, captured_at_s=time.time(),
                         source_time_s=0.0, key=frame_key(f"{camera}:1:0"), region="us")  # fmt: skip
        crop_key = frame_key(f"{camera}:1:0:plate0")
        if stored is not None:
            FrameStore(connection, 600).put_many([(crop_key, stored)])
        if camera == "list":
            connection.rpush(crop_key, b"x")
        detected.append(DetectedFrame(frame=frame, plates=[PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key)]))
    pool = open_pool(postgres_url)
    try:
        FrameLog(pool, patience_s=0).record_sampled([FrameRecord(d.frame, "pending") for d in detected])
        enqueue(stage_queue(connection, "ocr"), OcrJob(batch_id="b", frames=detected), 60)
        burst("ocr", redis_url, postgres_url, settings, tmp_path)
        counts = FrameCounts(pool).read_outcome_counts()
    finally:
        pool.close()
    assert counts == {"bad": {"corrupt": 1}, "empty": {"corrupt": 1}, "list": {"corrupt": 1}, "gone": {"expired": 1},
                      "cam": {"done": 1}}  # fmt: skip


def test_frames_not_begun_within_the_jobs_time_budget_have_their_reads_skipped(
    redis_url, postgres_url, settings, plate_frame
):
    """An OCR job of more plates than its timeout timed out on every attempt, none of its frames read."""
    from common.metrics import Metrics
    from common.plate_log import PostgresPlateLog
    from ocr_worker.core import OcrSettings, PlateReader
    from ocr_worker.worker import OcrStage

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    image, box = plate_frame
    crop = encode_jpeg(geometry.crop(image, box, 0.08), 95)
    frames = []
    for n in range(3):
        frame = FrameRef(frame_id=f"cam:1:{n}", camera_id="cam", seq=n, frame_index=n, captured_at_s=time.time(),
                         source_time_s=float(n), key=frame_key(f"cam:1:{n}"), region="us")  # fmt: skip
        crop_key = frame_key(f"cam:1:{n}:plate0")
        FrameStore(connection, 600).put_many([(crop_key, crop)])
        frames.append(DetectedFrame(frame=frame, plates=[PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key)]))
    pool, metrics = open_pool(postgres_url), Metrics()
    try:
        stage = OcrStage(
            lambda region: PlateReader(OcrSettings(region=region)), FrameStore(connection, 600),
            PostgresPlateLog(pool), FrameLog(pool, 0.0), metrics, time_budget_s=0.0,
        )  # fmt: skip
        assert stage.handle(OcrJob(batch_id="late", frames=frames).model_dump(mode="json")).reads_logged == 1
    finally:
        pool.close()
    with psycopg.connect(postgres_url) as db:
        ends = dict(db.execute("SELECT frame_id, read_outcome FROM frames").fetchall())
        reads = db.execute("SELECT frame_id, plate_text FROM plate_reads").fetchall()
    assert ends == {"cam:1:0": "done", "cam:1:1": "skipped", "cam:1:2": "skipped"}  # the first frame always
    assert reads == [("cam:1:0", PLATE)]
    assert metrics.frames_skipped.labels(camera="cam", reason="over_job_time_budget")._value.get() == 2
    assert connection.keys("alpr:frame:*") == []  # every crop deleted, read or not
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE frames SET outcome = 'done'")  # the redactor finished every frame
    pool = open_pool(postgres_url)
    try:  # recorded footage read again after a restart reads the skipped frames again, not the one read
        assert set(FrameLog(pool, 0.0).finished(ends)) == {"cam:1:0"}
    finally:
        pool.close()


def test_the_pools_duty_merges_the_frames_logs_count_changes_with_the_redactor_pool_down(
    redis_url, postgres_url, monkeypatch
):
    """A review: only the redactor pool's duty (and prune rounds) merged the frames log's per-minute count
    changes; with that pool down, ingest and the OCR pool wrote on, and `alpr status`, which sums those not
    merged, slowed past its 5 s in an hour or two at a city's rate. The OCR pool's duty merges them too: the
    counts read after it are those of the frames, and no change is left."""
    from common.metrics import Metrics
    from common.plate_log import PostgresPlateLog
    from ocr_worker.core import OcrSettings, PlateReader
    from ocr_worker.worker import OcrStage
    from tests.common.test_frame_counts import counted_one_by_one, frame

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    now, pool = time.time(), open_pool(postgres_url)
    try:
        frame_log = FrameLog(pool, 0.0)
        refs = [frame("gate", index, now - 900 + index * 3.7) for index in range(200)]
        frame_log.record_sampled([FrameRecord(ref, "pending") for ref in refs])  # ingest, no redactor running
        frame_log.record_reads([(ref, "done") for ref in refs[::2]])  # the OCR pool's own writes
        stage = OcrStage(
            lambda region: PlateReader(OcrSettings(region=region)), FrameStore(connect_redis(redis_url), 600),
            PostgresPlateLog(pool), frame_log, Metrics(),
        )  # fmt: skip
        with pool.connection() as connection:
            assert connection.execute("SELECT count(*) FROM frame_count_changes").fetchone() != (0,)
        stage.maintain()
        with pool.connection() as connection:
            assert connection.execute("SELECT count(*) FROM frame_count_changes").fetchone() == (0,)
            assert connection.execute("SELECT sum(frames) FROM frame_counts").fetchone() == (200,)
        expected = ({"gate": {"pending": 200}}, {"gate": {"done": 100}})
        assert counted_one_by_one(pool, 1200) == expected
        assert FrameCounts(pool).recent_outcome_counts(1200) == RecentCounts(*expected)
    finally:
        pool.close()
