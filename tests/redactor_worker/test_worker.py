"""The redactor pool's edge on a private Redis and a fresh Postgres schema, in an `alpr worker
redact` burst: it needs only the boxes, so it finishes a batch with no OCR job run at all — blurs
and keeps the frame, records the outcome with the stage timings, deletes the raw frame and leaves
the plate crops to the OCR pool."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from alpr.cli import main
from common import geometry
from common.frame_store import FrameStore, decode_jpeg, encode_jpeg, frame_key
from common.jobs import DetectedFrame, FrameRef, PlateBox, RedactJob
from common.queues import connect_redis, enqueue, stage_queue
from tests.helpers import clip_frames, write_clip


def stored_job(connection, cameras: tuple[str, ...], age_s: float = 0.0) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """A redact job (as a payload) of one stored frame with one plate box per camera, captured `age_s` ago."""
    frames = []
    for camera in cameras:
        ref = FrameRef(frame_id=f"{camera}:1:0", camera_id=camera, seq=0, frame_index=0,
                       captured_at_s=time.time() - age_s,
                       source_time_s=0.0, key=frame_key(f"{camera}:1:0"), region="us")  # fmt: skip
        FrameStore(connection, 600).put_many([(ref.key, encode_jpeg(np.full((120, 160, 3), 90, np.uint8), 90))])
        frames.append(DetectedFrame(frame=ref, plates=[PlateBox(box_xyxy=(10, 10, 60, 30), confidence=0.9)]))
    return RedactJob(batch_id="b", frames=frames).model_dump(mode="json")


def redact_stage(redis_url: str, postgres_url: str, tmp_path: Path, settings):  # type: ignore[no-untyped-def]
    """A redact stage as `alpr worker redact` builds it, keeping frames in tmp_path/kept, on an upgraded
    schema: (keep folder, Redis connection, stage)."""
    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.metrics import Metrics

    keep_dir = tmp_path / "kept"
    keep_dir.mkdir()
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, keep_dir=keep_dir,
                           model_dir=settings.model_dir)  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    return keep_dir, connection, build_worker_context("redact", loaded, connection, Metrics()).stage


def test_redaction_needs_no_ocr_and_deletes_only_the_frame(redis_url, postgres_url, settings, reader_us, tmp_path,
                                                           monkeypatch):  # fmt: skip
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "kept"))
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    truth = write_clip(tmp_path / "one.mp4", ("KPX4721",))
    box = tuple(float(v) for v in next(b["box_xyxy"] for b in truth["boxes"] if b["frame_index"] == 22))  # type: ignore[index, union-attr]
    image = clip_frames(tmp_path / "one.mp4", {22})[22]
    assert reader_us.read(geometry.crop(image, box, 0.08))[0].text == "KPX4721"  # positive control: readable
    connection = connect_redis(redis_url)
    frame = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=22, captured_at_s=time.time(),
                     source_time_s=4.4, key=frame_key("cam:1:0"), region="us", stage_ms={"detect": 40.0})  # fmt: skip
    crop_key = frame_key("cam:1:0:plate0")
    FrameStore(connection, 600).put_many([(frame.key, encode_jpeg(image, 95)), (crop_key, b"crop bytes")])
    plates = [PlateBox(box_xyxy=box, confidence=0.9, crop_key=crop_key)]  # type: ignore[arg-type]
    enqueue(
        stage_queue(connection, "redact"),
        RedactJob(batch_id="b", frames=[DetectedFrame(frame=frame, plates=plates)]),
        60,
    )
    assert main(["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]) == 0

    with psycopg.connect(postgres_url) as db:
        outcome, timings, kept = db.execute("SELECT outcome, stage_ms, kept_path FROM frames").fetchone()  # type: ignore[misc]
    assert outcome == "done" and set(timings) == {"detect", "redact"}
    blurred = decode_jpeg(Path(kept).read_bytes(), "kept")
    assert all(c.text != "KPX4721" for c in reader_us.read(geometry.crop(blurred, box, 0.08)))
    assert connection.keys("alpr:frame:*") == [crop_key.encode()]  # the frame is gone, the crop is OCR's
    assert stage_queue(connection, "redact").count == 0 and stage_queue(connection, "ocr").count == 0


def test_a_camera_folder_linked_elsewhere_is_refused_at_start_and_costs_only_its_own_frames(
    redis_url, postgres_url, tmp_path, monkeypatch, settings
):
    """The sweep follows no link, so frames kept through a linked camera folder would never be deleted:
    a redactor refuses to start with one, and one made while it runs costs that camera's frames their
    keeping (done, not kept, said so) — not the whole job with every other camera's frames."""
    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.errors import ConfigError
    from common.metrics import Metrics

    keep_dir, elsewhere = tmp_path / "kept", tmp_path / "bigger-disk"
    keep_dir.mkdir()
    elsewhere.mkdir()
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, keep_dir=keep_dir,
                           model_dir=settings.model_dir)  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    (keep_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match="linked is a symbolic link"):
        build_worker_context("redact", loaded, connection, Metrics())
    (keep_dir / "linked").unlink()
    stage = build_worker_context("redact", loaded, connection, Metrics()).stage
    (keep_dir / "linked").symlink_to(elsewhere, target_is_directory=True)  # made while it runs
    stage.handle(stored_job(connection, ("linked", "cam")))
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT camera_id, outcome, detail, kept_path IS NOT NULL FROM frames ORDER BY 1").fetchall()
    assert rows == [("cam", "done", None, True), ("linked", "done", "not kept: its keep folder is a link", False)]
    assert list(elsewhere.iterdir()) == []


