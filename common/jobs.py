"""The job schemas that travel between roles, as versioned JSON (never pickle, never pixels): a job
carries frame references (ids, frame-store keys, capture times) and the results so far. A payload
that fails validation is a clear, recorded job failure."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common import defaults
from common.errors import InputError
from common.frame_store import KEY_PREFIX, STORE_KEY_CHARS, UnreadReason
from common.validation_errors import format_errors

SCHEMA_VERSION: Literal[2] = 2
"""Version of the job payloads below; workers reject payloads of another version (2: the detector
hands each batch to OCR and redaction at once; each frame carries its stage timings)."""


ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
"""Frame, camera and batch ids: letters, digits and `_ . : -` (they become Redis keys and file names)."""

FRAME_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,190}$"
"""A frame id: as ID_PATTERN, short enough that the key of each of its plates' crops (`:plateN` added)
is a store key (a 193-200 character id failed its whole batch, every frame of it lost)."""

CAMERA_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
"""A camera id: letters, digits and `_ . -`, never a dot first (it names the camera's folder of kept frames)."""

STORE_KEY_PATTERN = "^" + KEY_PREFIX.replace(":", r"\:") + r"[A-Za-z0-9_.:-]{1," + f"{STORE_KEY_CHARS}}}$"
"""A job may name frame-store keys only: a job naming any other key (`canary:x`) is malformed."""

FrameOutcome = Literal["pending", "done", "skipped", "expired", "corrupt", "lost"]
"""How a sampled frame ended: still in the chain, processed, skipped (with a reason), expired from
the frame store, undecodable, or lost (no stage finished it in time: a Redis restart, say)."""


SkipReason = Literal[
    "backpressure", "node_busy", "node_stopped", "redis_unavailable", "unencodable", "too_large", "too_old",
    "claim_unsure",
]  # fmt: skip
"""Why a sampled frame was skipped (the `reason` label of alpr_frames_skipped_total; its detail in the
frames log reads with spaces): the chain full, the node's buffer full, the node stopping, Redis down,
no JPEG can hold it, more pixels than MAX_FRAME_PIXELS or a JPEG over MAX_FRAME_BYTES, older than the
maximum frame age at detection; claim_unsure counts the frames a live camera's rate would have given while
its node waited for a round of claims to say it still holds the camera (ingest/camera_sampling.py:
claim_told): never sampled, so never logged."""

StageSkipReason = Literal[
    UnreadReason, "too_old", "over_job_pixel_budget", "over_job_time_budget", "named_twice_in_its_job",
    "unknown_region",
]  # fmt: skip
"""Why a worker skipped a frame of its job (the `reason` label of alpr_frames_skipped_total; its detail in the
frames log reads with spaces: skip_detail): its bytes unread (UnreadReason), older than the maximum frame age
at detection, past the job's pixel or time budget, named twice in its job; a plate region the OCR worker
does not know."""

SKIP_REASONS: frozenset[str] = frozenset(get_args(SkipReason)) | frozenset(get_args(StageSkipReason))
"""Every value of alpr_frames_skipped_total's `reason` label: the alert rules and the dashboard name no other
(tests/test_monitoring.py)."""


def skip_detail(reason: str) -> str:
    """A skip reason as the frames log's detail says it (`too old`)."""
    return reason.replace("_", " ")


class Strict(BaseModel):
    """A validated type that crosses a stage: no field it does not name, and its errors never quote what
    they refuse (an alert's plate was quoted in an ERROR log line)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)


MAX_BIGINT = 2**63 - 1
"""The largest number a Postgres BIGINT column holds (seq, frame_index): a larger one is refused at
parsing, not failed in the database and retried."""

MAX_COORDINATE = 1e6
"""Pixel coordinates beyond this (either sign) are refused: no frame is that large (the pixel limit is
tens of millions in all), and such numbers overflow the geometry and the REAL columns later."""

Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]

MAX_TIMESTAMP = 253402300799.0
"""The last second of the year 9999: later capture times cannot become a datetime (the frames and
plate logs), so a job carrying one is refused at parsing, not failed and retried in a later stage."""


StageName = Literal["detect", "ocr", "redact", "alert"]
"""The chain's queued stages: the frames' three, and the delivery of alerts."""

StageTimings = dict[StageName, Annotated[float, Field(ge=0, le=1e7)]]
"""Milliseconds a stage spent on a frame (its share of the job's core time)."""


def make_frame_id(camera_id: str, run: str, position: int | str) -> str:
    """The one frame-id scheme: camera, the run that sampled it (a stream's start, a file's fingerprint
    and pass, a standalone run's start) and the frame's position in that run. Deterministic: a file
    read again gives the same ids, so nothing is logged twice."""
    return f"{camera_id}:{run}:{position}"


class FrameRef(Strict):
    """One sampled frame from capture to log, in both modes: what it is, where its JPEG bytes sit in
    the frame store, and the time each stage has spent on it so far."""

    frame_id: str = Field(pattern=FRAME_ID_PATTERN, description="make_frame_id(): unique and deterministic")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    seq: int = Field(ge=0, le=MAX_BIGINT, description="sampled-frame sequence number within the camera's run")
    frame_index: int = Field(ge=0, le=MAX_BIGINT, description="index of the frame in its source")
    captured_at_s: float = Field(ge=0, le=MAX_TIMESTAMP, description="capture time, Unix seconds")
    source_time_s: float = Field(ge=0, description="time of the frame from the start of its source")
    key: str = Field(pattern=STORE_KEY_PATTERN, description="frame-store key of the JPEG bytes")
    region: str = Field(pattern=r"^[a-z]{1,16}$", description="plate-format region of the camera")
    roi: list[tuple[Coordinate, Coordinate]] | None = Field(
        None, max_length=256, description="region of interest, pixels"
    )
    digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the JPEG the ingest node stored: other bytes under its key are not this frame",
    )
    recorded: bool = Field(
        default=False,
        description="recorded footage (`realtime: false`): dated by its time in the footage, so its age counts"
        " from its store, not its capture",
    )
    stage_ms: StageTimings = Field(default_factory=dict, description="time each stage spent on it so far, ms")

    @model_validator(mode="after")
    def named_by_its_camera(self) -> FrameRef:
        """make_frame_id's scheme: a frame id begins with its camera's (a kept frame is filed and swept by
        that name: one named otherwise would be kept for ever)."""
        if not self.frame_id.startswith(f"{self.camera_id}:"):
            raise ValueError(f"frame_id must begin with its camera_id and a colon ({self.camera_id}:...)")
        return self

    def timed(self, stage: StageName, ms: float) -> FrameRef:
        """This frame with one more stage's time."""
        return self.model_copy(update={"stage_ms": {**self.stage_ms, stage: ms}})


class PlateBox(Strict):
    box_xyxy: tuple[Coordinate, Coordinate, Coordinate, Coordinate]
    """(x1, y1, x2, y2), put in order when a job gives its corners swapped (every role reads it so)."""
    confidence: float = Field(ge=0, le=1)
    in_roi: bool = Field(
        True, description="inside the camera's region of interest: read and logged (every box is blurred)"
    )
    crop_key: str | None = Field(None, pattern=STORE_KEY_PATTERN, description="frame-store key of the plate crop")
    crop_digest: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the crop's JPEG as the detector stored it: other bytes under its key are not"
        " this plate (none: a job of a detector before it was kept)",
    )
    at_side_edge: bool = Field(
        False, description="at the frame's left or right edge (common.geometry.at_side_edge): may be cut off"
    )

    @field_validator("box_xyxy")
    @classmethod
    def corners_in_order(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        (x1, x2), (y1, y2) = sorted(box[0::2]), sorted(box[1::2])
        return x1, y1, x2, y2


class DetectedFrame(Strict):
    """A frame after detection: its plate boxes, or why it was not detected."""

    frame: FrameRef
    plates: list[PlateBox] = Field(max_length=defaults.DETECTOR_MAX_PLATES_PER_FRAME)  # as many as the detector gives
    outcome: FrameOutcome = Field(default="done", description="`done` unless the frame could not be processed")
    detail: str | None = Field(
        default=None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
        description="why not: `expired before detection`, `too old`... (no control character: Postgres refuses NUL)",
    )  # fmt: skip

    @model_validator(mode="after")
    def crops_of_this_frame(self) -> DetectedFrame:
        """Each plate's crop key is one a detector makes for this frame, each once: `<frame id>:plate<digits>`
        (common/frame_store.py's crop_key, and every earlier release's), or `<frame's stored key>:plate<N>`
        (as detectors keyed crops for a while: their jobs may still be queued). An OCR job naming a raw
        frame's key as a crop deleted that frame before it was redacted."""
        keys = [p.crop_key for p in self.plates if p.crop_key]
        prefixes = (f"{KEY_PREFIX}{self.frame.frame_id}:plate", f"{self.frame.key}:plate")

        def of_this_frame(key: str) -> bool:
            return any(key.startswith(prefix) and key[len(prefix) :].isdigit() for prefix in prefixes)

        if len(set(keys)) < len(keys) or not all(of_this_frame(key) for key in keys):
            raise ValueError(f"a plate's crop key is not this frame's ({prefixes[0]}N), or is named twice")
        return self


class DetectJob(Strict):
    """Ingest → detector: a batch of frames to find plates in. A frame's age is read on one clock at a
    time, so a worker whose clock differs from the ingest host's judges it right: the ingest host's from
    capture to `stored_at_s`, then Redis's (the frame's remaining TTL against `frame_ttl_s`)."""

    v: Literal[2] = SCHEMA_VERSION
    stage: Literal["detect"] = "detect"
    batch_id: str = Field(pattern=ID_PATTERN)
    frames: list[FrameRef] = Field(min_length=1, max_length=defaults.MAX_FRAMES_PER_JOB)
    stored_at_s: float | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="when the ingest host stored them")
    frame_ttl_s: int | None = Field(None, ge=1, le=MAX_BIGINT, description="the TTL they were stored with, s")
    replayed: bool = Field(
        default=False, description="put back by `alpr replay`: detected however old (the age limit sheds live load)"
    )

    def age_s(self, frame: FrameRef, remaining_ttl_s: float | None, now_s: float) -> float:
        """`frame`'s age: capture to store on the ingest host's clock, store to now on Redis's (by its
        remaining TTL); `now_s` less its capture time where the job or Redis cannot say (a job of an
        older ingest node, or a key without a TTL). Recorded footage has no age to keep: the detector
        never skips it as too old."""
        stored_for_s = (
            None if self.frame_ttl_s is None or remaining_ttl_s is None else self.frame_ttl_s - remaining_ttl_s
        )
        if self.stored_at_s is None or stored_for_s is None:
            return now_s - frame.captured_at_s
        return max(0.0, self.stored_at_s - frame.captured_at_s) + max(0.0, stored_for_s)


