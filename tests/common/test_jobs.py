import re

import pytest

from common import defaults
from common.errors import InputError
from common.jobs import DetectedFrame, DetectJob, FrameRef, OcrJob, PlateBox, job_id, parse_job

REF = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=1.5e9, source_time_s=0.0,
               key="alpr:frame:cam:1:0", region="us")  # fmt: skip


def test_round_trip_through_json():
    job = DetectJob(batch_id="node-1:0", frames=[REF])
    payload = job.model_dump(mode="json")
    assert payload["v"] == 2 and payload["stage"] == "detect"
    assert parse_job(payload, DetectJob) == job


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not a dict", "must be a JSON object"),
        ({"v": 1, "stage": "detect", "batch_id": "b", "frames": []}, "schema version 1"),
        ({"v": 2, "stage": "ocr", "batch_id": "b", "frames": []}, "a 'ocr' job reached the detect queue"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": []}, "malformed detect job: frames"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{"frame_id": "x"}]}, "malformed detect job"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [REF.model_dump()], "pixels": "..."}, "pixels"),
        # a job may name frame-store keys only: no other Redis key is read or deleted through a job
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "key": "canary:x"}]}, "key"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "key": "alpr:frame:../x"}]},
         "key"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "captured_at_s": float("nan")}]},
         "captured_at"),
        ({"v": 2, "stage": "detect", "batch_id": "b c", "frames": [REF.model_dump()]}, "batch_id"),
        # a frame named as another camera's (or outside the scheme) would be kept under a name no sweep deletes
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "frame_id": "other:1:0"}]},
         "frame_id must begin with its camera_id"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "frame_id": "cam1:0"}]},
         "frame_id must begin with its camera_id"),
        # numbers that parse but would fail later, every time: a BIGINT column, the box geometry
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "seq": 2**70}]}, "seq"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": [{**REF.model_dump(), "frame_index": 2**63}]},
         "frame_index"),
        ({"v": 2, "stage": "detect", "batch_id": "b",
          "frames": [{**REF.model_dump(), "roi": [[0, 0], [1e308, 0], [0, 5]]}]}, "roi"),
    ],
)  # fmt: skip
def test_malformed_payloads_are_input_errors(payload, message):
    with pytest.raises(InputError, match=message):
        parse_job(payload, DetectJob)


def test_a_crop_key_outside_the_frame_store_is_refused():
    plate = {"box_xyxy": [1, 2, 3, 4], "confidence": 0.9, "crop_key": "rq:workers"}
    payload = OcrJob(batch_id="b", frames=[DetectedFrame(frame=REF, plates=[])]).model_dump(mode="json")
    payload["frames"][0]["plates"] = [plate]
    with pytest.raises(InputError, match="crop_key"):
        parse_job(payload, OcrJob)
    plate["crop_key"] = "alpr:frame:cam:1:0:plate0"
    assert parse_job(payload, OcrJob).frames[0].plates == [PlateBox(box_xyxy=(1, 2, 3, 4), confidence=0.9,
                                                                    crop_key="alpr:frame:cam:1:0:plate0")]  # fmt: skip


def test_a_crop_key_is_the_frames_id_and_digits_or_its_stored_key_and_a_plate_index():
    """An ingest node stores a frame under its id and its bytes' digest (`stored_frame_key`); the detector
    keys its crops `<frame id>:plate<digits>` (a number for that key, then the index), as a detector of an
    earlier release did (the index alone); for a while detectors keyed them `<stored key>:plate<N>`."""
    from common.frame_store import crop_key, stored_frame_key

    ref = REF.model_copy(update={"key": stored_frame_key(REF.frame_id, "ab" * 32)})
    for key in (crop_key(ref.frame_id, ref.key, 3), f"alpr:frame:{REF.frame_id}:plate3", f"{ref.key}:plate3"):
        frame = DetectedFrame(frame=ref, plates=[PlateBox(box_xyxy=(1, 2, 3, 4), confidence=0.9, crop_key=key)])
        assert parse_job(OcrJob(batch_id="b", frames=[frame]).model_dump(mode="json"), OcrJob).frames == [frame]
    for key in (ref.key, f"{ref.key}:plateX", "alpr:frame:cam:9:0:plate3", f"{ref.key}x:plate3"):
        payload = OcrJob(batch_id="b", frames=[DetectedFrame(frame=ref, plates=[])]).model_dump(mode="json")
        payload["frames"][0]["plates"] = [{"box_xyxy": [1, 2, 3, 4], "confidence": 0.9, "crop_key": key}]
        with pytest.raises(InputError, match="crop key is not this frame's"):
            parse_job(payload, OcrJob)


