"""The detector pool's edge on a private Redis, with the real detector in an `alpr worker detect`
burst: one detect job hands its batch to OCR and redaction at once (an OCR job only for the frames
with plate crops, a redact job for every frame), stores the crops, carries each frame's detection
time, and passes on undetected frames with why."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest

from alpr.cli import main
from alpr.status import pool_work
from common.frame_store import FrameStore, encode_jpeg, frame_key, jpeg_digest, stored_frame_key
from common.jobs import DetectJob, FrameRef, OcrJob, RedactJob, parse_job
from common.queues import connect_redis, enqueue, stage_queue
from tests.helpers import clip_frames, write_clip


def ref(frame_id: str, age_s: float = 0.0) -> FrameRef:
    return FrameRef(frame_id=frame_id, camera_id=frame_id.split(":")[0], seq=0, frame_index=0,
                    captured_at_s=time.time() - age_s, source_time_s=0.0, key=frame_key(frame_id),
                    region="us")  # fmt: skip


@pytest.fixture(scope="module")
def plate_and_box(tmp_path_factory) -> tuple[np.ndarray, list[float]]:  # type: ignore[no-untyped-def]
    clip = tmp_path_factory.mktemp("clip") / "one.mp4"
    truth = write_clip(clip, ("KPX4721",))
    box = next(b["box_xyxy"] for b in truth["boxes"] if b["frame_index"] == 22)  # type: ignore[index, union-attr]
    return clip_frames(clip, {22})[22], list(box)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plate_frame(plate_and_box) -> np.ndarray:  # type: ignore[no-untyped-def]
    return plate_and_box[0]  # type: ignore[no-any-return]


def test_a_batch_goes_to_ocr_and_redaction_at_once(redis_url, settings, plate_frame):
    connection = connect_redis(redis_url)
    empty = np.full((360, 640, 3), 100, np.uint8)
    frames = {"cam:1:0": plate_frame, "cam:1:1": empty}
    FrameStore(connection, 600).put_many([(frame_key(f), encode_jpeg(image, 90)) for f, image in frames.items()])
    refs = [ref("cam:1:0"), ref("cam:1:1"), ref("cam:1:2")]  # cam:1:2 was never stored (expired)
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="b", frames=refs), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0

    ocr, redact = stage_queue(connection, "ocr"), stage_queue(connection, "redact")
    assert ocr.get_job_ids() == ["ocr-b"] and redact.get_job_ids() == ["redact-b"]  # side by side
    ocr_job = parse_job(ocr.fetch_job("ocr-b").args[0], OcrJob)  # type: ignore[union-attr]
    redact_job = parse_job(redact.fetch_job("redact-b").args[0], RedactJob)  # type: ignore[union-attr]
    assert [f.frame.frame_id for f in ocr_job.frames] == ["cam:1:0"]  # only the frame with a plate to read
    assert [f.frame.frame_id for f in redact_job.frames] == ["cam:1:0", "cam:1:1", "cam:1:2"]  # every frame
    with_plate = redact_job.frames[0]
    assert len(with_plate.plates) >= 1 and with_plate.plates == ocr_job.frames[0].plates
    assert with_plate.frame.stage_ms["detect"] > 0  # the frame carries its detection time
    crop_keys = [p.crop_key for p in with_plate.plates if p.crop_key]
    assert crop_keys and connection.exists(*crop_keys) == len(crop_keys)  # the crops the OCR pool reads
    stored_crops = FrameStore(connection, 600).get_within_bounds(crop_keys).jpegs
    assert [p.crop_digest for p in with_plate.plates if p.crop_key] == [  # what the OCR pool must find there
        jpeg_digest(stored_crops[key] or b"") for key in crop_keys
    ]
    assert [(f.outcome, f.detail) for f in redact_job.frames[1:]] == [("done", None), ("expired", "before detection")]
    busy_s, frames, in_window = pool_work(connection, time.time())["detect"]  # what `alpr status` sizes it by
    assert in_window and busy_s > 0 and frames == 2  # the frames it detected


def test_a_batch_without_plates_queues_no_ocr_job(redis_url, settings):
    connection = connect_redis(redis_url)
    FrameStore(connection, 600).put_many(
        [(frame_key("cam:1:0"), encode_jpeg(np.full((360, 640, 3), 90, np.uint8), 90))]
    )
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="none", frames=[ref("cam:1:0")]), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    assert stage_queue(connection, "ocr").get_job_ids() == []
    assert stage_queue(connection, "redact").get_job_ids() == ["redact-none"]


def test_a_frame_is_aged_on_the_ingest_hosts_clock_then_on_redis_s_not_on_the_workers(redis_url, settings):
    """An ingest host whose clock is a minute behind the worker's had every frame skipped as too old.
    Now the age until stored is the ingest host's own measure, and the age since is Redis's (the
    frame's remaining TTL); a job of an older ingest node, without them, is aged by the clocks. Recorded
    footage, dated by its time in the footage, is never too old: it waited for the chain at ingest."""
    connection = connect_redis(redis_url)
    image = encode_jpeg(np.full((360, 640, 3), 90, np.uint8), 90)
    behind = time.time() - 60  # "now" on the ingest host
    frames = {
        "cam:1:0": (behind - 0.2, 600),  # fresh: captured 0.2 s before it was stored, just now
        "cam:1:1": (behind - 40, 600),  # captured 40 s before the ingest host could store it
        "cam:1:2": (behind - 0.2, 560),  # stored 40 s ago: Redis has 560 s of its 600 left
        "cam:1:3": (behind - 3600, 600),  # recorded footage dated an hour back, stored just now
        "cam:1:4": (behind - 3600, 560),  # recorded footage stored 40 s ago
    }
    for frame_id, (_, ttl_s) in frames.items():
        FrameStore(connection, ttl_s).put_many([(frame_key(frame_id), image)])
    refs = [ref(f).model_copy(update={"captured_at_s": captured, "recorded": f >= "cam:1:3"})
            for f, (captured, _) in frames.items()]  # fmt: skip
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="new", frames=refs, stored_at_s=behind,
                                                         frame_ttl_s=600), 60)  # fmt: skip
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="old", frames=refs[:1]), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    redact = stage_queue(connection, "redact")
    outcomes = {}
    for batch in ("new", "old"):
        for frame in parse_job(redact.fetch_job(f"redact-{batch}").args[0], RedactJob).frames:  # type: ignore[union-attr]
            outcomes[batch, frame.frame.frame_id] = (frame.outcome, frame.detail)
    assert settings.max_frame_age_s * 0.8 < 40 < 60
    assert outcomes == {
        ("new", "cam:1:0"): ("done", None),
        ("new", "cam:1:1"): ("skipped", "too old"),
        ("new", "cam:1:2"): ("skipped", "too old"),
        ("new", "cam:1:3"): ("done", None),
        ("new", "cam:1:4"): ("done", None),  # footage has no freshness to keep: 256 of 317 frames were shed
        ("old", "cam:1:0"): ("skipped", "too old"),  # the clocks' difference, as before
    }


def test_a_plate_running_out_of_the_frame_is_flagged_for_the_ocr_pool(redis_url, settings, plate_and_box):
    """The frame's right edge cuts the plate in two: its box is at the side edge, and says so."""
    image, (x1, _, x2, _) = plate_and_box
    cut = np.ascontiguousarray(image[:, : int((x1 + x2) / 2)])
    connection = connect_redis(redis_url)
    frames = {"cam:1:0": image, "cam:1:1": cut}
    FrameStore(connection, 600).put_many([(frame_key(f), encode_jpeg(im, 90)) for f, im in frames.items()])
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="e", frames=[ref(f) for f in frames]), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    ocr_job = parse_job(stage_queue(connection, "ocr").fetch_job("ocr-e").args[0], OcrJob)  # type: ignore[union-attr]
    flags = {f.frame.frame_id: [p.at_side_edge for p in f.plates] for f in ocr_job.frames}
    assert flags == {"cam:1:0": [False], "cam:1:1": [True]}