class OcrJob(Strict):
    """Detector → OCR: the batch's frames that have plate crops to read, with their boxes."""

    v: Literal[2] = SCHEMA_VERSION
    stage: Literal["ocr"] = "ocr"
    batch_id: str = Field(pattern=ID_PATTERN)
    frames: list[DetectedFrame] = Field(min_length=1, max_length=defaults.MAX_FRAMES_PER_JOB)

    @model_validator(mode="after")
    def frames_once(self) -> OcrJob:
        """Each frame once (its crops are its own): one named again had its crops read again (a forged
        job naming one key 6,400 times took 3.4 GB)."""
        if len({f.frame.frame_id for f in self.frames}) < len(self.frames):
            raise ValueError("a frame is named twice")
        return self


class RedactJob(Strict):
    """Detector → redactor (beside the OCR job): every frame of the batch, to blur, keep and record."""

    v: Literal[2] = SCHEMA_VERSION
    stage: Literal["redact"] = "redact"
    batch_id: str = Field(pattern=ID_PATTERN)
    frames: list[DetectedFrame] = Field(min_length=1, max_length=defaults.MAX_FRAMES_PER_JOB)


class AlertJob(Strict):
    """Sighting pool → alert pool: deliver one alert (kept in the alerts log) to one receiver."""

    v: Literal[2] = SCHEMA_VERSION
    stage: Literal["alert"] = "alert"
    batch_id: str = Field(pattern=ID_PATTERN, description="the alert, receiver and attempt: one job each")
    alert_id: str = Field(pattern=ID_PATTERN)
    receiver: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")


