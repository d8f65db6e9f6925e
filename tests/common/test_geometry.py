"""Box geometry (common/geometry.py): whole-pixel boxes map to themselves, fractional ones grow outward
to the smallest whole-pixel box that contains them, everything is clipped to the frame, empty boxes
give empty crops, and `crop` cuts exactly the region `grow_box` names; a box at the frame's left or
right edge may be cut off (`at_side_edge`); box areas and overlaps are zero where boxes are empty or
apart, for empty (0, 4) arrays too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.geometry import at_side_edge, box_areas, crop, grow_box, overlap_areas
from tests.strategies import FUZZ_SETTINGS

FRAME_HW = (120, 200)


def numbered_frame(height: int = FRAME_HW[0], width: int = FRAME_HW[1]) -> np.ndarray:
    """A frame whose every pixel holds its own index, so a crop shows where it was cut."""
    return np.arange(height * width * 3, dtype=np.int64).reshape(height, width, 3)


@pytest.mark.parametrize("box", [(10, 20, 60, 45), (0, 0, 200, 120), (199, 119, 200, 120), (5, 5, 6, 6)])
def test_whole_pixel_box_maps_to_itself_at_margin_zero(box):
    assert grow_box(tuple(map(float, box)), 0.0, FRAME_HW) == box
    x1, y1, x2, y2 = box
    frame = numbered_frame()
    assert np.array_equal(crop(frame, tuple(map(float, box)), 0.0), frame[y1:y2, x1:x2])


def test_fractional_box_grows_outward():
    # x: 10.5 - 0.1 * 20 = 8.5 -> 8, 30.5 + 2 = 32.5 -> 33; y: 20.2 - 1 = 19.2 -> 19, 30.2 + 1 = 31.2 -> 32.
    assert grow_box((10.5, 20.2, 30.5, 30.2), 0.1, FRAME_HW) == (8, 19, 33, 32)
    # Rounding would shrink this box to (11, 11, 20, 20) and cut off part of its edge pixels.
    assert grow_box((10.6, 10.6, 20.4, 20.4), 0.0, FRAME_HW) == (10, 10, 21, 21)


@FUZZ_SETTINGS
@given(
    x=st.floats(-50, 250),
    y=st.floats(-50, 170),
    w=st.floats(0, 150),
    h=st.floats(0, 100),
    margin=st.floats(0, 0.5),
)
def test_grown_box_is_the_smallest_whole_pixel_box_containing_the_grown_float_box(x, y, w, h, margin):
    height, width = FRAME_HW
    box = (x, y, x + w, y + h)
    x1, y1, x2, y2 = grow_box(box, margin, FRAME_HW)
    assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
    assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    # The exact grown box, clipped to the frame (where it overlaps the frame at all).
    fx1, fy1 = max(0.0, x - w * margin), max(0.0, y - h * margin)
    fx2, fy2 = min(float(width), x + w + w * margin), min(float(height), y + h + h * margin)
    if fx1 < fx2 and fy1 < fy2:
        assert x1 <= fx1 and y1 <= fy1 and x2 >= fx2 and y2 >= fy2, "whole pixels must contain the box"
        assert fx1 - x1 < 1 + 1e-9 and fy1 - y1 < 1 + 1e-9, "grown by more than the rounding"
        assert x2 - fx2 < 1 + 1e-9 and y2 - fy2 < 1 + 1e-9, "grown by more than the rounding"
    # crop and grow_box always agree.
    frame = numbered_frame()
    assert np.array_equal(crop(frame, box, margin), frame[y1:y2, x1:x2])


@pytest.mark.parametrize(
    ("box", "margin", "expected"),
    [
        ((-30.0, -10.0, 20.0, 15.0), 0.0, (0, 0, 20, 15)),  # over the top-left corner
        ((150.0, 100.0, 260.0, 170.0), 0.0, (150, 100, 200, 120)),  # over the bottom-right corner
        ((0.0, 0.0, 200.0, 120.0), 0.25, (0, 0, 200, 120)),  # the margin reaches past every edge
        ((2.0, 3.0, 12.0, 13.0), 0.5, (0, 0, 17, 18)),  # the margin alone crosses the edge
    ],
)
def test_clipped_to_the_frame(box, margin, expected):
    assert grow_box(box, margin, FRAME_HW) == expected
    x1, y1, x2, y2 = expected
    assert crop(numbered_frame(), box, margin).shape == (y2 - y1, x2 - x1, 3)


@pytest.mark.parametrize(
    "box",
    [
        (10.0, 10.0, 10.0, 10.0),  # a point
        (10.0, 10.0, 40.0, 10.0),  # a line
        (300.0, 20.0, 400.0, 50.0),  # right of the frame
        (-100.0, -80.0, -10.0, -5.0),  # above and left of the frame
    ],
)
def test_degenerate_or_outside_box_gives_an_empty_crop(box):
    x1, y1, x2, y2 = grow_box(box, 0.1, FRAME_HW)
    assert x1 == x2 or y1 == y2
    assert crop(numbered_frame(), box, 0.1).size == 0


def test_a_box_given_with_its_corners_swapped_is_the_box_they_span():
    """It gave an empty box: a redactor blurred nothing of the plate a forged job named so."""
    assert grow_box((40.0, 50.0, 10.0, 20.0), 0.1, FRAME_HW) == grow_box((10.0, 20.0, 40.0, 50.0), 0.1, FRAME_HW)
    assert np.array_equal(
        crop(numbered_frame(), (40.0, 20.0, 10.0, 50.0), 0.0), crop(numbered_frame(), (10.0, 20.0, 40.0, 50.0), 0.0)
    )


def test_crop_is_a_view_of_a_grayscale_frame_too():
    frame = numbered_frame()[:, :, 0]
    piece = crop(frame, (20.3, 30.7, 50.2, 60.9), 0.0)
    assert piece.shape == (61 - 30, 51 - 20)
    assert piece[0, 0] == frame[30, 20] and np.shares_memory(piece, frame)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0.0, 100.0, 200.0, 150.0), True),  # at the left border
        ((400.0, 100.0, 640.0, 150.0), True),  # at the right border
        ((-3.0, 100.0, 200.0, 150.0), True),  # a little past it
        ((5.0, 100.0, 205.0, 150.0), True),  # within a tenth of its height (5 px) of it
        ((5.5, 100.0, 205.0, 150.0), False),
        ((400.0, 100.0, 634.0, 150.0), False),
        ((300.0, 0.0, 500.0, 50.0), False),  # the top and bottom borders cut characters across, not off
        ((300.0, 310.0, 500.0, 360.0), False),
        ((1.9, 100.0, 50.0, 110.0), True),  # a small box: 2 px at least
        ((2.5, 100.0, 50.0, 110.0), False),
    ],
)
def test_a_box_at_the_frames_left_or_right_edge_may_be_cut_off(box, expected):
    assert at_side_edge(box, 640) is expected


@pytest.mark.parametrize(
    ("boxes", "areas"),
    [
        ([], []),  # an empty (0, 4) array
        ([(0, 0, 10, 5)], [50]),
        ([(2.5, 1, 4.5, 2)], [2]),  # fractional
        ([(10, 0, 0, 5), (0, 0, 0, 5), (0, 3, 10, 3)], [0, 0, 0]),  # corners swapped, no width, no height
    ],
)
def test_box_areas(boxes, areas):
    assert box_areas(np.array(boxes, np.float32).reshape(-1, 4)).tolist() == areas


@pytest.mark.parametrize(
    ("box", "others", "overlaps"),
    [
        ((0, 0, 10, 10), [], []),  # no others: an empty (0, 4) array
        ((0, 0, 10, 10), [(0, 0, 10, 10)], [100]),  # itself
        ((0, 0, 10, 10), [(5, 5, 20, 20), (2, 2, 4, 4)], [25, 4]),  # a corner; one inside
        ((0, 0, 10, 10), [(10, 0, 20, 10), (30, 30, 40, 40)], [0, 0]),  # touching; apart
        ((2, 2, 4, 4), [(0, 0, 10, 10)], [4]),  # inside another
    ],
)
def test_overlap_areas(box, others, overlaps):
    shared = overlap_areas(np.array(box, np.float32), np.array(others, np.float32).reshape(-1, 4))
    assert shared.tolist() == overlaps
