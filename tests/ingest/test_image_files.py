"""Reading the images of a folder camera: a FIFO never blocks the camera, an image over the pixel limit
is refused from its header before it is decoded, and every sampled image that cannot be had is yielded
with its reason (so that the node records it)."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from ingest.frame_source import SampledFrame, UnreadFrame
from ingest.image_files import UnreadableFrameError, read_image
from ingest.sources import open_source
from tests.crafted_images import png_header_only, progressive_jpeg, scan_bomb
from tests.ingest.helpers import release_fifo


def samples_within(folder: Path, fifo: Path, timeout_s: float = 10.0, **kwargs: int) -> list:
    """The samples of the image folder, read in a thread that must end within `timeout_s`."""
    source = open_source(str(folder), 5.0, **kwargs)
    result: list = []
    thread = threading.Thread(target=lambda: result.extend(source.samples()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    blocked = thread.is_alive()
    release_fifo(fifo)
    assert not blocked, f"reading the folder still blocked after {timeout_s:.0f} s"
    return result


def test_a_fifo_named_like_an_image_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "a.jpg")
    cv2.imwrite(str(tmp_path / "b.jpg"), np.full((20, 30, 3), 90, np.uint8))
    samples = samples_within(tmp_path, tmp_path / "a.jpg")
    assert [(type(s), s.index) for s in samples] == [(SampledFrame, 0)]  # not an image of the folder


def test_a_fifo_swapped_in_after_the_listing_is_unread_not_waited_on(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 90, np.uint8))
    source = open_source(str(tmp_path), 5.0)
    (tmp_path / "a.jpg").unlink()
    os.mkfifo(tmp_path / "a.jpg")
    result: list = []
    thread = threading.Thread(target=lambda: result.extend(source.samples()), daemon=True)
    thread.start()
    thread.join(10)
    blocked = thread.is_alive()
    release_fifo(tmp_path / "a.jpg")
    assert not blocked
    assert result[0] == UnreadFrame(0, 0.0, "undecodable", "not a regular file")
    assert isinstance(result[1], SampledFrame)
    assert len(source.failures) == 1 and "a.jpg: not a regular file" in source.failures[0]


def test_every_sampled_image_ends_as_a_frame_or_an_unread_one(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((20, 30, 3), 90, np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"")
    (tmp_path / "c.jpg").write_text("not an image")
    samples = samples_within(tmp_path, tmp_path / "none")
    assert isinstance(samples[0], SampledFrame) and samples[0].image.shape == (20, 30, 3)
    assert samples[1:] == [
        UnreadFrame(1, 0.2, "undecodable", "undecodable image"),
        UnreadFrame(2, 0.4, "undecodable", "undecodable image"),
    ]


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [(10_000, 5_000, "10000x5000 pixels, more than the limit of 40000000"), (20_000, 20_000, "decompression-bomb"),
     (70_000, 400, "70000x400 pixels, a side longer than a JPEG holds"),  # within the pixels: no JPEG holds it
     (1, 65_501, "1x65501 pixels, a side longer than a JPEG holds")],
)  # fmt: skip
def test_an_image_over_the_limit_is_refused_from_its_header(tmp_path, width, height, message):
    """The header announces too many pixels and the pixel data would not even decode: only reading the
    header first refuses it as too large (decoding first calls it undecodable, or, were it whole, takes
    150 MiB or 1.1 GiB). Past Pillow's own limit, Pillow refuses it."""
    (tmp_path / "a.png").write_bytes(png_header_only(width, height))
    with pytest.raises(UnreadableFrameError, match=message) as refused:
        read_image(tmp_path / "a.png", 40_000_000)
    assert refused.value.problem == "too_large"


def test_an_image_past_pillows_warning_size_is_refused_without_a_warning(tmp_path):
    """Between Pillow's warning size (89 Mpx) and its refusal (179 Mpx) it warns on every such image,
    noise on the node's stderr for a file this project refuses by its own, smaller limit anyway."""
    (tmp_path / "a.png").write_bytes(png_header_only(10_000, 9_500))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UnreadableFrameError, match="10000x9500 pixels, more than the limit") as refused:
            read_image(tmp_path / "a.png", 40_000_000)
    assert refused.value.problem == "too_large" and not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize(("width", "height", "max_pixels", "kept"), [(40, 30, 1200, True), (40, 30, 1199, False)])
def test_the_pixel_limit_counts_width_times_height(tmp_path, width, height, max_pixels, kept):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((height, width, 3), 90, np.uint8))
    samples = samples_within(tmp_path, tmp_path / "none", max_pixels=max_pixels)
    if kept:
        assert isinstance(samples[0], SampledFrame) and samples[0].image.shape == (height, width, 3)
    else:
        assert samples == [UnreadFrame(0, 0.0, "too_large", f"{width}x{height} pixels, more than the limit of 1199")]


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding_and_a_progressive_one_is_read(tmp_path):
    """An 8K progressive JPEG of one 20-byte scan repeated 20,000 times (595 KB) took 23 s to decode, in
    the folder camera's thread; a JPEG's scans are counted first (MAX_JPEG_SCANS)."""
    blocks = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = cv2.resize(blocks, (128, 96), interpolation=cv2.INTER_NEAREST)  # 2.6 KB as a JPEG
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(scan_bomb(image, 500))
    assert cv2.imdecode(np.fromfile(bomb, np.uint8), cv2.IMREAD_COLOR).shape == (96, 128, 3)  # a valid JPEG
    with pytest.raises(UnreadableFrameError) as refused:
        read_image(bomb, 10**6)
    assert refused.value.problem == "undecodable" and refused.value.detail.startswith("JPEG with 510 scans, more ")
    progressive = tmp_path / "progressive.jpg"
    progressive.write_bytes(progressive_jpeg(image))
    assert read_image(progressive, 10**6).shape == (96, 128, 3)
    png = tmp_path / "scan_markers.png"  # the pair in a PNG's pixels is no scan: only JPEGs are counted
    cv2.imwrite(str(png), np.tile(np.array([0xFF, 0xDA], np.uint8), (64, 150))[..., None].repeat(3, 2))
    assert cv2.imread(str(png)).tobytes().count(b"\xff\xda") > 100 and read_image(png, 10**6).shape == (64, 300, 3)
