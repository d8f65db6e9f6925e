"""detector_worker/tiles.py: which frames are tiled and how, and how the views' boxes become one frame's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from alpr.wiring import build_detector
from common import geometry
from detector_worker.tiles import cut_by_tile_edge, merge_views, tile_windows
from redactor_worker.core import redact
from tests.helpers import iou


def covered(windows: list[tuple[int, int, int, int]], height: int, width: int) -> np.ndarray:
    seen = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        seen[y0:y1, x0:x1] = True
    return seen


@pytest.mark.parametrize(
    ("height", "width", "tiles"),
    [(1080, 1920, 0), (1440, 2560, 2), (2160, 3840, 6), (4320, 7680, 15), (600, 4000, 3), (1920, 1080, 0)],
)
def test_frames_shrunk_more_than_the_limit_are_covered_by_overlapping_tiles_within_it(height, width, tiles):
    windows = tile_windows(height, width, 960, 2.0)
    assert len(windows) == tiles
    if not tiles:
        return
    assert covered(windows, height, width).all()
    assert all(max(x1 - x0, y1 - y0) <= 1920 and 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
               for x0, y0, x1, y1 in windows)  # fmt: skip
    xs, ys = sorted({w[0] for w in windows}), sorted({w[1] for w in windows})
    tile_w, tile_h = windows[0][2] - windows[0][0], windows[0][3] - windows[0][1]
    assert all(b - a <= tile_w - 192 for a, b in zip(xs, xs[1:], strict=False))  # neighbours share 192 px
    assert all(b - a <= tile_h - 192 for a, b in zip(ys, ys[1:], strict=False))


def test_tiling_is_off_at_zero():
    assert tile_windows(2160, 3840, 960, 0) == []


def test_a_box_is_cut_only_by_a_tile_edge_inside_the_frame():
    window = (1000, 0, 2408, 1176)  # a middle tile of the top row of a 4K frame
    boxes = np.array([[1000, 10, 1100, 40],  # on its left edge: cut
                      [1500, 0, 1600, 30],  # on the frame's top edge: whole
                      [2300, 1150, 2408, 1176],  # on its right and bottom edges: cut
                      [1500, 500, 1600, 540]], np.float32)  # fmt: skip
    assert cut_by_tile_edge(boxes, window, 2160, 3840).tolist() == [True, False, True, False]


def test_the_views_boxes_merge_into_one_per_plate():
    """The whole frame's box and a tile's of one plate keep the stronger; a tile's box cut by its edge
    inside a whole box goes; a cut box with nothing else there stays (it is still blurred)."""
    no_cut = np.zeros(1, bool)
    whole = (np.array([[100, 100, 200, 140]], np.float32), np.array([0.5], np.float32), no_cut)
    tile = (np.array([[101, 99, 201, 141], [150, 100, 200, 140], [900, 900, 950, 920]], np.float32),
            np.array([0.8, 0.9, 0.3], np.float32), np.array([False, True, True]))  # fmt: skip
    xyxy, confidence = merge_views([whole, tile], 100)
    assert xyxy.tolist() == [[101, 99, 201, 141], [900, 900, 950, 920]] and confidence.tolist() == pytest.approx(
        [0.8, 0.3]
    )
    assert merge_views([whole, tile], 1)[0].tolist() == [[101, 99, 201, 141]]
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, bool))
    assert merge_views([empty, empty], 100)[0].shape == (0, 4)


def test_the_pieces_of_a_plate_wider_than_the_overlap_are_joined():
    """A plate 400 px wide across the edge of two tiles sharing 192 px: each holds a piece up to its edge;
    joined, they are the plate's box, no longer cut (else dropped by nothing and read as two plates)."""
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, bool))
    left = (np.array([[1300, 500, 1408, 560]], np.float32), np.array([0.4], np.float32), np.array([True]))
    right = (np.array([[1216, 502, 1700, 558]], np.float32), np.array([0.7], np.float32), np.array([True]))
    xyxy, confidence = merge_views([none, left, right], 100)
    assert xyxy.tolist() == [[1216, 500, 1700, 560]] and confidence.tolist() == pytest.approx([0.7])


