"""Box geometry, in one place for every role: a plate box grown by a margin to whole pixels of the
frame (`grow_box`) and the frame region it covers (`crop`). The detector crops plates for the OCR
pool with it, the OCR core crops detections with it, the redactor hides exactly the same region and
training crops its samples the same way. Growing is outward: the min corner is floored and the max
corner ceiled, so the whole pixels always contain the (fractional) grown box, then clipped to the
frame. Whether a box may be cut off by the frame's side (`at_side_edge`) is decided here too, and the
areas the detector weighs boxes by: each box's (`box_areas`) and what one shares with others
(`overlap_areas`). Pure functions on numpy images and arrays."""

from __future__ import annotations

import math

import numpy as np

from common.types import BoxXYXY, FloatArray

SIDE_EDGE_MARGIN = 0.1
"""A box whose left or right side is within this fraction of its height (at least SIDE_EDGE_MIN_PX)
of the frame's left or right border is at the side edge: the detector's box stops at the border (it
reaches at most a few pixels past it), so a plate running out of the frame looks like a whole one."""

SIDE_EDGE_MIN_PX = 2.0


def grow_box(box_xyxy: BoxXYXY, margin: float, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box grown by `margin` (a fraction of its width and height) on each side, as whole pixels
    (x1, y1, x2, y2): the min corner floored, the max corner ceiled, then clipped to a frame of
    `frame_hw` (height, width), so 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height. A box that is
    empty or lies outside the frame gives an empty one (x1 == x2 or y1 == y2). A box given with its
    corners swapped covers what they span (it covered nothing: a redactor kept the plate sharp)."""
    (x1, x2), (y1, y2) = sorted(box_xyxy[0::2]), sorted(box_xyxy[1::2])
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    height, width = frame_hw
    left = min(width, max(0, math.floor(x1 - dx)))
    top = min(height, max(0, math.floor(y1 - dy)))
    right = max(left, min(width, math.ceil(x2 + dx)))
    bottom = max(top, min(height, math.ceil(y2 + dy)))
    return left, top, right, bottom


def crop(frame: np.ndarray, box_xyxy: BoxXYXY, margin: float) -> np.ndarray:
    """The region of `frame` that `grow_box` gives for the box (a view, not a copy); empty (size 0)
    when the box is empty or outside the frame."""
    x1, y1, x2, y2 = grow_box(box_xyxy, margin, (frame.shape[0], frame.shape[1]))
    return frame[y1:y2, x1:x2]


def at_side_edge(box_xyxy: BoxXYXY, frame_width: int) -> bool:
    """Whether the box is at the frame's left or right edge (SIDE_EDGE_MARGIN): its plate may run out
    of the frame, its first or last characters missing — read without them, a part of a plate reads
    as a whole one (520MRK as MRK). The top and bottom edges cut characters across, which the
    recogniser is unsure of, not whole characters."""
    x1, y1, x2, y2 = box_xyxy
    near = max(SIDE_EDGE_MIN_PX, SIDE_EDGE_MARGIN * (y2 - y1))
    return x1 <= near or x2 >= frame_width - near


def box_areas(xyxy: FloatArray) -> FloatArray:
    """The area of each box (N x 4, x1 y1 x2 y2), in square pixels; 0 for a box with its corners swapped
    or no width or height."""
    return np.prod(np.clip(xyxy[:, 2:] - xyxy[:, :2], 0, None), axis=1)


def overlap_areas(box_xyxy: FloatArray, others_xyxy: FloatArray) -> FloatArray:
    """The area `box_xyxy` (4) shares with each of `others_xyxy` (N x 4), in square pixels; 0 where they
    do not overlap."""
    corner_min = np.maximum(box_xyxy[:2], others_xyxy[:, :2])
    corner_max = np.minimum(box_xyxy[2:], others_xyxy[:, 2:])
    return np.prod(np.clip(corner_max - corner_min, 0, None), axis=1)
