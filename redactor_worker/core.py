"""The redactor core: `redact(frame, boxes)` hides every plate box, grown by a margin, and leaves every
other pixel untouched. A box is repainted from what lies around it — its border strips, blended across
the box and smoothed by a Gaussian (`blur`), or the same shown as a mosaic (`pixelate`) — so no pixel of
the plate is kept in any form: a blur or a mosaic of the plate itself can be undone by rendering
candidate texts in the plate's font, redacting them alike and keeping the one that matches (an audit
recovered every character of clean 40-pixel plates so). Knows nothing of Redis or jobs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import cv2
import numpy as np

from common import defaults
from common.geometry import grow_box
from common.types import BoxXYXY

PIXELATE_CELLS = 4
"""Cells across the box's shorter side when pixelating."""

BORDER_SEGMENTS = 8
"""Each side of the surroundings is averaged in this many segments: the fill follows the car's colour
around the plate, not a single flat patch."""

NEUTRAL = 128.0
"""The fill of a box with nothing around it (the whole frame)."""


def redact(
    frame: np.ndarray,
    boxes_xyxy: Iterable[BoxXYXY],
    method: Literal["blur", "pixelate"] = "blur",
    margin: float = defaults.REDACT_MARGIN,
    max_boxes: int = defaults.DETECTOR_MAX_PLATES_PER_FRAME,
) -> np.ndarray:
    """A copy of `frame` with each box repainted from its surroundings (module docstring); the whole
    frame repainted (a flat fill) when the boxes reach `max_boxes`, the cap of the detector that found
    them (DetectorSettings.max_plates_per_frame): it keeps the strongest only, and a car park's 120
    plates were kept with the last 20 sharp (an audit); so too when a box has a corner that is no finite
    number (NaN, infinite): it cannot be placed, so the plate could be anywhere (it raised: a review)."""
    boxes = list(boxes_xyxy)
    if len(boxes) >= max_boxes or not all(math.isfinite(value) for box in boxes for value in box):
        boxes = [(0.0, 0.0, float(frame.shape[1]), float(frame.shape[0]))]
    out = frame.copy()
    for box in boxes:
        x1, y1, x2, y2 = grow_box(box, margin, frame.shape[:2])
        if x2 <= x1 or y2 <= y1:
            continue
        grid = np.clip(np.rint(surroundings_grid(out, x1, y1, x2, y2)), 0, 255).astype(np.uint8)
        height, width = y2 - y1, x2 - x1
        if method == "pixelate":
            scale = PIXELATE_CELLS / min(height, width)
            cells = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(grid, cells, interpolation=cv2.INTER_LINEAR)
            fill = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
        else:
            fill = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
        out[y1:y2, x1:x2] = fill.reshape(out[y1:y2, x1:x2].shape)
    return out


def surroundings_grid(frame: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """A smooth (BORDER_SEGMENTS, BORDER_SEGMENTS, channels) float image of the box, made only of the
    strips just outside it: each point blends the sides above and below, and left and right, by its
    distance to them (a Coons patch over the sides' segment means), smoothed by a Gaussian; the caller
    spreads it over the box."""
    image = frame.reshape(*frame.shape[:2], -1)  # the strips are read from it, never the box
    rows, cols, channels = image.shape
    height, width = y2 - y1, x2 - x1
    band = max(2, min(height, width) // 8)
    n = BORDER_SEGMENTS

    def segments(strip: np.ndarray, axis: int) -> np.ndarray | None:
        """The strip's mean along `axis`, in n segments (n, channels); None for an empty strip."""
        if strip.size == 0:
            return None
        line = strip.mean(axis=axis, dtype=np.float32)  # (length, channels)
        return cv2.resize(line[None], (n, 1), interpolation=cv2.INTER_AREA).reshape(n, channels)

    top = segments(image[max(0, y1 - band) : y1, x1:x2], 0)
    bottom = segments(image[y2 : min(rows, y2 + band), x1:x2], 0)
    left = segments(image[y1:y2, max(0, x1 - band) : x1], 1)
    right = segments(image[y1:y2, x2 : min(cols, x2 + band)], 1)
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None, None]  # down the grid
    s = np.linspace(0.0, 1.0, n, dtype=np.float32)[None, :, None]  # across the grid
    estimates = []
    if top is not None or bottom is not None:
        above = top if top is not None else bottom
        below = bottom if bottom is not None else top
        estimates.append((1 - t) * above[None] + t * below[None])  # type: ignore[index]
    if left is not None or right is not None:
        west = left if left is not None else right
        east = right if right is not None else left
        estimates.append((1 - s) * west[:, None] + s * east[:, None])  # type: ignore[index]
    grid = sum(estimates) / len(estimates) if estimates else np.full((n, n, channels), NEUTRAL, np.float32)
    return cv2.GaussianBlur(np.ascontiguousarray(grid, np.float32), (3, 3), 0).reshape(n, n, channels)
