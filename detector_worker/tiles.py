"""Tiled detection of frames far larger than the detector's input: where the whole frame would be shrunk
more than a set factor to fit the detector (a 3840-wide frame four times, at 960), small plates in it
fall below what the detector finds, and a plate not found is a plate not blurred. Such a frame is also
searched in overlapping tiles, each shrunk at most that factor, and the boxes of all views are merged in
the frame's pixels. Pure functions on numpy arrays and window coordinates."""

from __future__ import annotations

import math

import cv2
import numpy as np

from common.geometry import box_areas, overlap_areas
from common.types import FloatArray
from detector_worker.backends import NMS_IOU

Window = tuple[int, int, int, int]
"""A view of a frame: x0, y0, x1, y1 in the frame's pixels (x1, y1 exclusive)."""

TILE_OVERLAP = 0.1
"""Neighbouring tiles share this share of the largest tile side: a plate small enough to be missed on
the whole frame (under ~100 px at 4K) lies whole in one of them."""

CUT_MARGIN_PX = 2.0
"""A tile's box within this many pixels of an edge it shares with a neighbour is cut by it."""

CUT_COVERED_SHARE = 0.3
"""A cut box with this share of its area inside a box not cut is a piece of that plate: dropped. A piece
is boxed loosely (a piece of 36 px by 78 px beside its plate's 91 by 51: 55% inside), and plates do not
overlap."""


def tile_windows(height: int, width: int, imgsz: int, max_downscale: float) -> list[Window]:
    """The overlapping tiles of a frame the detector would shrink more than `max_downscale` (its longer
    side over imgsz x max_downscale), each at most imgsz x max_downscale on a side, of equal size, covering
    the frame; none for a frame small enough, or with `max_downscale` 0 (never tiled)."""
    limit = imgsz * max_downscale
    if max_downscale <= 0 or max(height, width) <= limit:
        return []
    overlap = round(TILE_OVERLAP * limit)
    cols = max(1, math.ceil((width - overlap) / (limit - overlap)))
    rows = max(1, math.ceil((height - overlap) / (limit - overlap)))
    tile_w = min(width, math.ceil((width + (cols - 1) * overlap) / cols))
    tile_h = min(height, math.ceil((height + (rows - 1) * overlap) / rows))
    xs = [round(i * (width - tile_w) / (cols - 1)) if cols > 1 else 0 for i in range(cols)]
    ys = [round(j * (height - tile_h) / (rows - 1)) if rows > 1 else 0 for j in range(rows)]
    return [(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]


ViewBoxes = tuple[FloatArray, FloatArray, np.ndarray]
"""One view's boxes in the frame's pixels (xyxy), their confidences, and whether a tile's edge cut each."""


def in_frame(xyxy: FloatArray, confidence: FloatArray, tile: Window | None, frame_hw: tuple[int, ...]) -> ViewBoxes:
    """A view's boxes (in its own pixels) in the frame's, each marked when a tile's inner edge cuts it."""
    if tile is None:
        return xyxy, confidence, np.zeros(len(xyxy), bool)
    moved = (xyxy + np.array([tile[0], tile[1], tile[0], tile[1]], np.float32)).astype(np.float32)
    return moved, confidence, cut_by_tile_edge(moved, tile, frame_hw[0], frame_hw[1])


def view_of(frame: np.ndarray, tile: Window | None) -> np.ndarray:
    """The frame itself (no tile), or the tile's pixels of it (a view, not a copy)."""
    return frame if tile is None else frame[tile[1] : tile[3], tile[0] : tile[2]]


def cut_by_tile_edge(xyxy: FloatArray, window: Window, height: int, width: int) -> np.ndarray:
    """Per box of a tile (frame pixels): does it touch an edge of the tile that lies inside the frame
    (where the tile cut the plate, a neighbour holding the rest)?"""
    x0, y0, x1, y1 = window
    cut = np.zeros(len(xyxy), bool)
    for edge, inner, column in ((x0, x0 > 0, 0), (y0, y0 > 0, 1)):
        if inner:
            cut |= xyxy[:, column] <= edge + CUT_MARGIN_PX
    for edge, inner, column in ((x1, x1 < width, 2), (y1, y1 < height, 3)):
        if inner:
            cut |= xyxy[:, column] >= edge - CUT_MARGIN_PX
    return cut


def merge_views(views: list[ViewBoxes], max_det: int) -> tuple[FloatArray, FloatArray]:
    """The boxes of all views of one frame (each: xyxy in frame pixels, confidences, cut-by-a-tile flags)
    as one frame's, highest confidence first, at most `max_det`. A cut box lying in part (CUT_COVERED_SHARE
    of it) inside a box that is not cut is dropped: that box covers the plate whole. The other cut boxes
    stay, for the blur, those of different tiles that overlap joined (`joined_pieces`). Boxes of one
    plate from two views (IoU above NMS_IOU, as within one) keep the stronger."""
    xyxy = np.concatenate([v[0] for v in views]).astype(np.float32).reshape(-1, 4)
    confidence = np.concatenate([v[1] for v in views]).astype(np.float32)
    cut = np.concatenate([v[2] for v in views]).astype(bool)
    view = np.repeat(np.arange(len(views)), [len(v[0]) for v in views])
    whole, areas = xyxy[~cut], box_areas(xyxy)
    pieces = [
        i
        for i in np.flatnonzero(cut)
        if overlap_areas(xyxy[i], whole).max(initial=0) < CUT_COVERED_SHARE * max(float(areas[i]), 1e-6)
    ]
    joined, joined_confidence = joined_pieces(xyxy[pieces], confidence[pieces], view[pieces])
    xyxy = np.concatenate([whole, joined]).reshape(-1, 4)
    confidence = np.concatenate([confidence[~cut], joined_confidence])
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), confidence.tolist(), 0.0, NMS_IOU) if len(xyxy) else []
    chosen = np.asarray(kept, dtype=np.int64).reshape(-1)
    chosen = chosen[np.argsort(-confidence[chosen], kind="stable")][:max_det]
    return xyxy[chosen], confidence[chosen]


def joined_pieces(xyxy: FloatArray, confidence: FloatArray, view: np.ndarray) -> tuple[FloatArray, FloatArray]:
    """Cut boxes of different tiles (`view`: each box's) that overlap, joined into the box around them at
    the strongest one's confidence: the pieces of a plate wider than the tiles' overlap, each tile holding
    one up to its edge, both reaching into the shared band. Pieces of one tile are never joined to each
    other (two plates stacked, each cut by the same edge, their loose boxes touching: joined, the pair was
    then dropped as covered by the one plate the next tile held whole). One pass over the pairs, groups
    by union-find."""
    parent = list(range(len(xyxy)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    meets = (np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:]) > np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])).all(2)
    for a, b in np.argwhere(np.triu(meets & (view[:, None] != view[None, :]), 1)):
        parent[root(int(a))] = root(int(b))
    groups: dict[int, list[int]] = {}
    for index in range(len(xyxy)):
        groups.setdefault(root(index), []).append(index)
    boxes = [np.concatenate([xyxy[g, :2].min(axis=0), xyxy[g, 2:].max(axis=0)]) for g in groups.values()]
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(
        [confidence[g].max() for g in groups.values()], np.float32
    )