def test_two_stacked_plates_cut_by_one_edge_are_not_joined_and_the_one_held_whole_elsewhere_keeps_the_other():
    """Tile A cuts two stacked plates, their loose boxes touching; tile B holds the upper one whole and
    misses the lower: joined, the pair was dropped as covered by the upper plate, and the lower one went
    unblurred (a review)."""
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, bool))
    pieces = (np.array([[1370, 500, 1408, 565], [1370, 560, 1408, 620]], np.float32),
              np.array([0.6, 0.5], np.float32), np.array([True, True]))  # fmt: skip
    upper = (np.array([[1360, 505, 1460, 555]], np.float32), np.array([0.8], np.float32), np.array([False]))
    xyxy, _ = merge_views([none, pieces, upper], 100)
    assert xyxy.tolist() == [[1360, 505, 1460, 555], [1370, 560, 1408, 620]]


SMALL_PLATES = ("us/car2.jpg", "eu/test_043.jpg", "us/wts-lg-000197.jpg")
"""Photos whose plates (73 to 87 px wide) the detector misses on a 4K frame shrunk 4x, and finds in tiles."""


def in_4k(datasets_dir: Path, name: str, plate_left: int | None = None) -> tuple[np.ndarray, tuple[float, ...], str]:
    """The photo at its own size in a grey 3840x2160 frame (centred, or with its plate's left edge at
    `plate_left`), its plate's box in the frame, and its text."""
    photo = datasets_dir / "openalpr-endtoend" / name
    _, x, y, w, h, plate = photo.with_suffix(".txt").read_text().split()
    image = cv2.imread(str(photo))
    frame = np.full((2160, 3840, 3), 114, np.uint8)
    left = (3840 - image.shape[1]) // 2 if plate_left is None else plate_left - int(x)
    top = (2160 - image.shape[0]) // 2
    frame[top : top + image.shape[0], left : left + image.shape[1]] = image
    return frame, (int(x) + left, int(y) + top, int(x) + int(w) + left, int(y) + int(h) + top), plate


@pytest.mark.parametrize("name", SMALL_PLATES)
def test_a_small_plate_in_a_4k_frame_is_found_and_hidden(name, detector, reader_us, settings, datasets_dir):
    """On the whole 4K frame alone (shrunk 4x) the plate was not found, so neither read nor blurred: its
    redacted frame read back right (a privacy review). In tiles it is found and hidden."""
    frame, box, plate = in_4k(datasets_dir, name)
    untiled = build_detector(settings.model_copy(update={"detector_max_downscale": 0.0}))
    for found, hidden in ((untiled.detect([frame])[0], False), (detector.detect([frame])[0], True)):
        assert any(iou(tuple(b), box) >= 0.3 for b in found.xyxy) is hidden  # the whole frame: a positive control
        redacted = redact(frame, [tuple(b) for b in found.xyxy])
        reads = reader_us.read(geometry.crop(redacted, box, 0.08))
        assert (bool(reads) and reads[0].text == plate) is not hidden, (name, reads[:1])


def test_a_plate_across_a_tiles_edge_is_one_box_read_whole(detector, reader_us, datasets_dir):
    """Its left end in the first tile (which ends at x=1408), the whole in the second: the first tile's
    piece, cut by its edge, goes; the plate is one box, read right."""
    frame, box, plate = in_4k(datasets_dir, "us/car2.jpg", plate_left=1380)
    found = detector.detect([frame])[0]
    on_plate = [b for b in found.xyxy if b[0] < box[2] and b[2] > box[0] and b[1] < box[3] and b[3] > box[1]]
    assert len(on_plate) == 1 and iou(tuple(on_plate[0]), box) >= 0.5, found.xyxy
    assert reader_us.read(geometry.crop(frame, tuple(on_plate[0]), 0.08))[0].text == plate
