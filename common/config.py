"""The one typed configuration: `ALPR_*` environment variables (and command-line overrides),
validated at start. A misspelt variable or a bad value fails with a message naming it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common import defaults
from common.errors import ConfigError

ENV_PREFIX = "ALPR_"


def default_model_dir() -> Path:
    """Where `alpr setup` puts the detector weights: $XDG_DATA_HOME/alpr/models or ~/.local/share/alpr/models."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "alpr" / "models"


class Settings(BaseModel):
    """Every setting of every role. Environment variable: ALPR_ + the field name in capitals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Field(default_factory=default_model_dir, description="Folder of the detector weights.")
    detector_weights: Path | None = Field(
        None, description="Your own YOLO weights (.pt or .onnx) instead of the bundled ones."
    )
    detector_backend: Literal["onnx", "torch"] = Field(defaults.DETECTOR_BACKEND, description="Detector runtime.")
    detector_device: str = Field(defaults.DETECTOR_DEVICE, pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu or cuda:N.")
    detector_imgsz: int = Field(defaults.DETECTOR_IMGSZ, ge=128, le=4096, multiple_of=32, description="Letterbox size.")
    detector_confidence: float = Field(defaults.DETECTOR_CONFIDENCE, gt=0, lt=1, description="Lowest box confidence.")
    detector_batch_size: int = Field(defaults.DETECTOR_BATCH_SIZE, ge=1, le=256, description="Frames per inference.")
    detector_threads: int = Field(0, ge=0, description="CPU threads for inference; 0 = one per core.")
    ocr_engine: Literal["ppocr", "tesseract"] = Field(defaults.OCR_ENGINE, description="OCR engine.")
    ocr_region: str = Field(defaults.OCR_REGION, description="Plate-format region (us, eu, br, ...).")
    ocr_max_candidates: int = Field(defaults.OCR_MAX_CANDIDATES, ge=1, le=20, description="Candidates per plate.")
    ocr_min_confidence: float = Field(
        defaults.OCR_MIN_CONFIDENCE, ge=0, le=1, description="Confidence of a trusted read."
    )
    redact_method: Literal["blur", "pixelate"] = Field(defaults.REDACT_METHOD, description="How plates are hidden.")
    database_url: str | None = Field(None, description="postgresql://... to log reads to Postgres instead of SQLite.")
    sqlite_path: Path = Field(Path(defaults.SQLITE_PATH), description="SQLite file of the standalone pipeline.")
    sample_fps: float = Field(defaults.SAMPLE_FPS, gt=0, le=240, description="Frames sampled per second of video.")
    datasets_dir: Path = Field(Path(defaults.DATASETS_DIR), description="Evaluation photographs.")
    redis_url: str = Field(defaults.REDIS_URL, pattern=r"^rediss?://", description="Queues and frame store.")
    frame_ttl_s: int = Field(defaults.FRAME_TTL_S, ge=1, description="Lifetime of a raw frame in Redis.")
    jpeg_quality: int = Field(defaults.JPEG_QUALITY, ge=30, le=100, description="JPEG quality in the frame store.")
    frames_per_job: int = Field(defaults.FRAMES_PER_JOB, ge=1, le=64, description="Frames per detect job.")
    max_batch_wait_ms: int = Field(defaults.MAX_BATCH_WAIT_MS, ge=0, description="Longest wait to fill a job.")
    max_queue_depth: int = Field(defaults.MAX_QUEUE_DEPTH, ge=1, description="Jobs queued before skipping.")
    job_timeout_s: int = Field(defaults.JOB_TIMEOUT_S, ge=1, description="Longest run of one job.")
    db_patience_s: float = Field(
        defaults.DB_PATIENCE_S, ge=0, description="Longest wait for Postgres inside a job; below job_timeout_s."
    )
    keep_dir: Path = Field(Path(defaults.KEEP_DIR), description="Where redacted frames are kept.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus metrics port; 0 = none.")

    @model_validator(mode="after")
    def patience_within_timeout(self) -> Settings:
        if self.db_patience_s >= self.job_timeout_s:
            raise ValueError(
                f"{ENV_PREFIX}DB_PATIENCE_S ({self.db_patience_s:g}) must be below {ENV_PREFIX}JOB_TIMEOUT_S"
                f" ({self.job_timeout_s})"
            )
        return self

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ALPR_* variables, then non-None `overrides` (command-line flags) on top."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for key, value in environ.items():
            if key.startswith(ENV_PREFIX) and value != "":
                name = key[len(ENV_PREFIX) :].lower()
                if name not in cls.model_fields:
                    raise ConfigError(
                        f"unknown setting {key}; known: {', '.join(ENV_PREFIX + f.upper() for f in cls.model_fields)}"
                    )
                values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" if e["loc"] else e["msg"]
                for e in error.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