def test_a_batch_run_again_after_its_hand_off_leaves_the_queued_jobs_as_they_were(redis_url, settings, plate_frame):
    """RQ runs a job again when its worker died (or Redis went) after the hand-off, before the job was
    marked finished; by then its frames are too old. Handing on again replaced the redaction job still
    queued with one of frames skipped as too old (not kept, though their reads were logged)."""
    connection = connect_redis(redis_url)
    FrameStore(connection, 600).put_many([(frame_key("cam:1:0"), encode_jpeg(plate_frame, 90))])
    detect = stage_queue(connection, "detect")
    enqueue(detect, DetectJob(batch_id="again", frames=[ref("cam:1:0")]), 60)
    args = ["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    assert main(args) == 0
    redact = stage_queue(connection, "redact")
    before = parse_job(redact.fetch_job("redact-again").args[0], RedactJob)  # type: ignore[union-attr]
    old = ref("cam:1:0", age_s=3600)  # the same batch, run again an hour on
    enqueue(detect, DetectJob(batch_id="again", frames=[old]), 60)
    assert main(args) == 0
    after = parse_job(redact.fetch_job("redact-again").args[0], RedactJob)  # type: ignore[union-attr]
    assert after == before and after.frames[0].outcome == "done" and redact.get_job_ids() == ["redact-again"]


def test_a_batch_sent_again_is_a_new_record_not_the_old_one_patched(redis_url):
    """RQ writes only the fields a job has: a batch sent again under its id kept the old record's meta
    (marked permanent by a rejection: the new job was never retried, never replayed)."""
    from common.stage_job import PERMANENT

    connection = connect_redis(redis_url)
    detect = stage_queue(connection, "detect")
    first = detect.fetch_job(enqueue(detect, DetectJob(batch_id="resent", frames=[ref("cam:1:0")]), 60))
    first.mark_permanent("rejected: an older version's job")  # type: ignore[union-attr]
    connection.hset(f"rq:job:{first.id}", "webhooks", '["http://planted.example/"]')  # type: ignore[union-attr]
    again = detect.fetch_job(enqueue(detect, DetectJob(batch_id="resent", frames=[ref("cam:1:0")]), 60))
    assert (
        again is not None and PERMANENT not in again.meta and not connection.hexists(f"rq:job:{again.id}", "webhooks")
    )


def test_the_longest_frame_id_a_job_may_carry_still_names_its_crops(redis_url, settings, plate_frame):
    """A crop's key is the frame's with `:plateN`: a frame id of 193-200 characters made a key past the
    store's bound, failed the whole batch three times and lost every frame of it."""
    from common.errors import InputError

    connection = connect_redis(redis_url)
    longest = "cam:" + "x" * 186
    FrameStore(connection, 600).put_many([(frame_key(longest), encode_jpeg(plate_frame, 90))])
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="long", frames=[ref(longest)]), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    ocr_job = parse_job(stage_queue(connection, "ocr").fetch_job("ocr-long").args[0], OcrJob)  # type: ignore[union-attr]
    assert ocr_job.frames[0].plates[0].crop_key
    payload = DetectJob(batch_id="longer", frames=[ref(longest)]).model_dump(mode="json")
    payload["frames"][0]["frame_id"] += "x"
    with pytest.raises(InputError, match="frame_id"):
        parse_job(payload, DetectJob)


