import pytest

from common.errors import InputError
from common.jobs import DetectJob, FrameRef, job_id, parse_job

REF = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at=1.5e9, source_time_s=0.0,
               key="alpr:frame:cam:1:0", region="us")  # fmt: skip


def test_round_trip_through_json():
    job = DetectJob(batch_id="node-1:0", frames=[REF])
    payload = job.model_dump(mode="json")
    assert payload["v"] == 1 and payload["stage"] == "detect"
    assert parse_job(payload, "detect") == job


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not a dict", "must be a JSON object"),
        ({"v": 2, "stage": "detect", "batch_id": "b", "frames": []}, "schema version 2"),
        ({"v": 1, "stage": "ocr", "batch_id": "b", "frames": []}, "a 'ocr' job reached the detect queue"),
        ({"v": 1, "stage": "detect", "batch_id": "b", "frames": []}, "malformed detect job: frames"),
        ({"v": 1, "stage": "detect", "batch_id": "b", "frames": [{"frame_id": "x"}]}, "malformed detect job"),
        ({"v": 1, "stage": "detect", "batch_id": "b", "frames": [REF.model_dump()], "pixels": "..."}, "pixels"),
    ],
)
def test_malformed_payloads_are_input_errors(payload, message):
    with pytest.raises(InputError, match=message):
        parse_job(payload, "detect")


def test_job_ids_are_deterministic_and_valid_for_rq():
    assert job_id("ocr", "host.a-1:17") == job_id("ocr", "host.a-1:17") == "ocr-host_a-1_17"
