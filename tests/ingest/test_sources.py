import cv2
import numpy as np
import pytest

from common.errors import InputError
from ingest.sources import ImageFolderSource, VideoSource, open_source


def test_video_is_sampled_at_the_set_rate(demo_clip):
    path, truth = demo_clip
    source = open_source(str(path), sample_fps=5.0)
    assert isinstance(source, VideoSource)
    frames = list(source.frames())
    total = len(truth["boxes"])
    assert len(frames) == source.expected_frames == total // 2  # a 10 fps clip sampled at 5 fps
    assert [f.index for f in frames[:3]] == [0, 2, 4]
    assert frames[1].time_s == pytest.approx(0.2)
    assert source.failures == []


def test_image_folder_reports_unreadable_images(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path), sample_fps=2.0)
    assert isinstance(source, ImageFolderSource)
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 2] and frames[1].time_s == 1.0
    assert len(source.failures) == 1 and "b.jpg" in source.failures[0]


def test_truncated_video_ends_early_with_a_warning(tmp_path):
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(20):
        writer.write(np.full((240, 320, 3), i * 10, np.uint8))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    source = open_source(str(cut), sample_fps=10.0)
    frames = list(source.frames())
    assert 0 < len(frames) < 20
    assert len(source.failures) == 1 and "ended early" in source.failures[0]


def make_bad(tmp_path, kind):
    if kind == "missing":
        return str(tmp_path / "nope.mp4")
    if kind == "empty-file":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return str(tmp_path / "empty.mp4")
    if kind == "corrupt":
        (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
        return str(tmp_path / "corrupt.mp4")
    if kind == "empty-folder":
        (tmp_path / "frames").mkdir()
        return str(tmp_path / "frames")
    return "rtsp://127.0.0.1:9/unreachable"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty-file", "is empty"),
        ("corrupt", "cannot open video|no frame could be decoded"),
        ("empty-folder", "holds no images"),
        ("unreachable", "cannot connect to stream"),
    ],
)
def test_bad_sources_are_input_errors(tmp_path, kind, message):
    with pytest.raises(InputError, match=message):
        source = open_source(make_bad(tmp_path, kind), sample_fps=5.0)
        list(source.frames())


def test_sample_rate_must_be_positive(demo_clip):
    with pytest.raises(InputError, match="sample rate must be positive"):
        open_source(str(demo_clip[0]), sample_fps=0)