EARLIER_RELEASE_CROP_KEY = r"alpr:frame:{frame_id}:plate[0-9]+"
"""The crop keys the OCR and redaction workers of the release before frames were stored with their digest
(f6b2a11) accept, fixed here: its DetectedFrame takes `alpr:frame:<frame id>:plate` and digits alone (and a
store key of 200 characters at most after `alpr:frame:`); a job naming any other is rejected whole."""


@pytest.mark.parametrize("frame_id", ["cam:1:0", "cam:" + "x" * 179], ids=["short", "longest_stored"])
def test_two_versions_of_a_frame_crop_apart_under_keys_the_earlier_release_reads(
    redis_url, settings, plate_frame, frame_id
):
    """Footage read again with other bytes is stored twice under one frame id (`stored_frame_key`), and its
    crops must not replace each other's (the first job's reads were logged corrupt). Keyed `<stored key>:plateN`
    they did not, but every OCR and redaction worker of the release before rejected each job of such a
    detector (31 + 31 jobs, 120 frames never read, a review: a rollback, or detectors upgraded first, lost
    all). Each version's crop now has a key of its own in the earlier form, within the store's bound for the
    longest frame id a stored key allows (183 characters)."""
    connection = connect_redis(redis_url)
    store, crops = FrameStore(connection, 600), []
    args = ["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]
    for version, quality in enumerate((90, 60)):  # the same frame, sampled again with other bytes
        jpeg = encode_jpeg(plate_frame, quality)
        digest = jpeg_digest(jpeg)
        key = stored_frame_key(frame_id, digest)
        store.put_many([(key, jpeg)])
        frame = ref(frame_id).model_copy(update={"key": key, "digest": digest})
        enqueue(stage_queue(connection, "detect"), DetectJob(batch_id=f"v{version}", frames=[frame]), 60)
        assert main(args) == 0
        ocr_job = parse_job(stage_queue(connection, "ocr").fetch_job(f"ocr-v{version}").args[0], OcrJob)  # type: ignore[union-attr]
        crops.append([(p.crop_key, p.crop_digest) for p in ocr_job.frames[0].plates if p.crop_key])
    assert crops[0] and crops[1] and not {k for k, _ in crops[0]} & {k for k, _ in crops[1]}
    stored = store.get_within_bounds([key for version in crops for key, _ in version]).jpegs
    assert all(jpeg_digest(stored[key] or b"") == digest for v in crops for key, digest in v)  # each its own
    earlier = EARLIER_RELEASE_CROP_KEY.format(frame_id=re.escape(frame_id))
    assert all(re.fullmatch(earlier, key) and len(key) <= len("alpr:frame:") + 200 for v in crops for key, _ in v)


def test_stored_frames_past_the_byte_bounds_are_skipped_unread_and_a_key_named_twice_is_refused(
    redis_url, settings, plate_frame, monkeypatch
):
    """A JPEG's header says nothing of the bytes after it: padded frames, or one key named 64 times (read
    64 times over), had a worker read gigabytes. Bounds here shrunk to the test's frames."""
    from common import defaults

    connection = connect_redis(redis_url)
    jpeg = encode_jpeg(plate_frame, 90)
    monkeypatch.setattr(defaults, "MAX_FRAME_BYTES", len(jpeg) + 10)
    monkeypatch.setattr(defaults, "MAX_JOB_FRAME_BYTES", 2 * len(jpeg) + 10)
    stored = {"cam:1:0": jpeg, "cam:1:1": jpeg + b"\0" * 100, "cam:1:2": jpeg, "cam:1:3": jpeg}  # 1: padded
    FrameStore(connection, 600).put_many([(frame_key(f), data) for f, data in stored.items()])
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="big", frames=[ref(f) for f in stored]), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    redact_job = parse_job(stage_queue(connection, "redact").fetch_job("redact-big").args[0], RedactJob)  # type: ignore[union-attr]
    outcomes = {f.frame.frame_id: (f.outcome, f.detail) for f in redact_job.frames}
    assert outcomes == {"cam:1:0": ("done", None), "cam:1:1": ("skipped", "too large"), "cam:1:2": ("done", None),
                        "cam:1:3": ("skipped", "over job byte budget")}  # fmt: skip
    twice = [ref("cam:1:0"), ref("cam:1:0").model_copy(update={"frame_id": "cam:1:9"}), ref("cam:1:2")]
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="twice", frames=twice), 60)  # one key twice
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    redact_job = parse_job(stage_queue(connection, "redact").fetch_job("redact-twice").args[0], RedactJob)  # type: ignore[union-attr]
    outcomes = [(f.frame.frame_id, f.outcome, f.detail) for f in redact_job.frames]
    assert sorted(outcomes) == [("cam:1:0", "done", None), ("cam:1:2", "done", None),  # read once; the job goes on
                                ("cam:1:9", "skipped", "named twice in its job")]  # fmt: skip


