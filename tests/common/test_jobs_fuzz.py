"""Fuzzing the job schemas: for every stage, any JSON-like payload (nan and infinities included) and any
mutation of a valid job either parses as that stage's job class or is refused with InputError; nothing
else (ValueError, TypeError, KeyError, RecursionError...) escapes `parse_job`."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import InputError
from common.frame_log import FrameRecord
from common.jobs import DetectedFrame, DetectJob, FrameRef, OcrJob, PlateBox, RedactJob, parse_job
from tests.strategies import FUZZ_SETTINGS, json_like

JOB_CLASSES: dict[str, type[DetectJob] | type[OcrJob] | type[RedactJob]] = {
    "detect": DetectJob,
    "ocr": OcrJob,
    "redact": RedactJob,
}
STAGES = list(JOB_CLASSES)


def parse_for(payload: Any, stage: str) -> DetectJob | OcrJob | RedactJob:
    return parse_job(payload, JOB_CLASSES[stage])


def valid_job(stage: str) -> DetectJob | OcrJob | RedactJob:
    """A well-formed job of each stage, built with the schema's own classes."""
    frame = FrameRef(
        frame_id="gate-3:1700000000000",
        camera_id="gate-3",
        seq=4,
        frame_index=40,
        captured_at_s=1.7e9,
        stage_ms={"detect": 12.5},
        source_time_s=4.0,
        key="alpr:frame:gate-3:1700000000000",
        region="us",
        roi=[(0.0, 0.0), (1280.0, 0.0), (1280.0, 720.0)],
    )
    if stage == "detect":
        return DetectJob(batch_id="node-1:0", frames=[frame])
    detected = DetectedFrame(
        frame=frame,
        plates=[PlateBox(box_xyxy=(10.0, 20.0, 110.0, 60.0), confidence=0.9)],
    )
    if stage == "ocr":
        return OcrJob(batch_id="node-1:0", frames=[detected])
    return RedactJob(batch_id="node-1:0", frames=[detected])


json_values = json_like(
    ["detect", "ocr", "redact", "alpr:frame:gate-3:1", "gate-3", "us", "done", ""], max_text=30, max_leaves=40
)


def assert_parses_or_is_refused(payload: Any, stage: str) -> None:
    try:
        job = parse_for(payload, stage)
    except InputError as error:
        assert str(error), "an InputError says what is wrong"
        return
    assert isinstance(job, JOB_CLASSES[stage])
    refs = job.frames if isinstance(job, DetectJob) else [detected.frame for detected in job.frames]
    for ref in refs:
        assert FrameRecord(ref, "done").row()  # an accepted frame can be logged: no later, retried failure


def paths_into(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON-like value, as the keys and indexes that reach it (the root too)."""
    places = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            places += paths_into(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += paths_into(item, (*prefix, index))
    return places


def mutated(payload: Any, place: tuple[Any, ...], operation: str, replacement: Any) -> Any:
    """`payload` with the value at `place` replaced, deleted, wrapped in a list, given an extra key or
    (a list) duplicated. `place == ()` works on the whole payload."""
    if not place:
        return replacement if operation in ("replace", "delete") else [payload]
    *parents, last = place
    container = payload
    for step in parents:
        container = container[step]
    if operation == "replace":
        container[last] = replacement
    elif operation == "delete":
        del container[last]
    elif operation == "wrap":
        container[last] = [container[last]]
    elif operation == "extra-key" and isinstance(container[last], dict):
        container[last]["unexpected"] = replacement
    elif operation == "duplicate" and isinstance(container[last], list):
        container[last] = container[last] * 300  # past any max_length on a list
    else:
        container[last] = replacement
    return payload


@st.composite
def mutated_valid_jobs(draw: st.DrawFn) -> tuple[str, Any]:
    stage = draw(st.sampled_from(STAGES))
    payload: Any = valid_job(draw(st.sampled_from(STAGES))).model_dump(mode="json")
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(paths_into(payload)))
        operation = draw(st.sampled_from(["replace", "delete", "wrap", "extra-key", "duplicate"]))
        payload = mutated(payload, place, operation, draw(json_values))
    return stage, payload


@pytest.mark.parametrize("stage", STAGES)
def test_the_valid_samples_parse(stage: str) -> None:
    job = valid_job(stage)
    assert parse_for(job.model_dump(mode="json"), stage) == job


@FUZZ_SETTINGS
@given(stage=st.sampled_from(STAGES), payload=json_values)
def test_arbitrary_payloads(stage: str, payload: Any) -> None:
    assert_parses_or_is_refused(payload, stage)


@FUZZ_SETTINGS
@given(stage=st.sampled_from(STAGES), body=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_arbitrary_payloads_with_the_right_version_and_stage(stage: str, body: dict[str, Any]) -> None:
    assert_parses_or_is_refused({**body, "v": 2, "stage": stage}, stage)


@FUZZ_SETTINGS
@given(case=mutated_valid_jobs())
def test_mutated_valid_jobs(case: tuple[str, Any]) -> None:
    stage, payload = case
    assert_parses_or_is_refused(payload, stage)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    "poison",
    [math.nan, math.inf, -math.inf, 10**400, -1, "", "x" * 100_000, True, None, [], {}],
    ids=["nan", "inf", "-inf", "huge-int", "negative", "empty", "long-text", "bool", "null", "list", "dict"],
)
def test_every_field_poisoned(stage: str, poison: Any) -> None:
    """Each place of a valid job replaced in turn by a value that breaks naive code."""
    sample = valid_job(stage).model_dump(mode="json")
    for place in paths_into(sample)[1:]:
        assert_parses_or_is_refused(mutated(valid_job(stage).model_dump(mode="json"), place, "replace", poison), stage)


@pytest.mark.parametrize("stage", STAGES)
def test_deep_nesting(stage: str) -> None:
    deep: Any = 0
    for _ in range(5000):
        deep = [deep]
    payload = valid_job(stage).model_dump(mode="json")
    payload["frames"][0]["roi"] = deep
    assert_parses_or_is_refused(payload, stage)
    assert_parses_or_is_refused({"v": 2, "stage": stage, "batch_id": "b", "frames": deep}, stage)


@pytest.mark.parametrize("captured_at", [1e12, 253402300800.0])
def test_a_capture_time_no_log_can_hold_is_refused_at_parsing(captured_at: float) -> None:
    payload = valid_job("redact").model_dump(mode="json")
    payload["frames"][0]["frame"]["captured_at_s"] = captured_at
    with pytest.raises(InputError, match="captured_at_s"):
        parse_job(payload, RedactJob)
    payload["frames"][0]["frame"]["captured_at_s"] = 253402300799.0  # the last second of 9999: still loggable
    assert FrameRecord(parse_job(payload, RedactJob).frames[0].frame, "done").row()