def test_a_frame_that_cannot_be_kept_is_recorded_done_not_kept_and_the_rest_of_its_job_goes_on(
    redis_url, postgres_url, tmp_path, settings, caplog
):
    """A camera's keep folder that is a file (or a full disk, no permission): that frame is redacted and
    recorded, not kept, said so; the job's other frames are kept. The job failed and was retried, and
    every frame of the batch ended lost."""
    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    (keep_dir / "blocked").write_bytes(b"not a folder")
    stage.handle(stored_job(connection, ("blocked", "cam")))
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT camera_id, outcome, detail, kept_path IS NOT NULL FROM frames ORDER BY 1").fetchall()
    assert rows[1] == ("cam", "done", None, True)
    assert rows[0][:2] == ("blocked", "done") and rows[0][2].startswith("not kept: ") and rows[0][3] is False
    assert caplog.text.count("1 frames of batch b redacted and recorded but not kept: ") == 1


def test_a_stored_frame_past_the_byte_bound_is_not_read_and_recorded_skipped(
    redis_url, postgres_url, tmp_path, settings, monkeypatch
):
    """The detector reads within the bounds; a forged redact job's padded frames, or one key named by
    all 64 frames, had the redactor read gigabytes."""
    from alpr.wiring import build_worker_context
    from common import defaults
    from common.config import Settings
    from common.metrics import Metrics

    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, keep_dir=tmp_path / "kept",
                           model_dir=settings.model_dir)  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    payload = stored_job(connection, ("padded", "cam"))
    connection.append(frame_key("padded:1:0"), b"\0" * 100_000)
    monkeypatch.setattr(defaults, "MAX_FRAME_BYTES", 50_000)
    build_worker_context("redact", loaded, connection, Metrics()).stage.handle(payload)
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT camera_id, outcome, detail, kept_path IS NOT NULL FROM frames ORDER BY 1").fetchall()
    assert rows == [("cam", "done", None, True), ("padded", "skipped", "too large", False)]


def test_a_crop_key_that_is_not_its_frames_and_a_frame_named_twice_are_malformed():
    """An OCR job naming a raw frame's key as a crop deleted that frame before it was redacted; one frame
    named 6,400 times had its crop read 6,400 times (3.4 GB)."""
    from common.errors import InputError
    from common.jobs import OcrJob, parse_job

    ref = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                   source_time_s=0.0, key=frame_key("cam:1:0"), region="us")  # fmt: skip
    plate = {"box_xyxy": [1, 1, 9, 9], "confidence": 0.9, "crop_key": frame_key("cam:1:0:plate0")}
    good = {
        "batch_id": "b",
        "stage": "ocr",
        "v": 2,
        "frames": [{"frame": ref.model_dump(mode="json"), "plates": [plate]}],
    }
    assert parse_job(good, OcrJob).frames[0].plates[0].crop_key == frame_key("cam:1:0:plate0")
    for crop_key in (frame_key("cam:1:0"), frame_key("other:1:0:plate0"), frame_key("cam:1:0:plate0x")):
        forged = {**good, "frames": [{**good["frames"][0], "plates": [{**plate, "crop_key": crop_key}]}]}
        with pytest.raises(InputError, match="crop key"):
            parse_job(forged, OcrJob)
    with pytest.raises(InputError, match="named twice"):
        parse_job({**good, "frames": good["frames"] * 2}, OcrJob)


