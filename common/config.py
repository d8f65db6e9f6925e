"""The one typed configuration: `ALPR_*` environment variables (and command-line overrides),
validated at start. A misspelt variable or a bad value fails with a message naming it. The files
`ALPR_X_FILE` variables name are read by common/setting_files.py; a validation error is told as one
line by common/validation_errors.py."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, get_args

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

from common import defaults
from common.errors import ConfigError
from common.regions import load_regions
from common.server_urls import check_url
from common.setting_files import JOB_KEY_FILE_TRAILER, read_setting_file
from common.validation_errors import format_errors

ENV_PREFIX = "ALPR_"

log = logging.getLogger(__name__)

OcrEngineName = Literal["ppocr", "tesseract"]
"""The OCR engines ALPR_OCR_ENGINE (and `--engine`) may name: the keys of ocr_worker/engines.py's ENGINES,
the engines' table, which common cannot read (common knows no role), so tests/ocr_worker/test_engines.py
holds the two equal. A new engine: its class in that table, its key here."""

OCR_ENGINES: tuple[str, ...] = get_args(OcrEngineName)
"""The same names, in that order (`--engine`'s choices)."""

OcrModelName = Literal["v4", "v6", "plate"]
"""The recognisers ALPR_OCR_MODEL (and `--ocr-model`) may name for the ppocr engine."""

OCR_MODELS: tuple[str, ...] = get_args(OcrModelName)
"""The same names, in that order (`--ocr-model`'s choices)."""

DetectorBackendName = Literal["onnx", "onnx-int8", "torch"]
"""The detector runtimes ALPR_DETECTOR_BACKEND (and `--backend`) may name."""

DETECTOR_BACKENDS: tuple[str, ...] = get_args(DetectorBackendName)
"""The same names, in that order (`--backend`'s choices)."""

MIN_JOB_KEY_CHARS, MAX_JOB_KEY_CHARS = 16, 1024
"""How long ALPR_JOB_KEY may be: short keys are guessed, and every job is signed with it."""

COMPOSE_VARIABLES = frozenset({
    "ALPR_CAMERAS_FILE", "ALPR_SECRETS_DIR", "ALPR_RECEIVERS_FILE", "ALPR_ALERT_SECRETS_DIR",  # docker-compose.yml's
    "ALPR_INGEST_MEMORY",
    "ALPR_TESTS_REQUIRE_ALL", "ALPR_TEST_DATABASE_URL", "ALPR_BENCH_DATABASE_URL",  # the tests' and benchmarks'
})  # fmt: skip
"""Variables that are not settings (docker-compose.yml reads some on the host; the tests and benchmarks
others): ignored here, not refused."""


def data_folder(name: str) -> Path:
    """The project's folder `name` in the user's data folder: $XDG_DATA_HOME/alpr/NAME or
    ~/.local/share/alpr/NAME."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "alpr" / name


def default_model_dir() -> Path:
    """Where `alpr setup` puts the detector weights."""
    return data_folder("models")


def default_spool_dir() -> Path:
    """Where ingest nodes spool frame records while Postgres is away."""
    return data_folder("ledger").absolute()


def default_keep_dir() -> Path:
    """Where redactor workers keep frames by default."""
    return data_folder("kept").absolute()


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
        """These settings as `role` runs with them: nothing it keeps of a car outlives the records of it (a
        retention of 0 keeps them for ever: no bound). The redactor (`redact`) keeping frames (blurred at
        their plates only: the car, its driver's face, the place) deletes them before their records are
        pruned: an ALPR_KEEP_MAX_AGE_H set past ALPR_RETENTION_DAYS is refused (100,000 h kept frames 11
        years past a 30-day retention: a review); one left unset is cut to the retention (`keep_age_cut_h`:
        told in the redactor's start line). The sighting pool (`sight`) remembers a listed plate's passes for
        twice ALPR_ALERT_REPEAT_S (sighting_worker/passes.prune): one set past half the retention is
        refused. Checked at those roles' start alone: checked in every command's settings, a retention of 1
        or 2 days with the default keep age (72 h) stopped every command, `alpr db prune` (Compose's prune
        service sets the retention alone: nothing pruned, ever) and `alpr status` among them (a review). The
        sighting pool's watch-read threshold is checked here too, before it reaches any server
        (`early_match_min_confidence`: one below ALPR_OCR_MIN_CONFIDENCE refused)."""
        if role == "sight":
            self.early_match_min_confidence  # noqa: B018 (raises ConfigError where inconsistent)
        if self.retention_days == 0:
            return self
        retention_h = 24 * self.retention_days
        if (
            role == "sight"
            and "alert_repeat_s" in self.model_fields_set
            and 2 * self.alert_repeat_s > retention_h * 3600
        ):
            raise ConfigError(
                f"{ENV_PREFIX}ALERT_REPEAT_S ({self.alert_repeat_s:g} s) must be at most half of"
                f" {ENV_PREFIX}RETENTION_DAYS ({self.retention_days:g} days): the sighting pool remembers a listed"
                " plate's passes for twice the repeat window, past the records it would outlive"
            )
        if role != "redact" or self.keep_frames == "none" or self.keep_max_age_h <= retention_h:
            return self
        if "keep_max_age_h" in self.model_fields_set:
            raise ConfigError(
                f"{ENV_PREFIX}KEEP_MAX_AGE_H ({self.keep_max_age_h:g} h) must be at most {ENV_PREFIX}RETENTION_DAYS"
                f" ({self.retention_days:g} days = {retention_h:g} h): kept frames (cars, faces and places; only the"
                " plates blurred) would outlive the records that name them; lower it, leave it unset (then it"
                " follows the retention), or raise the retention"
            )
        cut = self.model_copy(update={"keep_max_age_h": retention_h})
        cut._keep_age_cut_from_h = self.keep_max_age_h
        return cut

    def alert_days(self) -> float:
        """How long `alpr db prune` keeps a watch-list alert (0: without limit): ALPR_ALERT_RETENTION_DAYS, or
        where it is unset ALERT_RETENTION_DAYS (365), but 0 where the plate data is kept without limit
        (ALPR_RETENTION_DAYS or `--older-than-days` 0): a deployment that kept everything found its alerts,
        and the evidence they cite, deleted after a year by an upgrade (a review). A value set applies."""
        if "alert_retention_days" not in self.model_fields_set and self.retention_days == 0:
            return 0.0
        return self.alert_retention_days

    def audit_days(self, plate_days_named: str = f"{ENV_PREFIX}RETENTION_DAYS") -> float:
        """How long `alpr db prune` keeps the audit records of plate searches and exports (0: without limit):
        ALPR_AUDIT_RETENTION_DAYS, refused (ConfigError) where set shorter than the plate data's retention
        (`plate_days_named`: the setting, or `--older-than-days`, that gave it): the audit is how misuse of
        a search is found, and must outlive the data searched. Unset, it is AUDIT_RETENTION_DAYS (730) or the
        plate data's, the longer: a deployment keeping plate data 1000 days had its prune refuse to start
        after an upgrade, its plate data kept past its retention (a review). Plate data kept without limit
        keeps the audit without limit too. Checked by the prune alone, as `within_retention` is by its roles:
        a check in every command's settings would stop the whole chain of a deployment that keeps plate
        data longer."""
        if self.retention_days == 0 or self.audit_retention_days == 0:
            return 0.0
        if "audit_retention_days" not in self.model_fields_set:
            return max(self.audit_retention_days, self.retention_days)
        if self.audit_retention_days < self.retention_days:
            raise ConfigError(
                f"{ENV_PREFIX}AUDIT_RETENTION_DAYS ({self.audit_retention_days:g} days) must be 0 (kept) or at least"
                f" {plate_days_named} ({self.retention_days:g} days): the audit of plate searches and exports is"
                " how misuse of a search is found, so it must outlive the plate data searched"
            )
        return self.audit_retention_days

    @property
    def keep_age_cut_h(self) -> float | None:
        """The default keep age (ALPR_KEEP_MAX_AGE_H unset) `within_retention` cut to the retention; None
        where it did not."""
        return self._keep_age_cut_from_h

    @property
    def early_match_min_confidence(self) -> float:
        """The confidence at which a single read is matched against the watch-lists at once (an early
        alert): ALPR_WATCH_READ_MIN_CONFIDENCE, or where unset WATCH_READ_MIN_CONFIDENCE (0.9) raised to
        ALPR_OCR_MIN_CONFIDENCE when that is higher: an operator raising the trusted-read threshold to cut
        false alerts cuts them on early alerts too. One set below ALPR_OCR_MIN_CONFIDENCE is refused
        (ConfigError): an early alert is raised on one read, a sighting's on its voted plate at that
        threshold, and a read matched at once below it raised an alert (a 0.92 misread, the threshold at
        0.99) that the voted sighting would not have (a review). Refused here, where it is used (the
        sighting pool's start: alpr/wiring.build_sighting_stage), not in every command's settings: `alpr db
        prune`, `alpr export` and `alpr status` exited 2 on it, as they did on a keep age past the retention
        (`within_retention`)."""
        early = self.watch_read_min_confidence
        if early is None:
            return max(defaults.WATCH_READ_MIN_CONFIDENCE, self.ocr_min_confidence)
        if early < self.ocr_min_confidence:
            raise ConfigError(
                f"{ENV_PREFIX}WATCH_READ_MIN_CONFIDENCE ({early:g}) must be at least {ENV_PREFIX}OCR_MIN_CONFIDENCE"
                f" ({self.ocr_min_confidence:g}): a single read the trusted-read threshold refuses would raise an"
                f" alert; raise it too, or leave it unset (it then follows {ENV_PREFIX}OCR_MIN_CONFIDENCE)"
            )
        return early

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
        secrets), then non-None `overrides` (command-line flags) on top. A setting a flag gave is named
        in an error by the flag (`flag_names`: setting -> `--flag`), not by its variable: `--fps -1` said
        ALPR_SAMPLE_FPS, which the operator never set."""
        environ = os.environ if environ is None else environ
        warn_of_other_cases(environ, [ENV_PREFIX + field.upper() for field in cls.model_fields])
        values: dict[str, object] = {}
        for key, value in environ.items():
            if key.startswith(ENV_PREFIX) and value != "" and key not in COMPOSE_VARIABLES:
                name = key[len(ENV_PREFIX) :].lower()
                if name.endswith("_file") and name not in cls.model_fields and name[:-5] in cls.model_fields:
                    name, value = name[:-5], read_setting_file(key, value)
                    if name == "job_key":  # an editor's trailing space is no part of a key (passwords are read
                        value = value.rstrip(JOB_KEY_FILE_TRAILER)  # as they are: a server holds those whole)
                    if not value:  # as an empty variable is: unset (a password of nothing failed at connect)
                        raise ConfigError(f"{key}: the file it names is empty")
                    if environ.get(key[:-5]):
                        raise ConfigError(f"set {key[:-5]} or {key}, not both")
                if name not in cls.model_fields:
                    raise ConfigError(unknown_setting(key, [ENV_PREFIX + f.upper() for f in cls.model_fields]))
                values[name] = value
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            names = {field: flag for field, flag in (flag_names or {}).items() if field in given}
            raise ConfigError(f"invalid settings: {format_errors(error, ENV_PREFIX, names=names)}") from None


SECRET_SETTINGS = ("redis_password", "database_password", "job_key")
"""The settings that hold a secret: read from a file by their `_FILE` variable, as deployments do."""


def warn_of_other_cases(environ: Mapping[str, str], known: list[str]) -> None:
    """One WARNING per variable whose prefix is not in capitals (`alpr_sample_fps`) but that names a setting
    (or an `_FILE` variable) once upper-cased: it was ignored without a word, and its operator believed it
    applied. Named, never its value (it may be a secret); not refused (it may be another program's). One
    beside its upper-case twin of the same value says nothing new: not warned of (one that differs is)."""
    names = {*known, *(f"{variable}_FILE" for variable in known)}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) or key.upper() not in names:
            continue
        if not environ.get(key.upper()):  # unset, or empty: taken for unset
            log.warning("%s is not read: settings are read from upper-case variables only; set %s", key, key.upper())
        elif environ[key.upper()] != value:
            log.warning("%s is not read, and differs from %s, which is: settings are read from upper-case"
                        " variables only", key, key.upper())  # fmt: skip


def unknown_setting(variable: str, known: list[str]) -> str:
    """The refusal of an unknown ALPR_ variable: the setting (or secret's `_FILE` variable) it is likely a
    slip for first (the list of every known one, 53 names, hid it), then every known one."""
    files = [f"{ENV_PREFIX}{name.upper()}_FILE" for name in SECRET_SETTINGS]
    close = difflib.get_close_matches(variable, [*known, *files], n=1, cutoff=0.8)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown setting {variable}{guess}; known: {', '.join(known)}"
