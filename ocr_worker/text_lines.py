"""Finding the characters inside a detector's box, so the recogniser reads the registration and not the
car around it, the frame, the state name or the slogan. First the crop is searched for a level row of
character-shaped blobs (ocr_worker/preprocess.text_rows: fast and exact when the characters stand
free); where none is found (characters touching a frame, a loose box with car body around, a tilted
plate), a learned text detector (PP-OCRv4's DB model, shipped in rapidocr-onnxruntime) marks the lines
of text, the registration is the tallest line, and each line is rectified (its rotated box warped
flat). Either way a two-row plate gives both rows, top first, put side by side, so the recogniser
reads one line. Pure functions on numpy images, plus the ONNX session that holds the detector."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ocr_worker import preprocess
from ocr_worker.ppocr_engine import INPUT_HEIGHT, cpu_session, packaged_model

ROW_SEARCH_HEIGHT = 100
"""Crops are scaled to this height while looking for rows of characters."""

SEARCH_HEIGHT = 128
"""Crops are scaled to this height (widths to a multiple of 32) before the text detector sees them. At
64 the detector broke a plate's large characters into pieces (HGX | 212) or missed them and marked the
small state name or slogan instead; at 128 it marks the registration whole (crops 96.8% -> 98.1%)."""

MAX_SEARCH_WIDTH = 1024
"""Wider search inputs are squeezed (plates are at most a few times wider than tall)."""

PIXEL_THRESHOLD = 0.3
"""A pixel is text when the detector's probability is above this (DB's usual value)."""

LINE_THRESHOLD = 0.5
"""A line is kept when its mean text probability is above this."""

UNCLIP_RATIO = 1.6
"""DB marks a shrunk core of each line: it is grown by area x ratio / perimeter on every side."""

SIDE_MARGIN = 0.3
"""Each rectified line is widened by this share of its height at both ends: the recogniser copes
with a little background far better than with a lost end character."""

SEARCH_PADDING = 0.15
"""Crops are framed by this share of their height (edge pixels repeated) before the search, so
characters at a tight crop's edge have the context the detector expects."""

DETECTOR_FILE = ("rapidocr_onnxruntime", "rapidocr-onnxruntime", "ch_PP-OCRv4_det_infer.onnx")
"""The text detector: package, how to install it, file in its models/ folder."""

MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class TextLine:
    """One line of text in a crop: its four corners (crop pixels, clockwise from top-left), its height
    in pixels and the detector's mean probability over it."""

    corners: np.ndarray
    height: float
    score: float

    @property
    def centre(self) -> tuple[float, float]:
        x, y = self.corners.mean(axis=0)
        return float(x), float(y)


def _ordered(points: np.ndarray) -> np.ndarray:
    """A rectangle's four corners (in order around it) as top-left, top-right, bottom-right,
    bottom-left, taken along its long side: sorting them by y alone mixed the sides once a line was
    tilted more than its height over its width (20 degrees for a plate's line), and the line, taken
    for an upright one, was dropped. A rectangle whose long side is nearer upright keeps the order by y
    (lines_from_map drops it: no plate's text)."""
    corners = points.astype(np.float32)
    along = max(corners[1] - corners[0], corners[2] - corners[1], key=lambda edge: float(np.hypot(*edge)))
    if abs(along[1]) > abs(along[0]):
        by_y = corners[np.argsort(corners[:, 1])]
        top, bottom = by_y[:2][np.argsort(by_y[:2, 0])], by_y[2:][np.argsort(by_y[2:, 0])]
        return np.array([top[0], top[1], bottom[1], bottom[0]], np.float32)
    along = along if along[0] >= 0 else -along
    down = np.array([-along[1], along[0]], np.float32)
    down = down if down[1] >= 0 else -down
    offsets = corners - corners.mean(axis=0)
    by_down = np.argsort(offsets @ down, kind="stable")
    upper, lower = by_down[:2], by_down[2:]
    upper, lower = upper[np.argsort(offsets[upper] @ along)], lower[np.argsort(offsets[lower] @ along)]
    return np.array([corners[upper[0]], corners[upper[1]], corners[lower[1]], corners[lower[0]]], np.float32)


def lines_from_map(probability: np.ndarray, scale_x: float, scale_y: float) -> list[TextLine]:
    """The text lines of one probability map, in the crop's pixels (map pixels times the scales)."""
    mask = (probability > PIXEL_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    lines = []
    for contour in contours:
        if len(contour) < 3 or cv2.contourArea(contour) < 4:
            continue
        filled = np.zeros_like(mask)
        cv2.drawContours(filled, [contour], -1, 1, thickness=-1)
        score = float(probability[filled > 0].mean())
        if score < LINE_THRESHOLD:
            continue
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        grow = cv2.contourArea(contour) * UNCLIP_RATIO / max(cv2.arcLength(contour, True), 1e-6)
        corners = cv2.boxPoints(((cx, cy), (w + 2 * grow, h + 2 * grow), angle))
        corners = _ordered(corners * np.array([scale_x, scale_y], np.float32))
        height = float(np.linalg.norm(corners[3] - corners[0]) + np.linalg.norm(corners[2] - corners[1])) / 2
        width = float(np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[2] - corners[3])) / 2
        if width < height * 0.8:  # a lone mark, or a line turned upright: not a plate's text
            continue
        lines.append(TextLine(corners, height, score))
    return lines