def test_a_frame_whose_stored_bytes_are_not_those_sampled_is_not_detected(redis_url, settings):
    """Another frame put under a frame's key (whoever can write to the frames Redis) is not taken for it."""
    from common.frame_store import NOT_AS_STORED

    connection = connect_redis(redis_url)
    sampled = encode_jpeg(np.full((360, 640, 3), 90, np.uint8), 90)
    FrameStore(connection, 600).put_many([(frame_key("cam:1:0"), encode_jpeg(np.full((360, 640, 3), 30, np.uint8), 90)),
                                          (frame_key("cam:1:1"), sampled)])  # fmt: skip
    frames = [ref(f).model_copy(update={"digest": jpeg_digest(sampled)}) for f in ("cam:1:0", "cam:1:1")]
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="swap", frames=frames), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    redact_job = parse_job(stage_queue(connection, "redact").fetch_job("redact-swap").args[0], RedactJob)  # type: ignore[union-attr]
    outcomes = {f.frame.frame_id: (f.outcome, f.detail) for f in redact_job.frames}
    assert outcomes == {"cam:1:0": ("corrupt", NOT_AS_STORED), "cam:1:1": ("done", None)}


def test_a_frame_key_holding_an_empty_value_or_a_list_is_corrupt_not_expired(redis_url, settings):
    """Counted 0 bytes, a key with an empty value or of another type was recorded expired (a review)."""
    from common.frame_store import EMPTY_VALUE, OTHER_TYPE

    connection = connect_redis(redis_url)
    connection.set(frame_key("cam:1:0"), b"", ex=600)
    connection.rpush(frame_key("cam:1:1"), b"x")
    frames = [ref("cam:1:0"), ref("cam:1:1"), ref("cam:1:2")]  # cam:1:2 was never stored
    enqueue(stage_queue(connection, "detect"), DetectJob(batch_id="planted", frames=frames), 60)
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir", str(settings.model_dir)]) == 0
    redact_job = parse_job(stage_queue(connection, "redact").fetch_job("redact-planted").args[0], RedactJob)  # type: ignore[union-attr]
    outcomes = {f.frame.frame_id: (f.outcome, f.detail) for f in redact_job.frames}
    assert outcomes == {"cam:1:0": ("corrupt", EMPTY_VALUE), "cam:1:1": ("corrupt", OTHER_TYPE),
                        "cam:1:2": ("expired", "before detection")}  # fmt: skip


