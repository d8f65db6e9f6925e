"""The job schemas that travel between roles, as versioned JSON (never pickle, never pixels): a job
carries frame references (ids, frame-store keys, capture times) and the results so far. A payload
that fails validation is a clear, recorded job failure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import InputError

SCHEMA_VERSION: Literal[1] = 1
"""Version of the job payloads below; workers reject payloads of another version."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FrameRef(Strict):
    """One sampled frame: where its JPEG bytes sit in the frame store, and what it is."""

    frame_id: str = Field(description="camera id + capture time in ms: unique and deterministic")
    camera_id: str
    seq: int = Field(ge=0, description="sampled-frame sequence number within the camera's run")
    frame_index: int = Field(ge=0, description="index of the frame in its source")
    captured_at: float = Field(description="capture time, Unix seconds")
    source_time_s: float = Field(ge=0, description="time of the frame from the start of its source")
    key: str = Field(description="frame-store key of the JPEG bytes")
    region: str = Field(description="plate-format region of the camera")
    roi: list[tuple[float, float]] | None = Field(None, description="region of interest polygon, pixels")


class PlateBox(Strict):
    box_xyxy: tuple[float, float, float, float]
    confidence: float
    crop_key: str | None = Field(None, description="frame-store key of the plate crop (with OCR margin)")


class DetectedFrame(Strict):
    frame: FrameRef
    plates: list[PlateBox]
    detect_ms: float
    missing: str | None = Field(default=None, description="why the frame was not processed (expired from the store)")


class DetectJob(Strict):
    """Ingest → detector: a batch of frames to find plates in."""

    v: Literal[1] = SCHEMA_VERSION
    stage: Literal["detect"] = "detect"
    batch_id: str
    frames: list[FrameRef] = Field(min_length=1)


class OcrJob(Strict):
    """Detector → OCR: the batch's frames with their plate boxes."""

    v: Literal[1] = SCHEMA_VERSION
    stage: Literal["ocr"] = "ocr"
    batch_id: str
    frames: list[DetectedFrame] = Field(min_length=1)


class RedactJob(Strict):
    """OCR → redactor: frames to blur and keep, with per-stage timings so far."""

    v: Literal[1] = SCHEMA_VERSION
    stage: Literal["redact"] = "redact"
    batch_id: str
    frames: list[DetectedFrame] = Field(min_length=1)
    ocr_ms: dict[str, float] = Field(default_factory=dict, description="frame_id -> OCR time")


JOB_TYPES: dict[str, type[DetectJob] | type[OcrJob] | type[RedactJob]] = {
    "detect": DetectJob,
    "ocr": OcrJob,
    "redact": RedactJob,
}


def parse_job(payload: Any, stage: str) -> DetectJob | OcrJob | RedactJob:
    """Validate a payload for `stage`; InputError says what is wrong."""
    if not isinstance(payload, dict):
        raise InputError(f"{stage} job payload must be a JSON object, got {type(payload).__name__}")
    if payload.get("v") != SCHEMA_VERSION:
        raise InputError(f"{stage} job has schema version {payload.get('v')!r}, this worker reads {SCHEMA_VERSION}")
    if payload.get("stage") != stage:
        raise InputError(f"a {payload.get('stage')!r} job reached the {stage} queue")
    try:
        return JOB_TYPES[stage].model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        raise InputError(f"malformed {stage} job: {problems}") from None


def job_id(stage: str, batch_id: str) -> str:
    """Deterministic RQ job id: the same batch at the same stage always has the same id (RQ allows
    letters, digits, '-' and '_' only)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{stage}-{batch_id}")