def plate_rows(lines: Sequence[TextLine]) -> list[TextLine]:
    """The registration's rows in reading order: the tallest line, and a second row stacked with it
    (at least preprocess.SECOND_ROW_HEIGHT of its height, overlapping half the narrower line's width)
    when the plate has two, top first. Empty when there is no line."""
    if not lines:
        return []
    main = max(lines, key=lambda line: line.height)
    rows = [main]
    x1, x2 = main.corners[:, 0].min(), main.corners[:, 0].max()
    for line in lines:
        if line is main or line.height < preprocess.SECOND_ROW_HEIGHT * main.height:
            continue
        lx1, lx2 = line.corners[:, 0].min(), line.corners[:, 0].max()
        overlap = min(x2, lx2) - max(x1, lx1)
        stacked = abs(line.centre[1] - main.centre[1]) >= 0.6 * (line.height + main.height) / 2
        if stacked and overlap >= 0.5 * min(x2 - x1, lx2 - lx1):
            rows.append(line)
            break
    return sorted(rows, key=lambda line: line.centre[1])


def rectified(crop: np.ndarray, line: TextLine) -> np.ndarray:
    """The line cut out of the crop and warped flat, as tall as the recogniser's input (INPUT_HEIGHT)."""
    corners = line.corners.copy()
    along = (corners[1] - corners[0]) / max(float(np.linalg.norm(corners[1] - corners[0])), 1e-6)
    extend = along * SIDE_MARGIN * line.height
    corners[[0, 3]] -= extend
    corners[[1, 2]] += extend
    width = (np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[2] - corners[3])) / 2
    out_w = max(1, int(round(width * INPUT_HEIGHT / max(line.height, 1.0))))
    target = np.array([[0, 0], [out_w, 0], [out_w, INPUT_HEIGHT], [0, INPUT_HEIGHT]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(crop, matrix, (out_w, INPUT_HEIGHT), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def joined(pieces: Sequence[np.ndarray]) -> np.ndarray:
    """Rows side by side, a short gap between them, as one line to read."""
    if len(pieces) == 1:
        return pieces[0]
    pieces = [preprocess.upscale_to_height(piece, INPUT_HEIGHT) for piece in pieces]
    gap = np.repeat(pieces[0][:, -1:], INPUT_HEIGHT // 4, axis=1)
    out = [pieces[0]]
    for piece in pieces[1:]:
        out += [gap, piece]
    return np.hstack(out)


def _framed(crop: np.ndarray) -> np.ndarray:
    pad = max(1, round(SEARCH_PADDING * crop.shape[0]))
    return cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


class TextLineFinder:
    """Runs the text detector on a batch of plate crops and cuts out each crop's plate rows."""

    def __init__(self, threads: int = 1) -> None:
        self.session = cpu_session(packaged_model(*DETECTOR_FILE, "PP-OCRv4 text detector"), threads)
        self.input_name = self.session.get_inputs()[0].name

    def lines(self, crops_bgr: Sequence[np.ndarray]) -> list[list[TextLine]]:
        """Every text line of every crop: one detector call per search width among the crops. Never
        padded to a wider neighbour's width: the detector's map near the padding changed, and a plate
        read differently with another car's plate in the same batch (5 of 20 texts, an audit's test)."""
        widths = [min(MAX_SEARCH_WIDTH, max(32, 32 * round(SEARCH_HEIGHT * c.shape[1] / c.shape[0] / 32)))
                  for c in crops_bgr]  # fmt: skip
        found: list[list[TextLine]] = [[] for _ in crops_bgr]
        for width in sorted(set(widths)):
            group = [i for i, w in enumerate(widths) if w == width]
            batch = np.zeros((len(group), 3, SEARCH_HEIGHT, width), np.float32)
            for slot, index in enumerate(group):
                crop = crops_bgr[index]
                image = crop if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
                resized = cv2.resize(image, (width, SEARCH_HEIGHT)).astype(np.float32) / 255.0
                batch[slot] = ((resized - MEAN) / STD).transpose(2, 0, 1)
            maps = self.session.run(None, {self.input_name: batch})[0][:, 0]
            for slot, index in enumerate(group):
                crop = crops_bgr[index]
                found[index] = lines_from_map(maps[slot], crop.shape[1] / width, crop.shape[0] / SEARCH_HEIGHT)
        return found

    def plate_text(self, crops_bgr: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Each crop's plate rows, rectified and joined into one line; None where no text was found."""
        out: list[np.ndarray | None] = []
        framed = [_framed(crop) for crop in crops_bgr]
        for crop, lines in zip(framed, self.lines(framed), strict=True):
            rows = plate_rows(lines)
            out.append(joined([rectified(crop, row) for row in rows]) if rows else None)
        return out


def character_rows(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop scaled for the search, and its rows of free-standing characters joined into one line
    (None when there is no such row)."""
    image = preprocess.upscale_to_height(crop, ROW_SEARCH_HEIGHT)
    bands = preprocess.text_rows(preprocess.to_gray(image))
    if not bands:
        return image, None
    return image, joined([image[y1:y2, x1:x2] for x1, y1, x2, y2 in bands])


class PlateTextLocator:
    """Each crop's registration as one line to read: rows of characters where they stand free, else
    the text detector's lines, else the whole crop."""

    def __init__(self, threads: int = 1) -> None:
        self.finder = TextLineFinder(threads)

    def locate(self, crops_bgr: Sequence[np.ndarray]) -> list[np.ndarray]:
        found = [character_rows(crop) for crop in crops_bgr]
        missing = [i for i, (_, line) in enumerate(found) if line is None]
        detected = dict(zip(missing, self.finder.plate_text([crops_bgr[i] for i in missing]), strict=True))
        out = []
        for index, (scaled, line) in enumerate(found):
            fallback = detected.get(index)
            out.append(line if line is not None else fallback if fallback is not None else scaled)
        return out
