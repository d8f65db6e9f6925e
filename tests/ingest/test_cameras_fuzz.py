"""Fuzzing the cameras-file loader: arbitrary text, arbitrary bytes, YAML-like fragments and arbitrary
nested structures either load as cameras or are refused with a one-line ConfigError naming the file;
nothing else (no UnicodeDecodeError, RecursionError, ValueError, TypeError...) escapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import Settings
from common.errors import ConfigError
from ingest.cameras import CameraConfig, load_cameras, parse_cameras
from tests.strategies import FUZZ_SETTINGS, json_like

DEFAULT_SETTINGS = Settings.load({})
"""The settings a camera without a `sample_fps` or `region` of its own takes them from: the defaults."""

VALID_FILE = (
    "cameras:\n"
    "  - id: gate-3\n"
    "    source: rtsp://admin:pw@10.0.0.5:554/stream\n"
    "    sample_fps: 4\n"
    "    region: eu\n"
    "    roi: [[0, 0], [100, 0], [100, 80]]\n"
    "  - id: depot\n"
    "    source: /videos/depot.mp4\n"
    "    loop: true\n"
    "    enabled: false\n"
)

YAML_FRAGMENTS = [
    "cameras:", "\n", "  ", "    ", "- ", "id: ", "source: ", "sample_fps: ", "roi: ", "region: ", "enabled: ",
    "loop: ", "realtime: ", "gate-3", "us", "eu", "rtsp://", "rtsp//", "rtsp:/", "http:", "ftp://", "user:pw@",
    "10.0.0.5", ":554", "/stream", "/videos/a.mp4", "[", "]", "{", "}", ", ", ": ", "&a ", "*a", "<<: ", "!!int ",
    "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!python/object ", ".nan", ".inf", "-.inf", "1e999", "0",
    "-1", "4", "60.5", "2001-02-30", "true", "null", "~", "? ", "'", '"', "#", "|", ">", "---", "...", "%YAML 1.1",
    "\t", "\\", "\x00", "\x85", "\ufeff", "é", "9" * 50,
]  # fmt: skip
"""Pieces of cameras files, valid and broken: joined at random they reach the loader's corners."""

FIELD_NAMES = ["id", "source", "sample_fps", "roi", "region", "enabled", "loop", "realtime"]

json_values = json_like(
    ["gate-3", "us", "eu", "rtsp://10.0.0.5/s", "rtsp//h/x", "http:h", "/videos/a.mp4", ""], max_text=20, max_leaves=30
)

points = st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans(), max_size=3)
camera_entries = st.dictionaries(
    st.sampled_from(FIELD_NAMES) | st.text(max_size=8),
    json_values | points | st.lists(points, max_size=5),
    max_size=9,
)
"""Entries shaped like cameras, with the real field names most of the time: they reach the validators."""
cameras_documents = st.fixed_dictionaries({"cameras": st.lists(camera_entries | json_values, max_size=4)})


@pytest.fixture(scope="module")
def cameras_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file that each example overwrites."""
    return tmp_path_factory.mktemp("fuzz") / "cameras.yaml"


def assert_loads_or_is_refused(path: Path) -> None:
    try:
        cameras = load_cameras(path, DEFAULT_SETTINGS)
    except ConfigError as error:
        assert_one_line_naming(str(error), str(path))
        return
    assert_cameras(cameras)


def assert_parses_or_is_refused(raw: Any) -> None:
    try:
        cameras = parse_cameras(raw, DEFAULT_SETTINGS, "fuzz.yaml")
    except ConfigError as error:
        assert_one_line_naming(str(error), "fuzz.yaml")
        return
    assert_cameras(cameras)


def assert_one_line_naming(message: str, origin: str) -> None:
    assert message.startswith(origin) and "\n" not in message and "\r" not in message, message
    assert "pw@" not in message, message  # a password from the file never shows


def assert_cameras(cameras: object) -> None:
    assert isinstance(cameras, list) and cameras and all(isinstance(c, CameraConfig) for c in cameras)
    assert any(c.enabled for c in cameras)


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """`data` with each (position, length to cut, bytes to insert) applied in turn."""
    for position, cut, inserted in edits:
        at = position % (len(data) + 1)
        data = data[:at] + inserted + data[at + cut :]
    return data


@FUZZ_SETTINGS
@given(text=st.text(max_size=500))
def test_arbitrary_text(cameras_path: Path, text: str) -> None:
    cameras_path.write_text(text, encoding="utf-8")
    assert_loads_or_is_refused(cameras_path)


@FUZZ_SETTINGS
@given(data=st.binary(max_size=500))
def test_arbitrary_bytes(cameras_path: Path, data: bytes) -> None:
    cameras_path.write_bytes(data)
    assert_loads_or_is_refused(cameras_path)


@FUZZ_SETTINGS
@given(fragments=st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=60))
def test_yaml_like_fragments(cameras_path: Path, fragments: list[str]) -> None:
    cameras_path.write_text("".join(fragments), encoding="utf-8")
    assert_loads_or_is_refused(cameras_path)


@FUZZ_SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=6)), max_size=5))
def test_mutated_valid_file(cameras_path: Path, edits: list[tuple[int, int, bytes]]) -> None:
    cameras_path.write_bytes(mutate(VALID_FILE.encode(), edits))
    assert_loads_or_is_refused(cameras_path)


@FUZZ_SETTINGS
@given(raw=json_values)
def test_arbitrary_structures(raw: Any) -> None:
    assert_parses_or_is_refused(raw)


@FUZZ_SETTINGS
@given(raw=cameras_documents)
def test_camera_shaped_structures(raw: dict[str, Any]) -> None:
    assert_parses_or_is_refused(raw)


def test_the_valid_file_loads(cameras_path: Path) -> None:
    cameras_path.write_text(VALID_FILE)
    assert [c.id for c in load_cameras(cameras_path, DEFAULT_SETTINGS)] == ["gate-3", "depot"]
