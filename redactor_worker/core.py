"""The redactor core: `redact(frame, boxes)` Gaussian-blurs (or pixelates) every plate box, grown by a
margin, and leaves every other pixel untouched. Knows nothing of Redis or jobs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import cv2
import numpy as np

from common import defaults
from common.geometry import grow_box
from common.types import BoxXYXY

PIXELATE_CELLS = 4
"""Cells across the plate's shorter side when pixelating."""


def redact(
    frame: np.ndarray,
    boxes_xyxy: Iterable[BoxXYXY],
    method: Literal["blur", "pixelate"] = "blur",
    margin: float = defaults.REDACT_MARGIN,
) -> np.ndarray:
    """A copy of `frame` with each box hidden; the kernel scales with the plate's size."""
    out = frame.copy()
    for box in boxes_xyxy:
        x1, y1, x2, y2 = grow_box(box, margin, frame.shape[:2])
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        if method == "pixelate":
            height, width = region.shape[:2]
            scale = PIXELATE_CELLS / min(height, width)
            small = cv2.resize(
                region, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
            )
            out[y1:y2, x1:x2] = cv2.resize(small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST)
        else:
            # An odd kernel about half the plate's height: characters become unreadable smears.
            kernel = max(3, (min(region.shape[:2]) // 2) | 1)
            blurred = cv2.GaussianBlur(region, (kernel, kernel), 0)
            out[y1:y2, x1:x2] = cv2.GaussianBlur(blurred, (kernel, kernel), 0)
    return out