def test_frames_not_begun_within_the_jobs_time_budget_are_passed_on_skipped(redis_url, detector, plate_frame):
    """A job of more work than its timeout timed out on every attempt, none of its frames detected."""
    from common.metrics import Metrics
    from detector_worker.worker import DetectStage

    connection = connect_redis(redis_url)
    ids = [f"cam:1:{n}" for n in range(4)]
    FrameStore(connection, 600).put_many([(frame_key(f), encode_jpeg(plate_frame, 90)) for f in ids])
    metrics = Metrics()
    stage = DetectStage(
        detector, FrameStore(connection, 600), stage_queue(connection, "ocr"), stage_queue(connection, "redact"),
        metrics, 0.08, 60, 30.0, time_budget_s=0.0,
    )  # fmt: skip
    job = DetectJob(batch_id="late", frames=[ref(f) for f in ids])
    assert stage.handle(job.model_dump(mode="json")).not_done == 3  # the first batch always runs
    redact = parse_job(stage_queue(connection, "redact").fetch_job("redact-late").args[0], RedactJob)  # type: ignore[union-attr]
    ends = {f.frame.frame_id: (f.outcome, f.detail, bool(f.plates)) for f in redact.frames}
    assert ends == {
        "cam:1:0": ("done", None, True),
        **dict.fromkeys(ids[1:], ("skipped", "over job time budget", False)),
    }
    ocr = parse_job(stage_queue(connection, "ocr").fetch_job("ocr-late").args[0], OcrJob)  # type: ignore[union-attr]
    assert [f.frame.frame_id for f in ocr.frames] == ["cam:1:0"]
    skipped = metrics.frames_skipped.labels(camera="cam", reason="over_job_time_budget")._value.get()
    assert skipped == 3

    generous = DetectStage(
        detector, FrameStore(connection, 600), stage_queue(connection, "ocr"), stage_queue(connection, "redact"),
        metrics, 0.08, 60, 30.0,
    )  # fmt: skip
    assert (
        generous.handle(DetectJob(batch_id="in-time", frames=[ref(f) for f in ids]).model_dump(mode="json")).frames == 4
    )