def alert_job(alert_id: str, receiver: str, attempt: int) -> AlertJob:
    """The job for one attempt at one delivery (an id of its own: a retry is a new job)."""
    return AlertJob(batch_id=f"{alert_id}.{receiver}.{attempt}", alert_id=alert_id, receiver=receiver)


Job = DetectJob | OcrJob | RedactJob | AlertJob
AnyJob = TypeVar("AnyJob", bound=DetectJob | OcrJob | RedactJob | AlertJob)


def parse_job(payload: Any, job_type: type[AnyJob]) -> AnyJob:
    """Validate a payload as `job_type`; InputError says what is wrong (never echoing the payload)."""
    stage = job_type.model_fields["stage"].default
    if not isinstance(payload, dict):
        raise InputError(f"{stage} job payload must be a JSON object, got {type(payload).__name__}")
    if payload.get("v") != SCHEMA_VERSION:
        version = payload.get("v")
        shown = repr(version) if isinstance(version, int | None) else type(version).__name__
        raise InputError(f"{stage} job has schema version {shown[:20]}, this worker reads {SCHEMA_VERSION}")
    if payload.get("stage") != stage:
        other = payload.get("stage")
        raise InputError(
            f"a {other[:20] if isinstance(other, str) else type(other).__name__!r} job reached the {stage} queue"
        )
    try:
        return cast(AnyJob, job_type.model_validate(payload))
    except (ValidationError, RecursionError, ValueError) as error:
        problems = format_errors(error) if isinstance(error, ValidationError) else "too deeply nested"
        raise InputError(f"malformed {stage} job: {problems}") from None


JOB_ID_ESCAPES = {"_": "_u", ".": "_d", ":": "_c"}
"""How a batch id's characters RQ does not allow in a job id are written: each its own escape, so two
batch ids never give one job id (`.` and `:` were both `_`: the jobs of receivers `ops.team` and
`ops_team`, or of hosts `a.b` and `a_b`, overwrote each other)."""


def job_id(stage: str, batch_id: str) -> str:
    """Deterministic RQ job id: the same batch at the same stage always has the same id, and different
    batches different ones (RQ allows letters, digits, '-' and '_' only)."""
    return f"{stage}-" + "".join(JOB_ID_ESCAPES.get(c, c) for c in batch_id)
