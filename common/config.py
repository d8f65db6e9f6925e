"""The one typed configuration: `ALPR_*` environment variables (and command-line overrides),
validated at start. A misspelt variable or a bad value fails with a message naming it. The variables are
read by common/setting_environment.py (the files `ALPR_X_FILE` variables name by common/setting_files.py);
a validation error is told as one line by common/validation_errors.py. The checks only some commands make
(a role's retention, the prune's) are common/setting_bounds.py's; the choice settings' names,
common/setting_choices.py's; the default folders, common/data_folders.py's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common import defaults, setting_bounds
from common.data_folders import default_keep_dir, default_model_dir, default_spool_dir
from common.errors import ConfigError
from common.regions import load_regions
from common.server_urls import check_url
from common.setting_choices import DetectorBackendName, OcrEngineName, OcrModelName
from common.setting_environment import ENV_PREFIX, environment_values
from common.validation_errors import format_errors

MIN_JOB_KEY_CHARS, MAX_JOB_KEY_CHARS = 16, 1024
"""How long ALPR_JOB_KEY may be: short keys are guessed, and every job is signed with it."""


def rounds_to_zero(text: str) -> bool:
    """Whether the number `text` is not 0 yet reads as 0 as a float (`1e-400`, `-1e-400`): taken for 0, a
    retention of it was "kept without limit", where 0.000001 is refused (a review)."""
    try:
        return float(text) == 0 and Decimal(text.strip().replace("_", "")) != 0
    except (ValueError, InvalidOperation):
        return False


class Settings(BaseModel):
    """Every setting of every role. Environment variable: ALPR_ + the field name in capitals."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _keep_age_cut_from_h: float | None = PrivateAttr(None)

    model_dir: Path = Field(default_factory=default_model_dir, description="Folder of the detector weights.")
    detector_weights: Path | None = Field(
        None, description="Your own YOLO weights (.pt or .onnx) instead of the bundled ones."
    )
    detector_backend: DetectorBackendName = Field(defaults.DETECTOR_BACKEND, description="Detector runtime.")
    detector_device: str = Field(defaults.DETECTOR_DEVICE, pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu or cuda:N.")
    detector_half: bool = Field(defaults.DETECTOR_HALF, description="FP16 (torch backend on cuda only).")
    detector_imgsz: int = Field(defaults.DETECTOR_IMGSZ, ge=128, le=4096, multiple_of=32, description="Letterbox size.")
    detector_confidence: float = Field(
        defaults.DETECTOR_CONFIDENCE, gt=0, lt=1,
        description="Lowest box confidence read (boxes down to 0.05 are blurred all the same).",
    )  # fmt: skip
    detector_batch_size: int = Field(defaults.DETECTOR_BATCH_SIZE, ge=1, le=256, description="Frames per inference.")
    detector_threads: int = Field(
        0, ge=0, le=defaults.MAX_INFERENCE_THREADS, description="CPU threads for inference; 0 = one per core."
    )
    detector_max_downscale: float = Field(
        defaults.DETECTOR_MAX_DOWNSCALE, ge=0, le=64,
        description="Frames shrunk more than this to fit imgsz are also searched in tiles; 0 = never tiled.",
    )  # fmt: skip
    ocr_engine: OcrEngineName = Field(defaults.OCR_ENGINE, description="OCR engine.")
    ocr_model: OcrModelName = Field(
        defaults.OCR_MODEL, description="Recogniser of the ppocr engine: plate-trained, PP-OCRv4 or v6."
    )
    ocr_region: str = Field(defaults.OCR_REGION, description="Plate-format region (us, eu, br, ...).")
    ocr_max_candidates: int = Field(defaults.OCR_MAX_CANDIDATES, ge=1, le=20, description="Candidates per plate.")
    ocr_crop_margin: float = Field(
        defaults.OCR_CROP_MARGIN, ge=0, le=1, description="Margin around a plate box cut out for reading."
    )
    ocr_threads: int = Field(1, ge=1, le=64, description="CPU threads of the OCR models.")
    ocr_min_confidence: float = Field(
        defaults.OCR_MIN_CONFIDENCE, ge=0, le=1, description="Confidence of a trusted read."
    )
    redact_method: Literal["blur", "pixelate"] = Field(defaults.REDACT_METHOD, description="How plates are hidden.")
    database_url: str | None = Field(
        None, pattern=r"^postgres(ql)?://", description="postgresql://... to log reads to Postgres instead of SQLite."
    )
    database_password: SecretStr | None = Field(
        None, description="Postgres password, when the URL carries none (ALPR_DATABASE_PASSWORD_FILE: from a file)."
    )
    sqlite_path: Path = Field(Path(defaults.SQLITE_PATH), description="SQLite file of the standalone pipeline.")
    sample_fps: float = Field(defaults.SAMPLE_FPS, gt=0, le=240, description="Frames sampled per second of video.")
    datasets_dir: Path = Field(Path(defaults.DATASETS_DIR), description="Evaluation photographs.")
    redis_url: str = Field(defaults.REDIS_URL, pattern=r"^(rediss?|unix)://", description="Queues (and frame store).")
    redis_password: SecretStr | None = Field(
        None, description="Password of both Redis servers, when a URL carries none (ALPR_REDIS_PASSWORD_FILE)."
    )
    job_key: SecretStr | None = Field(
        None,
        description="Key every role signs its jobs with and checks them by (ALPR_JOB_KEY_FILE, its trailing spaces"
        " and line ends left out): only the chain's own jobs run; unset, whoever can write to Redis can queue jobs.",
    )  # fmt: skip
    deployment: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="This deployment's name, published by each role in the queues' Redis beside the Postgres it logs"
        " to: a role refuses to start where a live role of another deployment shares its Redis (a detector worker,"
        " with no Postgres, is told apart by this name only).",
    )
    frame_store_url: str | None = Field(
        None,
        pattern=r"^(rediss?|unix)://",
        description="Redis of raw frames and crops (no persistence); default: redis_url.",
    )
    frame_store_may_persist: bool = Field(
        False,
        description="The frame store's Redis may write to disk (its disk made safe: encrypted, private): the ingest"
        " node and detector workers then warn instead of refusing to start.",
    )
    plain_link_hosts: str = Field(
        "",
        pattern=r"^[A-Za-z0-9.,:_\[\] -]*$",
        description="Comma-separated hosts of Redis or Postgres reached without TLS knowingly, within this host's own"
        " network (a compose network's service names): not warned of at start.",
    )
    frame_ttl_s: int = Field(defaults.FRAME_TTL_S, ge=1, description="Lifetime of a raw frame in Redis, a day at most.")
    jpeg_quality: int = Field(defaults.JPEG_QUALITY, ge=30, le=100, description="JPEG quality in the frame store.")
    frames_per_job: int = Field(
        defaults.FRAMES_PER_JOB, ge=1, le=defaults.MAX_FRAMES_PER_JOB, description="Frames per detect job."
    )
    max_batch_wait_ms: int = Field(defaults.MAX_BATCH_WAIT_MS, ge=0, description="Longest wait to fill a job.")
    max_queue_depth: int = Field(defaults.MAX_QUEUE_DEPTH, ge=1, description="Jobs queued before skipping.")
    job_timeout_s: int = Field(
        defaults.JOB_TIMEOUT_S, ge=1, description="Longest run of one job; below a day less the recovery time."
    )
    db_patience_s: float = Field(
        defaults.DB_PATIENCE_S, ge=0, description="Longest wait for Postgres inside a job; below job_timeout_s."
    )
    max_frame_age_s: float = Field(
        defaults.MAX_FRAME_AGE_S, gt=0, description="Frames older than this at detection are skipped, not processed."
    )
    capture_memory_mb: int = Field(
        defaults.CAPTURE_MEMORY_MB, ge=128, le=1_048_576,
        description="Most memory (MB) one camera's or video's decoding may hold (ingest/capture_process.py).",
    )  # fmt: skip
    keep_dir: Path = Field(default_factory=default_keep_dir, description="Where redacted frames are kept (absolute).")
    ledger_spool_dir: Path = Field(
        default_factory=default_spool_dir,
        description="Where an ingest node keeps its frame records and sampled frames until written (a kill loses"
        " none; the next node started with it writes them).",
    )
    keep_frames: Literal["plates", "all", "none"] = Field(
        defaults.KEEP_FRAMES, description="Which redacted frames are kept: with a plate, all, or none."
    )
    keep_max_age_h: float = Field(
        defaults.KEEP_MAX_AGE_H, gt=0, le=24 * defaults.MAX_RETENTION_DAYS,
        description="Kept frames older than this are deleted by the redactor pool (at most the retention).",
    )  # fmt: skip
    retention_days: float = Field(
        defaults.RETENTION_DAYS, ge=0, le=defaults.MAX_RETENTION_DAYS,
        description="Reads, sightings and frame records older than this are deleted by `alpr db prune` (0: kept).",
    )  # fmt: skip
    alert_retention_days: float = Field(
        defaults.ALERT_RETENTION_DAYS, ge=0, le=defaults.MAX_RETENTION_DAYS,
        description="Alerts older than this (none still being delivered) are deleted by `alpr db prune` (0: kept;"
        " unset: kept too where ALPR_RETENTION_DAYS is 0).",
    )  # fmt: skip
    audit_retention_days: float = Field(
        defaults.AUDIT_RETENTION_DAYS, ge=0, le=defaults.MAX_RETENTION_DAYS,
        description="Records of plate searches and exports older than this are deleted by `alpr db prune` (0: kept;"
        " unset: ALPR_RETENTION_DAYS where that is longer).",
    )  # fmt: skip
    watch_max_distance: float = Field(
        defaults.WATCH_MAX_DISTANCE, ge=0, le=3, description="Largest plate distance of a watch-list match (O/0: 0.5)."
    )
    watch_fuzzy_min_probability: float = Field(
        defaults.WATCH_FUZZY_MIN_PROBABILITY, ge=0, le=1,
        description="A fuzzy match alerts only when the listed text is among the read's candidates this sure (0: any).",
    )  # fmt: skip
    watch_read_min_confidence: float | None = Field(
        None, ge=0, le=1,
        description="Reads at least this sure are matched at once (unset: `early_match_min_confidence`).",
    )  # fmt: skip
    watch_refresh_s: float = Field(
        defaults.WATCH_REFRESH_S, gt=0, le=3600, description="How often workers reload the watch-lists."
    )
    sighting_gap_s: float = Field(
        defaults.SIGHTING_GAP_S, gt=0, le=600, description="Seconds without a read that close a vehicle's sighting."
    )
    alert_repeat_s: float = Field(
        defaults.ALERT_REPEAT_S, ge=0, le=86400,
        description="Seconds within which a listed plate seen again at a camera raises no new alert.",
    )  # fmt: skip
    sighting_poll_s: float = Field(
        defaults.SIGHTING_POLL_S, gt=0, le=60, description="How often the sighting pool looks for new reads."
    )
    sighting_settle_s: float = Field(
        defaults.SIGHTING_SETTLE_S, ge=0, le=60, description="Age before a frame's absence from the log counts."
    )
    alert_receivers: Path | None = Field(
        None, description="YAML file of the receivers alerts are delivered to (webhooks, MQTT); none: no alerts."
    )
    alert_give_up_s: float = Field(
        defaults.ALERT_GIVE_UP_S, gt=0, description="How long an alert's delivery is retried before it fails."
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus metrics port; 0 = none.")
    metrics_address: str = Field(defaults.METRICS_ADDRESS, min_length=1, description="Address metrics bind to.")

    @field_validator("keep_dir", "ledger_spool_dir")
    @classmethod
    def absolute_folder(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise ValueError(f"must be an absolute path (a process's working directory is no place for it): {path}")
        return path

    @field_validator("retention_days", "alert_retention_days", "audit_retention_days", mode="before")
    @classmethod
    def retention_not_rounded_to_zero(cls, days: object) -> object:
        if isinstance(days, str) and rounds_to_zero(days):
            raise ValueError(f"{days.strip()[:40]} is not 0, yet too small to tell from it (read as 0: kept without"
                             f" limit): give 0, or at least {defaults.MIN_RETENTION_DAYS:g} day")  # fmt: skip
        return days

    @field_validator("frame_ttl_s")
    @classmethod
    def frame_ttl_bounded(cls, ttl_s: int) -> int:
        if ttl_s > defaults.MAX_FRAME_TTL_S:
            raise ValueError(
                f"must be at most {defaults.MAX_FRAME_TTL_S} s (a day), got {ttl_s}: a stored frame (a camera's image,"
                " plates unblurred) is kept only until its jobs have run"
            )
        return ttl_s

    @field_validator("job_timeout_s")
    @classmethod
    def job_timeout_bounded(cls, timeout_s: int) -> int:
        longest = defaults.MAX_FRAME_TTL_S - defaults.RECOVERY_S
        if timeout_s > longest:
            raise ValueError(
                f"must be at most {longest} s (the frame TTL's maximum, {defaults.MAX_FRAME_TTL_S} s, less"
                f" {defaults.RECOVERY_S} s of recovery), got {timeout_s}: a job's frames must outlive it and the"
                " recovery of a killed worker's job, and no frame TTL could be long enough; lower it"
            )
        return timeout_s

    @field_validator("retention_days", "alert_retention_days", "audit_retention_days")
    @classmethod
    def retention_long_enough(cls, days: float, info: ValidationInfo) -> float:
        if 0 < days < defaults.MIN_RETENTION_DAYS:
            why = (
                ": a shorter one deletes reads the sighting pool has not grouped yet (no sighting, no alert for them)"
                if info.field_name == "retention_days"
                else ", as ALPR_RETENTION_DAYS (Postgres never deletes an audit record younger than a day)"
            )
            raise ValueError(f"must be 0 (kept) or at least {defaults.MIN_RETENTION_DAYS:g} day{why}")
        return days

    @field_validator("ocr_region")
    @classmethod
    def known_region(cls, region: str) -> str:
        known = load_regions()  # an unknown one passed here and failed when the reader loaded, unnamed
        if region not in known:
            raise ValueError(f"unknown plate region {region[:20]!r}; known: {', '.join(sorted(known))}")
        return region

    @field_validator("detector_half")
    @classmethod
    def half_on_torch_cuda(cls, half: bool, info: ValidationInfo) -> bool:
        backend, device = info.data.get("detector_backend"), info.data.get("detector_device")
        if half and None not in (backend, device) and (backend != "torch" or not str(device).startswith("cuda")):
            raise ValueError(
                f"FP16 runs the torch backend on a CUDA device; here the backend is {backend} on {device} (choose"
                " the torch backend and a cuda:N device, or leave FP16 off)"
            )
        return half

    @field_validator("detector_max_downscale")
    @classmethod
    def tiles_never_enlarged(cls, value: float) -> float:
        if 0 < value < 1:  # tiles smaller than the detector's input: 0.1 made 299 of a 1080p frame
            raise ValueError(f"must be 0 (never tiled) or at least 1, got {value}")
        return value

    @field_validator("job_key")
    @classmethod
    def job_key_length(cls, key: SecretStr | None) -> SecretStr | None:
        """16 to 1024 characters (pydantic's own length check said "at least 16 items")."""
        if key is not None and not MIN_JOB_KEY_CHARS <= len(key.get_secret_value()) <= MAX_JOB_KEY_CHARS:
            length = len(key.get_secret_value())
            raise ValueError(f"must be {MIN_JOB_KEY_CHARS} to {MAX_JOB_KEY_CHARS} characters long, got {length}")
        return key

    @field_validator("sample_fps")
    @classmethod
    def a_frame_an_hour(cls, fps: float) -> float:
        return defaults.at_least_a_frame_an_hour(fps)

    @field_validator("redis_url", "frame_store_url")
    @classmethod
    def redis_url_well_formed(cls, url: str | None) -> str | None:
        return check_url(url, "redis")

    @field_validator("database_url")
    @classmethod
    def database_url_well_formed(cls, url: str | None) -> str | None:
        return check_url(url, "postgres")

    @model_validator(mode="after")
    def consistent_times(self) -> Settings:
        if self.db_patience_s >= self.job_timeout_s:
            raise ValueError(
                f"{ENV_PREFIX}DB_PATIENCE_S ({self.db_patience_s:g}) must be below {ENV_PREFIX}JOB_TIMEOUT_S"
                f" ({self.job_timeout_s})"
            )
        needed = self.job_timeout_s + defaults.RECOVERY_S
        if self.frame_ttl_s < needed:
            raise ValueError(
                f"{ENV_PREFIX}FRAME_TTL_S ({self.frame_ttl_s}) must be at least {ENV_PREFIX}JOB_TIMEOUT_S"
                f" ({self.job_timeout_s}) + {defaults.RECOVERY_S} s of recovery = {needed}: frames would expire"
                " before the job of a killed worker runs again"
            )
        if self.max_frame_age_s >= self.frame_ttl_s:
            raise ValueError(
                f"{ENV_PREFIX}MAX_FRAME_AGE_S ({self.max_frame_age_s:g}) must be below {ENV_PREFIX}FRAME_TTL_S"
                f" ({self.frame_ttl_s})"
            )
        queued_s = self.max_frame_age_s * defaults.MAX_AGE_QUEUED_SHARE
        if self.max_batch_wait_ms >= queued_s * 1000:
            raise ValueError(
                f"{ENV_PREFIX}MAX_BATCH_WAIT_MS ({self.max_batch_wait_ms}) must be below"
                f" {defaults.MAX_AGE_QUEUED_SHARE:.0%} of {ENV_PREFIX}MAX_FRAME_AGE_S ({self.max_frame_age_s:g} s)"
                f" = {queued_s * 1000:.0f} ms: a frame waiting for its job to fill would be too old to detect"
            )
        return self

    def within_retention(self, role: str) -> Settings:
        """These settings as `role` runs with them: nothing it keeps of a car outlives the records of it; a
        default keep age past the retention cut to it, one set past it refused (ConfigError)
        (common/setting_bounds.keep_age_cut_to says which, and why)."""
        cut_to_h = setting_bounds.keep_age_cut_to(self, role)
        if cut_to_h is None:
            return self
        cut = self.model_copy(update={"keep_max_age_h": cut_to_h})
        cut._keep_age_cut_from_h = self.keep_max_age_h
        return cut

    def alert_days(self) -> float:
        """How long `alpr db prune` keeps a watch-list alert (0: without limit; common/setting_bounds.alert_days)."""
        return setting_bounds.alert_days(self)

    def audit_days(self, plate_days_named: str = f"{ENV_PREFIX}RETENTION_DAYS") -> float:
        """How long `alpr db prune` keeps the audit records of plate searches and exports (0: without limit;
        refused where shorter than the plate data's retention: common/setting_bounds.audit_days)."""
        return setting_bounds.audit_days(self, plate_days_named)

    @property
    def keep_age_cut_h(self) -> float | None:
        """The default keep age (ALPR_KEEP_MAX_AGE_H unset) `within_retention` cut to the retention; None
        where it did not."""
        return self._keep_age_cut_from_h

    @property
    def early_match_min_confidence(self) -> float:
        """The confidence at which a single read is matched against the watch-lists at once (an early alert;
        refused where below ALPR_OCR_MIN_CONFIDENCE: common/setting_bounds.early_match_min_confidence)."""
        return setting_bounds.early_match_min_confidence(self)

    @property
    def plain_link_host_names(self) -> frozenset[str]:
        """ALPR_PLAIN_LINK_HOSTS as lower-case host names (IPv6 addresses without their brackets)."""
        return frozenset(h.strip().strip("[]").lower() for h in self.plain_link_hosts.split(",") if h.strip())

    @property
    def store_url(self) -> str:
        """The frame store's Redis: its own URL, or the queues'."""
        return self.frame_store_url or self.redis_url

    def secret(self, name: Literal["redis_password", "database_password", "job_key"]) -> str | None:
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, flag_names: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        """Settings from ALPR_* variables (ALPR_X_FILE: the value of ALPR_X read from a file, as for
        secrets: common/setting_environment.py), then non-None `overrides` (command-line flags) on top. A
        setting a flag gave is named in an error by the flag (`flag_names`: setting -> `--flag`), not by its
        variable: `--fps -1` said ALPR_SAMPLE_FPS, which the operator never set."""
        values = environment_values(os.environ if environ is None else environ, cls.model_fields)
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            names = {field: flag for field, flag in (flag_names or {}).items() if field in given}
            raise ConfigError(f"invalid settings: {format_errors(error, ENV_PREFIX, names=names)}") from None