def test_plates_outside_the_cameras_roi_are_counted_per_camera(redis_url, detector, plate_and_box):
    """A camera whose ROI misses its plates (drawn for another resolution, x and y swapped) read nothing,
    and the chain said so nowhere but in the ingest node's one warning: `alpr run` counts them, the
    detector pool had no metric. Now `alpr_plates_outside_roi_total{camera}`; plates in the ROI, or at a
    camera with none, are not counted."""
    from common.metrics import Metrics
    from detector_worker.worker import DetectStage

    image, (x1, y1, x2, y2) = plate_and_box
    height, width = image.shape[:2]
    around = [(x1 - 20, y1 - 20), (x2 + 20, y1 - 20), (x2 + 20, y2 + 20), (x1 - 20, y2 + 20)]
    corner = [(0, 0), (40, 0), (40, 40), (0, 40)]
    assert not (x1 < 40 and y1 < 40) and x2 < width and y2 < height  # the plate lies outside the corner
    frames = {"cam:1:0": None, "cam:1:1": around, "far:1:0": corner, "far:1:1": corner}
    connection = connect_redis(redis_url)
    FrameStore(connection, 600).put_many([(frame_key(f), encode_jpeg(image, 90)) for f in frames])
    refs = [FrameRef(**{**ref(f).model_dump(), "roi": roi}) for f, roi in frames.items()]
    metrics = Metrics()
    stage = DetectStage(
        detector, FrameStore(connection, 600), stage_queue(connection, "ocr"), stage_queue(connection, "redact"),
        metrics, 0.08, 60, 30.0,
    )  # fmt: skip
    stage.handle(DetectJob(batch_id="roi", frames=refs).model_dump(mode="json"))
    redact = parse_job(stage_queue(connection, "redact").fetch_job("redact-roi").args[0], RedactJob)  # type: ignore[union-attr]
    in_roi = {f.frame.frame_id: [p.in_roi for p in f.plates] for f in redact.frames}
    assert in_roi == {"cam:1:0": [True], "cam:1:1": [True], "far:1:0": [False], "far:1:1": [False]}  # all blurred

    def counted(camera: str) -> float | None:
        return metrics.registry.get_sample_value("alpr_plates_outside_roi_total", {"camera": camera})

    assert counted("far") == 2 and counted("cam") is None  # per camera; never plate text in a label


def test_a_job_whose_young_frames_are_all_missing_says_the_frame_store_may_be_another(redis_url, settings, caplog):
    """An ingest node and workers given different ALPR_FRAME_STORE_URLs had every frame recorded expired
    before detection, and no role said why (a review). A job stored well within its TTL of which no frame
    is in the store is told of, once a minute at most; one stored long ago, or with a frame there, is not."""
    connection = connect_redis(redis_url)
    FrameStore(connection, 600).put_many([(frame_key("cam:3:0"), encode_jpeg(np.full((90, 160, 3), 90, np.uint8), 90))])
    now = time.time()
    jobs = {
        "elsewhere": DetectJob(batch_id="elsewhere", frames=[ref("cam:1:0"), ref("cam:1:1")], stored_at_s=now,
                               frame_ttl_s=600),
        "again": DetectJob(batch_id="again", frames=[ref("cam:1:2")], stored_at_s=now, frame_ttl_s=600),
        "long ago": DetectJob(batch_id="ago", frames=[ref("cam:2:0", 500)], stored_at_s=now - 500, frame_ttl_s=600),
        "one there": DetectJob(batch_id="there", frames=[ref("cam:3:0"), ref("cam:3:1")], stored_at_s=now,
                               frame_ttl_s=600),
    }  # fmt: skip
    for job in jobs.values():
        enqueue(stage_queue(connection, "detect"), job, 60)
    with caplog.at_level(logging.WARNING, logger="detector_worker.worker"):
        assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--model-dir",
                     str(settings.model_dir)]) == 0  # fmt: skip
    told = [r.getMessage() for r in caplog.records if "none of their frames" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith("1 job(s) found none of their frames in the frame store"), told
    assert "ALPR_FRAME_STORE_URL" in told[0]