@pytest.mark.parametrize("length", [7, 120, 176, 183])
def test_crop_keys_of_two_versions_of_a_frame_differ_and_keep_the_form_and_bound_of_the_earlier_release(length):
    """The crops of one frame stored twice (read again with other bytes: two digests) never share a key, at
    any plate index, and each key is `alpr:frame:<frame id>:plate` and digits within 200 characters after
    `alpr:frame:` (the only crop keys the OCR and redaction workers of the release before the digest accept,
    fixed here), up to the longest frame id a stored key allows (183). A frame stored under its id alone (an
    ingest node of that release) keeps the plain index."""
    from common.frame_store import crop_key, frame_key, stored_frame_key

    frame_id = "cam:" + "1" * (length - 4)
    indexes = range(defaults.DETECTOR_MAX_PLATES_PER_FRAME)
    versions = [[crop_key(frame_id, stored_frame_key(frame_id, d * 64), i) for i in indexes] for d in "ab"]
    assert len(set(versions[0]) | set(versions[1])) == 2 * len(indexes)
    earlier = re.compile(rf"alpr:frame:{re.escape(frame_id)}:plate[0-9]+")
    assert all(earlier.fullmatch(key) and len(key) <= len("alpr:frame:") + 200 for v in versions for key in v)
    assert crop_key(frame_id, frame_key(frame_id), 7) == f"alpr:frame:{frame_id}:plate7"


@pytest.mark.parametrize("detail", ["\x00", "too old\x00", "a\nb"])
def test_a_frame_detail_with_a_control_character_is_refused_not_failed_in_the_database(detail):
    """Postgres refuses NUL in text: such a detail failed the frames' write, and the job was retried."""
    payload = OcrJob(batch_id="b", frames=[DetectedFrame(frame=REF, plates=[])]).model_dump(mode="json")
    payload["frames"][0]["detail"] = detail
    with pytest.raises(InputError, match="detail"):
        parse_job(payload, OcrJob)
    payload["frames"][0]["detail"] = "expired before detection"
    assert parse_job(payload, OcrJob).frames[0].detail == "expired before detection"


def test_job_ids_are_deterministic_valid_for_rq_and_never_shared_by_two_batches():
    assert job_id("ocr", "host.a-1:17") == job_id("ocr", "host.a-1:17") == "ocr-host_da-1_c17"
    ids = {job_id("alert", b) for b in ("42.ops.team.1", "42.ops_team.1", "42.ops:team.1", "42_dops.team.1")}
    assert len(ids) == 4  # `.` and `:` were both `_`: one receiver's job overwrote the other's


def test_a_frame_carries_as_many_boxes_as_the_detector_gives():
    # the schema once allowed 64 boxes where the detector gave 100: a crowded frame failed its whole
    # detect job, retried, and its batch was lost
    box = PlateBox(box_xyxy=(1, 2, 3, 4), confidence=0.9)
    most = defaults.DETECTOR_MAX_PLATES_PER_FRAME
    assert len(DetectedFrame(frame=REF, plates=[box] * most).plates) == most
    with pytest.raises(ValueError, match="at most"):
        DetectedFrame(frame=REF, plates=[box] * (most + 1))


def test_the_largest_job_the_chain_makes_fits_well_within_the_job_data_bound():
    """The bound was 32 MB: a 32 KB zlib job of empty objects took a worker to 1 GB. Now 4 MiB, it must
    still hold the largest real job (OCR: every frame with the most plates, the longest ids and region)."""
    import json

    from common.frame_store import frame_key

    roi = [(i * 3.123456789, i * 7.987654321) for i in range(256)]
    frames = []
    for i in range(defaults.MAX_FRAMES_PER_JOB):
        camera = f"{'c' * 60}{i:02d}"
        ref = FrameRef(frame_id=f"{camera}:1796273582590:{10**15 + i}", camera_id=camera, seq=10**15,
                       frame_index=10**15, captured_at_s=1796273582.123456, source_time_s=12345.678901,
                       key=frame_key(f"{camera}:1796273582590:{10**15 + i}"), region="us", roi=roi,
                       stage_ms={"detect": 123.456789, "ocr": 12.3456789})  # fmt: skip
        plates = [PlateBox(box_xyxy=(1234.5678, 2345.6789, 3456.789, 4567.891), confidence=0.87654321,
                           crop_key=f"{ref.key}:plate{j}", at_side_edge=True)
                  for j in range(defaults.DETECTOR_MAX_PLATES_PER_FRAME)]  # fmt: skip
        frames.append(DetectedFrame(frame=ref, plates=plates, detail="x" * 200))
    job = OcrJob(batch_id="b" * 100, frames=frames)
    assert len(json.dumps(job.model_dump(mode="json"))) < defaults.MAX_JOB_DATA_BYTES / 1.5
