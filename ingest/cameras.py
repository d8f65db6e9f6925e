"""The cameras file (cameras.yaml): one entry per camera, read and validated at start. Every malformed
file (not UTF-8, too large, bad YAML, repeated keys, aliases, nesting too deep, a wrong type, a
non-finite number, a malformed source URL, a degenerate region of interest, for `alpr ingest` a source
that can never work) is a ConfigError whose one-line message names the file, and the camera and field
where there is one: every mistake found in the cameras, not only the first.

A camera that sets no `sample_fps` or `region` of its own is sampled at ALPR_SAMPLE_FPS and read with
ALPR_OCR_REGION's plate formats, as `alpr run` samples and reads its source: the file is read with the
Settings in force (`parse_cameras`). The chain sampled such a camera at 5 frames/s and queued its frames
as "us" whatever the two said, while `alpr status` showed them in force (a review)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from common import defaults
from common.config import Settings
from common.credentials import mask_url
from common.errors import ConfigError, InputError
from common.file_writers import refuse_if_others_may_change
from common.jobs import Coordinate
from common.readable_urls import holds_credentials, warn_if_others_may_read_credentials
from common.regions import load_regions
from common.setting_environment import ENV_PREFIX
from common.strict_yaml import load_strict_yaml, shorten
from common.text_files import read_text_file, shown_path
from common.validation_errors import format_errors
from ingest.ffmpeg_open import rtsp_transport_problem
from ingest.source_checks import check_source, is_stream_uri, uri_syntax_problem

log = logging.getLogger(__name__)

MAX_CAMERAS_FILE_BYTES = 1024 * 1024
"""A cameras file is a few lines per camera; anything larger is a mistake (or an attack on the parser)."""
MAX_PROBLEMS_SHOWN = 5
"""Validation problems listed per camera; the rest are counted."""
MAX_MISTAKES_SHOWN = 20
"""Mistakes of a cameras file said in one run (each camera's, the repeated ids...); the rest are counted. A
file was refused at its first mistake, and one with several took a run for each."""
MAX_CAMERA_FPS = 60
"""The most frames a second a camera of the chain may be sampled at (ALPR_SAMPLE_FPS, which `alpr run`
reads too, goes to 240)."""
FROM_SETTINGS = {"sample_fps": "sample_fps", "region": "ocr_region"}
"""A camera's fields that a cameras file's entry without them takes from the Settings: field -> setting."""


class CameraConfig(BaseModel):
    """One camera: where its frames come from and how they are sampled and read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", description="Camera id, logged with every read.")
    source: str = Field(min_length=1, description="rtsp/http URL, video file or image folder.")
    sample_fps: float = Field(
        defaults.SAMPLE_FPS, gt=0, le=MAX_CAMERA_FPS,
        description="Frames sampled per second (a cameras file's entry without one: ALPR_SAMPLE_FPS).",
    )  # fmt: skip
    roi: list[tuple[Coordinate, Coordinate]] | None = Field(
        None, min_length=3, max_length=256, description="Region of interest polygon, pixels."
    )
    region: str = Field(
        defaults.OCR_REGION, description="Plate-format region: us, eu, br, ... (an entry without one: ALPR_OCR_REGION)."
    )
    enabled: bool = Field(True, description="A disabled camera is validated but not opened.")
    loop: bool = Field(
        False,
        description="Start a video file (or a video served over http://) again when it ends: a live camera's"
        " stand-in, so `realtime: true` only.",
    )
    realtime: bool = Field(
        True,
        description="Pace a file source (or a video served over http://) at its sampling rate, as a live camera"
        " (false: recorded footage, read as fast as the chain takes it and waiting for it when full, never"
        " skipped, each frame dated by its time in the footage from the pass's start).",
    )
    footage: bool = Field(
        False,
        description="Its URL serves recorded video (a file over http://), read as footage that ends (or loops),"
        " not a live camera. A stream URL without it is a live camera: read live whatever it answers (a"
        " fragmented MP4, a snapshot, a camera's boot clip stating a frame count), and the stream ending is a"
        " drop, reconnected from with backoff. A file or folder source is footage whatever it says.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp",
        description="How an rtsp:// camera's packets come: over its RTSP connection (tcp), or as RTP over UDP"
        " (udp: for a camera that refuses TCP; only packets from the address the camera names are taken).",
    )

    @model_validator(mode="after")
    def loops_in_real_time(self) -> CameraConfig:
        """`loop` with `realtime: false` is refused: recorded footage is dated by its time in the footage,
        read faster than it plays, so each looped pass was dated further ahead of the clock (20 s of
        running dated frames 9 minutes ahead: a review)."""
        if self.loop and not self.realtime:
            raise ValueError(
                "loop: true needs realtime: true (a looping file stands in for a live camera; recorded"
                " footage, realtime: false, is read once, and looped it was dated ever further ahead of the clock)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def footage_implied(cls, data: Any) -> Any:
        """`loop: true` or `realtime: false` on a stream URL that says nothing of `footage` is footage
        (`implies_footage`; parse_cameras warns): refused, a cameras file of the release before (which knew no
        `footage`, and refuses it) stopped a node upgraded in a rolling upgrade (a review)."""
        if isinstance(data, dict) and implies_footage(data):
            return data | {"footage": True}
        return data

    @model_validator(mode="after")
    def footage_urls_declared(self) -> CameraConfig:
        """`loop: true` or `realtime: false` on a stream URL with `footage: false` is refused: both are for
        footage, and a stream URL is a live camera unless footage (an answer stating a frame count taken
        for footage ended a live camera's thread for good: a review)."""
        if is_stream_uri(self.source) and not self.footage and (self.loop or not self.realtime):
            said = "loop: true" if self.loop else "realtime: false"
            raise ValueError(
                f"{said} is for footage: a stream URL is a live camera unless declared `footage: true` (a video"
                " file served over http://)"
            )
        return self

    @field_validator("sample_fps")
    @classmethod
    def a_frame_an_hour(cls, fps: float) -> float:
        return defaults.at_least_a_frame_an_hour(fps)

    @field_validator("region")
    @classmethod
    def known_region(cls, region: str) -> str:
        if region not in load_regions():
            raise ValueError(f"unknown plate region {region!r}; known: {', '.join(sorted(load_regions()))}")
        return region

    @field_validator("source")
    @classmethod
    def well_formed_source(cls, source: str) -> str:
        """A URL must have a supported scheme and a host; a mistyped one is not taken for a file path."""
        if problem := uri_syntax_problem(source):
            raise ValueError(problem)
        return source

    @field_validator("rtsp_transport")
    @classmethod
    def udp_for_rtsp_only(cls, rtsp_transport: str, info: ValidationInfo) -> str:
        """UDP is chosen for an RTSP camera only: another source would keep to its own transport silently."""
        source = info.data.get("source")  # (absent where it was refused itself)
        if isinstance(source, str) and (problem := rtsp_transport_problem(source, rtsp_transport)):
            raise ValueError(problem.removeprefix("rtsp_transport "))
        return rtsp_transport

    @field_validator("sample_fps", mode="before")
    @classmethod
    def sample_fps_is_a_number(cls, sample_fps: Any) -> Any:
        if isinstance(sample_fps, bool):
            raise ValueError("must be a number, not true/false")
        return sample_fps

    @field_validator("roi", mode="before")
    @classmethod
    def roi_points_are_numbers(cls, roi: Any) -> Any:
        if isinstance(roi, list) and any(
            isinstance(point, list | tuple) and any(isinstance(v, bool) for v in point) for point in roi
        ):
            raise ValueError("points must be [x, y] numbers, not true/false")
        return roi

    @field_validator("roi")
    @classmethod
    def roi_encloses_an_area(cls, roi: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        """Refuse a polygon of zero area (all points equal or on one line): it would ignore every plate."""
        if roi is None:
            return roi
        twice_area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(roi, roi[1:] + roi[:1], strict=True))
        if not math.isfinite(twice_area):
            raise ValueError("coordinates too large to be pixels")
        if crossing := crossing_edges(roi):
            first, second = crossing
            raise ValueError(
                f"the polygon's edges {first + 1} and {second + 1} cross (a bow tie): list its points in order"
                " around the area, as you would draw it"
            )  # its two lobes' areas cancelled: it was called a polygon of points on one line (a review)
        if twice_area == 0:
            raise ValueError("the polygon encloses no area (its points coincide or lie on one line)")
        return roi


def parse_cameras(
    raw: Any, settings: Settings, origin: str = "cameras file", check_sources: bool = False
) -> list[CameraConfig]:
    """Validate the parsed YAML: {cameras: [ {...}, ... ]}, an entry without a `sample_fps` or `region` of
    its own given `settings`' (ALPR_SAMPLE_FPS, ALPR_OCR_REGION: `with_settings`). Every mistake found (up
    to MAX_MISTAKES_SHOWN, the rest counted) is said in one ConfigError, which `origin` (the file) starts;
    with `check_sources`, each enabled camera's source too (ingest/source_checks.check_source: a file that
    does not exist...; a video is opened within ALPR_CAPTURE_MEMORY_MB)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("cameras"), list) or set(raw) - {"cameras"}:
        raise ConfigError(f"{origin}: expected a mapping with one key, `cameras`, holding a list")
    cameras: list[CameraConfig] = []
    mistakes: list[str] = []
    for position, entry in enumerate(raw["cameras"], start=1):
        if not isinstance(entry, dict):
            mistakes.append(
                f"camera #{position}: expected a mapping of fields (id, source, ...), got {type(entry).__name__}"
            )
            continue
        name = shorten(entry["id"]) if isinstance(entry.get("id"), str) else repr(f"#{position}")
        values, taken = with_settings(entry, settings)
        try:
            camera = CameraConfig.model_validate(values)
        except ValidationError as error:
            said = format_errors(error, limit=MAX_PROBLEMS_SHOWN, label="field ", names=taken)
            mistakes.append(f"camera {name}: {said}")
            continue
        cameras.append(camera)
        if implies_footage(entry):
            log.warning("camera %s: %s on a stream URL without `footage: true` is read as footage (deprecated:"
                        " add `footage: true` once every ingest node runs this release)", name,
                        "loop: true" if entry.get("loop") is True else "realtime: false")  # fmt: skip
        if check_sources and camera.enabled and len(mistakes) < MAX_MISTAKES_SHOWN:  # (a video is opened: bounded)
            try:
                check_source(camera.source, settings.capture_memory_mb)
            except InputError as error:
                mistakes.append(f"camera {name}: {mask_url(str(error))}")
    mistakes += repeated_ids([c.id for c in cameras])
    if not mistakes and not any(c.enabled for c in cameras):
        mistakes.append("no enabled camera")
    if mistakes:
        more = len(mistakes) - MAX_MISTAKES_SHOWN
        said = "; ".join(mistakes[:MAX_MISTAKES_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise ConfigError(f"{origin}: {said}")
    return cameras


def implies_footage(entry: dict[str, Any]) -> bool:
    """Whether a cameras file's entry is footage by `loop: true` or `realtime: false` on a stream URL, its
    `footage` unsaid: a file written for the release before `footage` (deprecated: declare `footage: true`
    once every node runs this release; a node of the release before refuses the field)."""
    source = entry.get("source")
    footage_only = entry.get("loop") is True or entry.get("realtime") is False
    return "footage" not in entry and footage_only and isinstance(source, str) and is_stream_uri(source)


def with_settings(entry: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """A cameras file's entry, the fields it leaves out of FROM_SETTINGS taken from `settings`; and how an
    error names each field so taken: by its variable too (`field sample_fps (ALPR_SAMPLE_FPS 100.0)`), as
    the entry does not name it."""
    taken = {field: getattr(settings, setting) for field, setting in FROM_SETTINGS.items() if field not in entry}
    names = {field: f"{field} ({ENV_PREFIX}{FROM_SETTINGS[field].upper()} {value})" for field, value in taken.items()}
    return taken | entry, names


def repeated_ids(ids: list[str]) -> list[str]:
    """The mistakes of the cameras' ids taken together: an id given twice, two that differ only in case."""
    mistakes = []
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        mistakes.append(f"camera ids must be unique; repeated: {', '.join(duplicates)}")
    folded: dict[str, str] = {}
    for camera_id in ids:  # one folder of kept frames on a file system blind to case (macOS, Windows shares)
        if (first := folded.setdefault(camera_id.casefold(), camera_id)) != camera_id:
            mistakes.append(f"camera ids {first} and {camera_id} differ only in case: name them apart")
    return mistakes


def shared_sources(cameras: list[CameraConfig]) -> list[list[str]]:
    """The ids of enabled cameras that read one source (a URL as written, a file or folder by its real
    path), in groups of two or more: each car there is read, logged and alerted on once per camera. A
    camera entry copied and its source left unchanged did that unseen; two regions of one view as two
    cameras may be meant, so it is said at start, not refused."""
    by_source: dict[str, list[str]] = {}
    for camera in cameras:
        if camera.enabled:
            source = camera.source.strip()
            key = source if "://" in source else os.path.realpath(source)
            by_source.setdefault(key, []).append(camera.id)
    return [ids for ids in by_source.values() if len(ids) > 1]


def load_cameras(path: Path, settings: Settings, check_sources: bool = False) -> list[CameraConfig]:
    """The cameras of the file at `path`, validated with the Settings in force (`parse_cameras`; with
    `check_sources`, their sources too); its mistakes are a one-line ConfigError naming the file. A file
    other users of this host may write is refused (common/file_writers.refuse_if_others_may_change); one
    they may read whose sources hold a password is a WARNING (common/readable_urls)."""
    text = read_text_file(path, MAX_CAMERAS_FILE_BYTES, ConfigError)
    harm = "they choose what each camera reads (its source) and where plates are looked for (its roi)"
    refuse_if_others_may_change(path, f"the cameras file {shown_path(path)}", harm)
    raw = load_strict_yaml(text, str(path))
    cameras = parse_cameras(raw, settings, str(path), check_sources)
    if holders := [camera.id for camera in cameras if holds_credentials(camera.source)]:
        warn_if_others_may_read_credentials(path, f"the cameras file {shown_path(path)}", holders)
    return cameras


def crossing_edges(points: list[tuple[float, float]]) -> tuple[int, int] | None:
    """The first two edges of a closed polygon that cross (edge i runs from point i to the next), None when none
    does: a polygon listed out of order (a bow tie) encloses not the area drawn. Edges that only touch, at an end,
    do not cross."""

    def side(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    edges = list(zip(points, points[1:] + points[:1], strict=True))
    for i, (p1, p2) in enumerate(edges):
        for j in range(i + 2, len(edges)):
            if i == 0 and j == len(edges) - 1:
                continue  # the first and last edges share the first point
            q1, q2 = edges[j]
            if side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0:
                return i, j
    return None
