"""A camera's region of interest against the frames it is drawn on. The ROI's points are pixels of the
camera's frames; one drawn for another resolution (a 1920x1080 ROI copied to a 1280x720 camera) or with x
and y swapped may lie wholly outside them, and the camera then reads no plate: no error, and nothing that
tells it from an empty road (a review). `RoiWatch` warns of it once per camera and frame size, for the
ingest node and `alpr run` alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from common import defaults

Polygon = Sequence[tuple[float, float]]
"""A polygon's points (x, y), in pixels of the frame."""


def polygon_area(points: Polygon) -> float:
    """The area a polygon encloses (the shoelace formula), in square pixels."""
    closed = zip(points, [*points[1:], *points[:1]], strict=True)
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in closed)) / 2


def clip_to_frame(points: Polygon, frame_wh: tuple[int, int]) -> list[tuple[float, float]]:
    """The polygon cut to a frame of `frame_wh` (width, height) pixels: Sutherland-Hodgman against each of
    the frame's four sides. A concave polygon may come out with edges along a side that enclose nothing;
    its area is the area within the frame all the same."""
    width, height = frame_wh
    sides = [(0, 0.0, True), (0, float(width), False), (1, 0.0, True), (1, float(height), False)]
    result = [(float(x), float(y)) for x, y in points]
    for axis, bound, is_min in sides:
        if not result:
            break

        def inside(point: tuple[float, float], axis: int = axis, bound: float = bound, is_min: bool = is_min) -> bool:
            return point[axis] >= bound if is_min else point[axis] <= bound

        kept: list[tuple[float, float]] = []
        for index, current in enumerate(result):
            previous = result[index - 1]
            if inside(current) != inside(previous):  # the edge crosses the side: where it does
                share = (bound - previous[axis]) / (current[axis] - previous[axis])
                kept.append((previous[0] + share * (current[0] - previous[0]),
                             previous[1] + share * (current[1] - previous[1])))  # fmt: skip
            if inside(current):
                kept.append(current)
        result = kept
    return result


def share_in_frame(roi: Polygon, frame_wh: tuple[int, int]) -> float:
    """The share (0 to 1) of the ROI's area that lies within a frame of `frame_wh` (width, height) pixels;
    0 for a polygon that encloses no area (`alpr run --roi` takes one: it reads nothing)."""
    whole = polygon_area(roi)
    if whole == 0:
        return 0.0
    return min(1.0, polygon_area(clip_to_frame(roi, frame_wh)) / whole)


class RoiWatch:
    """Checks each camera's ROI against its frames' size, once per camera and size (a camera whose
    resolution is changed is checked again), and warns on `logger` when less than
    ROI_MIN_SHARE_IN_FRAME of the ROI lies within the frame: only plates whose box's centre lies in the
    ROI are read (every one is blurred)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.checked: dict[str, tuple[int, int]] = {}
        """Each camera's frame size its ROI was last checked against."""

    def check(self, camera_id: str, roi: Polygon | None, frame_wh: tuple[int, int]) -> None:
        if roi is None or self.checked.get(camera_id) == frame_wh:
            return
        self.checked[camera_id] = frame_wh
        share = share_in_frame(roi, frame_wh)
        if share >= defaults.ROI_MIN_SHARE_IN_FRAME:
            return
        width, height = frame_wh
        where = "covers none of" if share == 0 else f"lies mostly outside ({share:.0%} of its area within)"
        self.logger.warning(
            "camera %s: its ROI %s its %dx%d frames: plates outside it are blurred but never read (its points"
            " are pixels of these frames: drawn for another resolution, or x and y swapped?)",
            camera_id, where, width, height,
        )  # fmt: skip
