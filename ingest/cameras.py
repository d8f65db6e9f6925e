"""The cameras file (cameras.yaml): one entry per camera, validated at start; an error names the
camera and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common import defaults
from common.errors import ConfigError
from ocr_worker.formats import load_regions


class CameraConfig(BaseModel):
    """One camera: where its frames come from and how they are sampled and read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Camera id, logged with every read.")
    source: str = Field(min_length=1, description="rtsp/http URL, video file or image folder.")
    sample_fps: float = Field(defaults.SAMPLE_FPS, gt=0, le=60, description="Frames sampled per second.")
    roi: list[tuple[float, float]] | None = Field(None, min_length=3, description="Region of interest polygon.")
    region: str = Field(defaults.OCR_REGION, description="Plate-format region: us, eu, br, ...")
    enabled: bool = Field(True, description="A disabled camera is validated but not opened.")
    loop: bool = Field(False, description="Start a video file again when it ends.")
    realtime: bool = Field(True, description="Pace a file source at its sampling rate, as a live camera.")

    @field_validator("region")
    @classmethod
    def known_region(cls, region: str) -> str:
        if region not in load_regions():
            raise ValueError(f"unknown plate region {region!r}; known: {', '.join(sorted(load_regions()))}")
        return region


def parse_cameras(raw: Any, origin: str = "cameras file") -> list[CameraConfig]:
    """Validate the parsed YAML: {cameras: [ {...}, ... ]}."""
    if not isinstance(raw, dict) or not isinstance(raw.get("cameras"), list) or set(raw) - {"cameras"}:
        raise ConfigError(f"{origin}: expected a mapping with one key, `cameras`, holding a list")
    cameras: list[CameraConfig] = []
    for position, entry in enumerate(raw["cameras"], start=1):
        name = entry.get("id", f"#{position}") if isinstance(entry, dict) else f"#{position}"
        try:
            cameras.append(CameraConfig.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(
                f"field {'.'.join(str(p) for p in e['loc']) or '(entry)'}: {e['msg']}" for e in error.errors()
            )
            raise ConfigError(f"{origin}: camera {name!r}: {problems}") from None
    ids = [c.id for c in cameras]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise ConfigError(f"{origin}: camera ids must be unique; repeated: {', '.join(duplicates)}")
    if not any(c.enabled for c in cameras):
        raise ConfigError(f"{origin}: no enabled camera")
    return cameras


def load_cameras(path: Path) -> list[CameraConfig]:
    if not path.is_file():
        raise ConfigError(f"cameras file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    return parse_cameras(raw, str(path))