def test_a_frame_kept_by_an_attempt_whose_recording_failed_is_recorded_with_its_kept_file(
    redis_url, postgres_url, tmp_path, settings
):
    """The frame is kept before its outcome is recorded; Postgres away, the job is retried after the raw
    frame expired, and it was recorded expired with its kept (blurred) file on disk and named nowhere:
    an erasure request worked from the frames log missed it (a fault drill found 8)."""
    from common.db_writes import DatabaseWriteError

    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    job = stored_job(connection, ("cam", "other"))
    real_log = stage.frame_log
    with psycopg.connect(postgres_url) as db:
        db.execute("ALTER TABLE frames RENAME TO frames_away")  # the recording fails, as with Postgres away
    try:
        with pytest.raises(DatabaseWriteError):
            stage.handle(job)
    finally:
        with psycopg.connect(postgres_url) as db:
            db.execute("ALTER TABLE frames_away RENAME TO frames")
    assert stage.frame_log is real_log
    kept = sorted(keep_dir.rglob("*.jpg"))
    assert len(kept) == 2  # kept before the recording failed
    FrameStore(connection, 600).delete_many([frame_key("cam:1:0"), frame_key("other:1:0")])  # expired since
    other = next(path for path in kept if "other" in path.parts)
    other.write_bytes(other.read_bytes()[:100])  # its writer killed mid-write: a file cut short
    stage.handle(job)  # the retry
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT camera_id, outcome, detail, kept_path FROM frames ORDER BY 1").fetchall()
    assert rows[0][:3] == ("cam", "done", None) and rows[0][3] and Path(rows[0][3]).is_file()
    assert rows[1] == ("other", "expired", "before redaction", None)  # a cut file is not taken for a kept frame


def test_a_frame_swapped_in_the_store_after_detection_is_never_kept(redis_url, postgres_url, tmp_path, settings):
    """A security review: whoever can write to the frames Redis put another frame under the key of one
    detected, between detection and redaction; the redactor blurred the first frame's boxes on it and
    kept it, its own plates sharp."""

    from common.frame_store import NOT_AS_STORED, jpeg_digest

    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    sampled = encode_jpeg(np.full((120, 160, 3), 90, np.uint8), 90)
    ref = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                   source_time_s=0.0, key=frame_key("cam:1:0"), region="us", digest=jpeg_digest(sampled))  # fmt: skip
    swapped = encode_jpeg(np.full((120, 160, 3), 200, np.uint8), 90)  # a frame with a plate, say
    FrameStore(connection, 600).put_many([(ref.key, swapped)])
    detected = DetectedFrame(frame=ref, plates=[PlateBox(box_xyxy=(10, 10, 60, 30), confidence=0.9)])
    stage.handle(RedactJob(batch_id="b", frames=[detected]).model_dump(mode="json"))
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT outcome, detail, kept_path FROM frames").fetchall() == [
            ("corrupt", NOT_AS_STORED, None)]  # fmt: skip
    assert list(keep_dir.rglob("*.jpg")) == []


def test_a_frame_key_emptied_or_made_a_list_after_detection_is_corrupt_not_expired(
    redis_url, postgres_url, tmp_path, settings
):
    """Counted 0 bytes, such a key was recorded `expired`, hiding that the frame was replaced (a review)."""
    from common.frame_store import EMPTY_VALUE, OTHER_TYPE

    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    job = stored_job(connection, ("cam", "other"))
    connection.set(frame_key("cam:1:0"), b"", ex=600)
    connection.delete(frame_key("other:1:0"))
    connection.sadd(frame_key("other:1:0"), b"x")
    stage.handle(job)
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT camera_id, outcome, detail, kept_path FROM frames ORDER BY 1").fetchall()
    assert rows == [("cam", "corrupt", EMPTY_VALUE, None), ("other", "corrupt", OTHER_TYPE, None)]
    assert list(keep_dir.rglob("*.jpg")) == []


