"""The cameras file (cameras.yaml): one entry per camera, read and validated at start. Every malformed
file (not UTF-8, too large, bad YAML, repeated keys, aliases, nesting too deep, a wrong type, a
non-finite number, a malformed source URL, a degenerate region of interest) is a ConfigError whose
one-line message names the file, and the camera and field where there is one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from yaml.nodes import MappingNode, Node

from common import defaults
from common.config import format_errors
from common.credentials import mask_url
from common.errors import ConfigError
from common.jobs import Coordinate
from common.regions import load_regions
from common.text_files import read_text_file
from ingest.sources import uri_syntax_problem

MAX_CAMERAS_FILE_BYTES = 1024 * 1024
"""A cameras file is a few lines per camera; anything larger is a mistake (or an attack on the parser)."""
MAX_YAML_NESTING = 20
"""Deepest nesting of collections the file may have (a camera's roi point sits at depth 5). Deeper
input is refused before PyYAML's recursive composer can overflow the stack."""
MAX_PROBLEMS_SHOWN = 5
"""Validation problems listed per camera; the rest are counted."""
MAX_NAME_CHARS = 40
"""A camera id or key from the file is shortened to this in a message."""


class CamerasFileRefused(yaml.MarkedYAMLError):
    """Valid YAML that a cameras file may not use: a repeated key, an alias, too deep a nesting, a value
    its tag cannot hold."""


class CamerasFileLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter:

    - a key repeated in one mapping is refused, naming the key and both lines (PyYAML keeps the last);
    - aliases (*name) are refused outright. A "billion laughs" document is a few hundred bytes of
      anchors and aliases that expand into billions of nodes once the loaded tree is walked (PyYAML
      shares the aliased objects, validation does not), so a size cap cannot stop it, and counting
      expansions is more code than the feature is worth: a cameras file is short and written by hand
      and has no need of aliases (an anchor alone is harmless and allowed);
    - nesting deeper than MAX_YAML_NESTING is refused;
    - a scalar its tag cannot hold (2001-02-30, `!!int abc`, an empty `!!int`, an integer of more
      than 4300 digits) is a marked error instead of a ValueError or IndexError from deep inside
      the constructor.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nesting_depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            alias = self.peek_event()
            raise CamerasFileRefused(
                None, None, f"aliases (*{alias.anchor}) are not allowed in a cameras file", alias.start_mark
            )
        starts_collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if starts_collection:
            self.nesting_depth += 1
            if self.nesting_depth > MAX_YAML_NESTING:
                raise CamerasFileRefused(
                    None, None, f"nested deeper than {MAX_YAML_NESTING} levels", self.peek_event().start_mark
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if starts_collection:
                self.nesting_depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as error:
            kind = node.tag.removeprefix("tag:yaml.org,2002:")
            # Neither the value nor Python's quote of it is shown: it may be a password that no URL
            # pattern recognises (`!!float user:pw@`, found by the fuzz tests); the line and column say
            # where it is. Python's reason ("day is out of range for month") is kept unless it quotes it.
            reason = str(error).split(";")[0]
            reason = f": {reason}" if isinstance(error, ValueError | ArithmeticError) and "'" not in reason else ""
            raise CamerasFileRefused(None, None, f"cannot read the value as {kind}{reason}", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # `!!set` on a scalar: the safe constructor says so
            return super().construct_mapping(node, deep)
        first_line_of_key: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen_before = key in first_line_of_key
            except TypeError:
                continue  # an unhashable key: the safe constructor refuses it, with its position
            if seen_before:
                raise CamerasFileRefused(
                    None,
                    None,
                    f"key {shorten(key)} repeated in one mapping (first at line {first_line_of_key[key]})",
                    key_node.start_mark,
                )
            first_line_of_key[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def shorten(value: Any) -> str:
    """`value` for a one-line message: its repr, URL passwords masked before it is cut to MAX_NAME_CHARS
    characters (a cut could leave a password with no '@' after it to show where it ends)."""
    shown = repr(mask_url(value) if isinstance(value, str) else value)
    return shown if len(shown) <= MAX_NAME_CHARS else shown[: MAX_NAME_CHARS - 3] + "..."


class CameraConfig(BaseModel):
    """One camera: where its frames come from and how they are sampled and read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", description="Camera id, logged with every read.")
    source: str = Field(min_length=1, description="rtsp/http URL, video file or image folder.")
    sample_fps: float = Field(defaults.SAMPLE_FPS, gt=0, le=60, description="Frames sampled per second.")
    roi: list[tuple[Coordinate, Coordinate]] | None = Field(
        None, min_length=3, max_length=256, description="Region of interest polygon, pixels."
    )
    region: str = Field(defaults.OCR_REGION, description="Plate-format region: us, eu, br, ...")
    enabled: bool = Field(True, description="A disabled camera is validated but not opened.")
    loop: bool = Field(False, description="Start a video file again when it ends.")
    realtime: bool = Field(
        True,
        description="Pace a file source at its sampling rate, as a live camera (false: recorded footage, read"
        " as fast as the chain takes it and waiting for it when full, never skipped).",
    )

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
        if twice_area == 0:
            raise ValueError("the polygon encloses no area (its points coincide or lie on one line)")
        return roi


def parse_cameras(raw: Any, origin: str = "cameras file") -> list[CameraConfig]:
    """Validate the parsed YAML: {cameras: [ {...}, ... ]}. `origin` (the file) starts every message."""
    if not isinstance(raw, dict) or not isinstance(raw.get("cameras"), list) or set(raw) - {"cameras"}:
        raise ConfigError(f"{origin}: expected a mapping with one key, `cameras`, holding a list")
    cameras: list[CameraConfig] = []
    for position, entry in enumerate(raw["cameras"], start=1):
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{origin}: camera #{position}: expected a mapping of fields (id, source, ...), "
                f"got {type(entry).__name__}"
            )
        name = shorten(entry["id"]) if isinstance(entry.get("id"), str) else repr(f"#{position}")
        try:
            cameras.append(CameraConfig.model_validate(entry))
        except ValidationError as error:
            problems = format_errors(error, limit=MAX_PROBLEMS_SHOWN, label="field ")
            raise ConfigError(f"{origin}: camera {name}: {problems}") from None
    ids = [c.id for c in cameras]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise ConfigError(f"{origin}: camera ids must be unique; repeated: {', '.join(duplicates)}")
    if not any(c.enabled for c in cameras):
        raise ConfigError(f"{origin}: no enabled camera")
    return cameras


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """A PyYAML error as one line, URL credentials masked: the problem (and its context) and where,
    line and column from 1."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return mask_url(" ".join(str(error).split()))
    what = error.problem or error.context or "unreadable"
    if error.context and error.problem:
        what = f"{error.problem} ({error.context})"
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return mask_url(" ".join(f"{what}{where}".split()))


def load_cameras(path: Path) -> list[CameraConfig]:
    """The cameras of the file at `path`, validated; any problem is a one-line ConfigError naming the file."""
    text = read_text_file(path, MAX_CAMERAS_FILE_BYTES, ConfigError)
    loader: CamerasFileLoader | None = None
    try:
        loader = CamerasFileLoader(text)  # its reader refuses non-printable characters at once
        raw = loader.get_single_data()
    except CamerasFileRefused as error:
        raise ConfigError(f"{path}: {describe_yaml_error(error)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {describe_yaml_error(error)}") from None
    except RecursionError:  # defence in depth: the nesting cap should stop this first
        raise ConfigError(f"{path}: nested too deeply") from None
    except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as error:
        # Defence in depth: the loader turns a value its tag cannot hold into a marked error; this
        # catches any construction PyYAML finishes later, outside `construct_object`.
        raise ConfigError(f"{path}: not valid YAML: a value cannot be read ({type(error).__name__})") from None
    finally:
        if loader is not None:
            loader.dispose()
    return parse_cameras(raw, str(path))