def frames_kept_100_hours_ago(redis_url: str, postgres_url: str, tmp_path: Path, settings):  # type: ignore[no-untyped-def]
    """A redact stage and the frames it kept of cameras "cam" and "other", last written 100 h ago (past
    the 72 h limit): (stage, camera -> kept file)."""
    import os

    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    stage.handle(stored_job(connection, ("cam", "other"), age_s=100 * 3600))
    kept = {path.parts[-3]: path for path in keep_dir.rglob("*.jpg")}
    old = time.time() - 100 * 3600
    for path in kept.values():
        os.utime(path, (old, old))
    return stage, kept


def test_the_kept_image_of_a_frame_an_alert_cites_outlives_the_keep_limit(redis_url, postgres_url, tmp_path, settings):
    """An alert's evidence: the prune keeps the frame's record, but the keep folder's sweep deleted its
    image after ALPR_KEEP_MAX_AGE_H (72 h), the record's kept_path naming a file gone."""
    import json

    stage, kept = frames_kept_100_hours_ago(redis_url, postgres_url, tmp_path, settings)
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a1', 'read', 'cam',"
                   " now(), %s)", (json.dumps({"frame_id": "cam:1:0", "plate": "KPX4721"}),))  # fmt: skip
    stage.last_keep_sweep = float("-inf")  # its sweep due
    stage.maintain()
    assert kept["cam"].is_file() and not kept["other"].exists()


def test_the_sweep_holds_what_alerts_cite_in_8_bytes_an_alert_and_loads_only_those_recorded_since(
    redis_url, postgres_url, tmp_path, settings
):
    """A soak review: every sweep (10 minutes) loaded every alert ever raised (alerts are never pruned)
    into a set of names: a million took a redactor from 142 to 637 MB and 10 s a sweep, past Compose's
    512 MB. Now they are held as 64-bit digests, loaded whole once and then only since the last load."""
    import json

    stage, kept = frames_kept_100_hours_ago(redis_url, postgres_url, tmp_path, settings)
    with psycopg.connect(postgres_url) as db:  # 50,000 alerts of two days ago, and the one citing "cam"'s frame
        db.execute(
            "INSERT INTO alerts (alert_id, kind, camera_id, captured_at, created_at, body)"
            " SELECT 'old' || n, 'read', 'far', now() - interval '2 days', now() - interval '2 days',"
            " jsonb_build_object('frame_id', 'far:1:' || n, 'plate', 'ABC123') FROM generate_series(1, 50000) n"
        )
        db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a1', 'read', 'cam',"
                   " now(), %s)", (json.dumps({"frame_id": "cam:1:0", "plate": "KPX4721"}),))  # fmt: skip
    loaded: list[int] = []
    alerted = stage.frame_log.alerted_frames

    def counted(since_s, take):  # type: ignore[no-untyped-def]
        return alerted(since_s, lambda rows: (loaded.append(len(rows)), take(rows)))

    stage.frame_log.alerted_frames = counted
    stage.last_keep_sweep = float("-inf")
    stage.maintain()
    assert kept["cam"].is_file() and not kept["other"].exists()  # the alert's evidence spared, the rest swept
    assert sum(loaded) == 50001 and stage.alert_evidence.digests.nbytes == 8 * 50001
    loaded.clear()
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a2', 'read', 'cam',"
                   " now(), %s)", (json.dumps({"frame_id": "cam:2:0", "plate": "KPX4721"}),))  # fmt: skip
    stage.last_keep_sweep = float("-inf")
    stage.maintain()
    assert sum(loaded) == 2 and len(stage.alert_evidence) == 50002  # the last hour's: a1 again, and a2
    assert ("cam", "cam_2_0.jpg") in stage.alert_evidence and ("cam", "cam_3_0.jpg") not in stage.alert_evidence


def test_a_frame_stages_missing_and_corrupt_counts_are_exported_at_zero(redis_url, postgres_url, tmp_path, settings):
    """They began at 1 with the first such frame, and the dashboard's increase() showed nothing of it."""
    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.metrics import Metrics

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, keep_dir=tmp_path / "kept",
                           model_dir=settings.model_dir)  # fmt: skip
    metrics = Metrics()
    build_worker_context("redact", loaded, connect_redis(redis_url), metrics)
    for name in ("alpr_frames_missing_total", "alpr_frames_corrupt_total"):
        assert metrics.registry.get_sample_value(name, {"stage": "redact"}) == 0.0, name


def test_kept_frames_past_their_age_go_while_postgres_is_away(redis_url, postgres_url, tmp_path, settings):
    """A review: the pool's duties ran in one line, the lost frames' sweep (Postgres) first, so during an
    outage no kept frame was deleted, whatever its age. The keep folder's sweep spares the frames alerts
    cited when last loaded (none is cited meanwhile: alerts are recorded in Postgres) and, never loaded,
    deletes nothing."""
    import json
    import os

    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.db_writes import DatabaseWriteError
    from common.metrics import Metrics

    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    stage.handle(stored_job(connection, ("cam", "other"), age_s=100 * 3600))
    kept = {path.parts[-3]: path for path in keep_dir.rglob("*.jpg")}
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES ('a1', 'read', 'cam',"
                   " now(), %s)", (json.dumps({"frame_id": "cam:1:0", "plate": "KPX4721"}),))  # fmt: skip
    stage.last_keep_sweep = float("-inf")
    stage.maintain()  # the alert's frames loaded; nothing old enough yet
    assert all(path.is_file() for path in kept.values())
    old = time.time() - 100 * 3600
    for path in kept.values():
        os.utime(path, (old, old))
    loaded = Settings.load({}, redis_url=redis_url, database_url=postgres_url, keep_dir=keep_dir,
                           model_dir=settings.model_dir)  # fmt: skip
    fresh = build_worker_context("redact", loaded, connection, Metrics()).stage
    with psycopg.connect(postgres_url) as db:  # Postgres away for the pool
        db.execute("ALTER TABLE frames RENAME TO frames_away")
        db.execute("ALTER TABLE alerts RENAME TO alerts_away")
    try:
        fresh.last_keep_sweep = stage.last_keep_sweep = float("-inf")
        with pytest.raises(DatabaseWriteError):
            fresh.maintain()  # never loaded what alerts cite: nothing deleted
        assert all(path.is_file() for path in kept.values())
        with pytest.raises(DatabaseWriteError):
            stage.maintain()  # the outage is still raised (the lost frames' sweep's), after the sweep
    finally:
        with psycopg.connect(postgres_url) as db:
            db.execute("ALTER TABLE frames_away RENAME TO frames")
            db.execute("ALTER TABLE alerts_away RENAME TO alerts")
    assert kept["cam"].is_file() and not kept["other"].exists()


def test_frames_kept_by_no_policy_are_not_blurred_for_nothing(redis_url, postgres_url, tmp_path, settings,
                                                              monkeypatch):  # fmt: skip
    """A review: with ALPR_KEEP_FRAMES=none every frame with a plate was decoded, blurred and encoded
    again, then thrown away (147 ms a 4K frame), the pool's seconds per frame counted by `alpr status`."""
    import redactor_worker.worker as redactor

    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    monkeypatch.setattr(stage, "keep", "none")
    decoded: list[str] = []
    monkeypatch.setattr(redactor, "decode_jpeg", lambda data, key: decoded.append(key) or decode_jpeg(data, key))
    stage.handle(stored_job(connection, ("cam", "other")))
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT outcome, kept_path FROM frames").fetchall() == [("done", None)] * 2
    assert decoded == [] and list(keep_dir.rglob("*")) == []
    monkeypatch.setattr(stage, "keep", "plates")  # positive control: a frame kept is decoded and blurred
    stage.handle(stored_job(connection, ("third",)))
    assert len(decoded) == 1 and len(list(keep_dir.rglob("*.jpg"))) == 1


def test_a_box_below_the_read_threshold_is_blurred_but_keeps_and_counts_no_frame(redis_url, postgres_url, tmp_path,
                                                                                 settings, monkeypatch):  # fmt: skip
    """The detector finds boxes down to 0.05 whatever ALPR_DETECTOR_CONFIDENCE says, so that all are blurred:
    raised to 0.5, ALPR_KEEP_FRAMES=plates kept every frame with a weak box, which the frames log counted
    as a plate (a diff review). Such a box keeps and counts nothing."""
    keep_dir, connection, stage = redact_stage(redis_url, postgres_url, tmp_path, settings)
    monkeypatch.setattr(stage, "plate_confidence", 0.5)
    job = stored_job(connection, ("weak",))
    job["frames"][0]["plates"][0]["confidence"] = 0.2
    stage.handle(job)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT outcome, plates, kept_path FROM frames").fetchall() == [("done", 0, None)]
    assert list(keep_dir.rglob("*.jpg")) == []
    monkeypatch.setattr(stage, "keep", "all")
    job = stored_job(connection, ("kept",))
    job["frames"][0]["plates"][0]["confidence"] = 0.2
    stage.handle(job)
    assert len(list(keep_dir.rglob("*.jpg"))) == 1  # kept for all, its weak box blurred (redactor_worker.core)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT plates FROM frames WHERE camera_id = 'kept'").fetchall() == [(0,)]


def test_a_keep_age_under_an_hour_is_logged_as_it_was_set(redis_url, postgres_url, tmp_path, settings, caplog):
    """ALPR_KEEP_MAX_AGE_H=0.01 (36 s) was logged at start as `for 0 h`, and each sweep's deletions as of
    frames `older than 0 h`: the operator could not see the age the frames are kept for."""
    import logging
    import os

    from alpr.wiring import build_worker_context
    from common.config import Settings
    from common.metrics import Metrics

    caplog.set_level(logging.INFO)
    keep_dir = tmp_path / "kept"
    keep_dir.mkdir()
    loaded = Settings.load({"ALPR_KEEP_MAX_AGE_H": "0.01"}, redis_url=redis_url, database_url=postgres_url,
                           keep_dir=keep_dir, model_dir=settings.model_dir)  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    connection = connect_redis(redis_url)
    stage = build_worker_context("redact", loaded, connection, Metrics()).stage
    assert f"redactor keeps plates frames in {keep_dir} for 0.01 h" in caplog.text
    stage.handle(stored_job(connection, ("cam",)))
    (kept,) = keep_dir.rglob("*.jpg")
    os.utime(kept, (time.time() - 60, time.time() - 60))  # past 36 s
    stage.last_keep_sweep = float("-inf")
    stage.maintain()
    assert not kept.exists() and "deleted 1 kept frames older than 0.01 h" in caplog.text


def test_a_running_redactor_sweeps_the_frame_of_an_alert_deleted_by_hand(redis_url, postgres_url, tmp_path, settings):
    """The loads since the last only ever added to what alerts cite: an alert deleted by hand kept its
    frame spared for as long as the redactor ran (a review). The set is built whole again when there are
    fewer alerts than at the last load, and at least once an hour of sweeps (six: one alert deleted and
    another raised between two sweeps)."""
    import json

    hour_of_sweeps = 3600 // 600  # KEEP_SWEEP_S
    stage, kept = frames_kept_100_hours_ago(redis_url, postgres_url, tmp_path, settings)

    def alert(db: psycopg.Connection, alert_id: str, frame_id: str) -> None:
        body = json.dumps({"frame_id": frame_id, "plate": "KPX4721"})
        db.execute("INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES (%s, 'read', %s,"
                   " now(), %s)", (alert_id, frame_id.split(":")[0], body))  # fmt: skip

    def sweep() -> None:
        stage.last_keep_sweep = float("-inf")
        stage.maintain()

    with psycopg.connect(postgres_url) as db:
        alert(db, "a1", "cam:1:0")
        alert(db, "a2", "other:1:0")
    sweep()
    assert kept["cam"].is_file() and kept["other"].is_file()  # both cited
    with psycopg.connect(postgres_url) as db:
        db.execute("DELETE FROM alerts WHERE alert_id = 'a1'")  # by hand: a false hit
    sweep()
    assert not kept["cam"].exists() and kept["other"].is_file()  # fewer alerts: loaded whole
    with psycopg.connect(postgres_url) as db:
        db.execute("DELETE FROM alerts WHERE alert_id = 'a2'")
        alert(db, "a3", "cam:9:0")  # as many alerts as before
    sweeps = 0
    while kept["other"].exists() and sweeps < hour_of_sweeps + 1:
        sweep()
        sweeps += 1
    assert not kept["other"].exists() and sweeps <= hour_of_sweeps
    assert len(stage.alert_evidence) == 1  # a3's alone
