"""The detector core: `PlateDetector.detect(frames) -> plates per frame`, batching, and which boxes lie
inside a region of interest (those are read; every box is redacted). Knows nothing of Redis or jobs."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from common import defaults
from common.errors import ConfigError, InputError
from common.geometry import box_areas, overlap_areas
from common.roi import Polygon
from common.types import PlateDetections
from detector_worker.backends import BACKENDS, DetectorBackend
from detector_worker.tiles import ViewBoxes, Window, in_frame, merge_views, tile_windows, view_of
from detector_worker.weights import resolve_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector runs; see common/defaults_reading.py for what each default means."""

    model_dir: Path
    weights: Path | None = None
    backend: str = defaults.DETECTOR_BACKEND
    device: str = defaults.DETECTOR_DEVICE
    half: bool = defaults.DETECTOR_HALF  # FP16, torch backend on CUDA only
    imgsz: int = defaults.DETECTOR_IMGSZ
    confidence: float = defaults.DETECTOR_CONFIDENCE
    max_plates_per_frame: int = defaults.DETECTOR_MAX_PLATES_PER_FRAME
    batch_size: int = defaults.DETECTOR_BATCH_SIZE
    threads: int = 0  # 0: one per core
    max_downscale: float = defaults.DETECTOR_MAX_DOWNSCALE


class PlateDetector:
    """Finds licence plates in batches of BGR frames."""

    def __init__(self, settings: DetectorSettings) -> None:
        if settings.backend not in BACKENDS:
            raise ConfigError(f"detector backend must be one of {sorted(BACKENDS)}, got {settings.backend!r}")
        weights = resolve_weights(settings.backend, settings.model_dir, settings.weights)
        threads = settings.threads or os.cpu_count() or 1
        self.settings = settings
        self.threads = threads
        backend = BACKENDS[settings.backend]
        self.backend: DetectorBackend = backend(weights, settings.device, settings.imgsz, threads, settings.half)
        self.told_of_tiles = False
        self.floor = min(settings.confidence, defaults.DETECTOR_REDACT_CONFIDENCE)
        """The confidence boxes are found down to: every one is blurred, those at `settings.confidence` or
        above read (`select_reads`)."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[PlateDetections]:
        """Every plate in each frame down to the blurring floor (`floor`), highest confidence first. The read
        threshold, a region of interest and nesting choose which of them are read (`select_reads`), never
        which are hidden: every box found is redacted. A frame
        the detector would shrink more than `max_downscale` is also searched in overlapping tiles
        (detector_worker/tiles.py); the whole frame and its tiles go through the batches as frames do."""
        for index, frame in enumerate(frames):
            if (
                not isinstance(frame, np.ndarray)
                or frame.ndim != 3
                or frame.shape[2] != 3
                or frame.size == 0
                or frame.dtype != np.uint8
            ):  # fmt: skip  (a 16-bit frame was wrapped into 8 bits, unsaid)
                shape = getattr(frame, "shape", type(frame).__name__)
                raise InputError(
                    f"frame {index} must be an HxWx3 8-bit BGR image, but got {shape} {getattr(frame, 'dtype', '')}"
                )
        views: list[tuple[int, Window | None]] = []  # (frame, tile): the whole frame, then its tiles
        for index, frame in enumerate(frames):
            height, width = frame.shape[:2]
            tiles = tile_windows(height, width, self.settings.imgsz, self.settings.max_downscale)
            if tiles and not self.told_of_tiles:
                self.told_of_tiles = True
                log.info("frames of %dx%d are also searched in %d tiles (ALPR_DETECTOR_MAX_DOWNSCALE %g)",
                         width, height, len(tiles), self.settings.max_downscale)  # fmt: skip
            views += [(index, None), *((index, tile) for tile in tiles)]
        found: list[list[ViewBoxes]] = [[] for _ in frames]
        step = max(1, self.settings.batch_size)
        for start in range(0, len(views), step):
            chunk = views[start : start + step]
            images = [view_of(frames[index], tile) for index, tile in chunk]
            raw = self.backend.infer(images, self.floor, self.settings.max_plates_per_frame)
            for (index, tile), (xyxy, confidence) in zip(chunk, raw, strict=True):
                found[index].append(in_frame(xyxy, confidence, tile, frames[index].shape[:2]))
        limit = self.settings.max_plates_per_frame
        return [PlateDetections(*(seen[0][:2] if len(seen) == 1 else merge_views(seen, limit))) for seen in found]


def nested_in_stronger(detections: PlateDetections) -> npt.NDArray[np.bool_]:
    """Per box: does DETECTOR_NESTED_SHARE of the smaller one's area lie in its overlap with a stronger
    box? Plates do not overlap, but the detector also marks part of a plate, or a plate with its holder,
    which NMS at IoU 0.7 keeps: read too, one plate became two tracks and one car two sightings. Such a
    box is blurred, never read (`select_reads`): the stronger box may be the part."""
    xyxy = detections.xyxy
    areas = box_areas(xyxy)
    nested = np.zeros(len(xyxy), bool)
    for index in range(1, len(xyxy)):  # highest confidence first
        overlaps = overlap_areas(xyxy[index], xyxy[:index])
        smaller = np.maximum(np.minimum(areas[index], areas[:index]), 1e-6)
        nested[index] = bool((overlaps >= defaults.DETECTOR_NESTED_SHARE * smaller).any())
    return nested


@dataclass(frozen=True)
class ReadSelection:
    """Which of a frame's boxes are read (`select_reads`), per box in the detections' order. Every box,
    read or not, is blurred."""

    in_roi: npt.NDArray[np.bool_]
    """Its centre lies inside the ROI (every box, when there is none)."""
    read: npt.NDArray[np.bool_]
    """It is read: sure enough, in the ROI and not nested in a stronger box."""
    outside_roi: int
    """How many boxes sure enough to read lie outside the ROI, not nested in a stronger box: the plates the
    ROI misses (alpr_plates_outside_roi_total in the chain, RunSummary in `alpr run`)."""


def select_reads(detections: PlateDetections, roi: Polygon | None, min_confidence: float = 0.0) -> ReadSelection:
    """The one rule of both pipelines for which boxes are read: a box of at least `min_confidence` (the
    operator's ALPR_DETECTOR_CONFIDENCE; the detector finds boxes down to the blurring floor, and blurs
    them all) whose centre lies inside the ROI and that is not nested in a stronger box
    (`nested_in_stronger`). Each test runs once a frame."""
    inside, whole = inside_roi(detections, roi), ~nested_in_stronger(detections)
    whole &= detections.confidence >= min_confidence
    return ReadSelection(in_roi=inside, read=inside & whole, outside_roi=int((~inside & whole).sum()))


def inside_roi(detections: PlateDetections, roi: Polygon | None) -> npt.NDArray[np.bool_]:
    """Per box: does its centre lie inside the polygon (every box, when there is none)?"""
    if roi is None or len(detections) == 0:
        return np.ones(len(detections), bool)
    contour = np.asarray(roi, np.float32).reshape(-1, 1, 2)
    centres = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in centres], bool)


def boxes_to_read(detections: PlateDetections, roi: Polygon | None, min_confidence: float = 0.0) -> PlateDetections:
    """The boxes to read (`select_reads`): of at least `min_confidence`, inside the polygon (all, when there
    is none), none nested in a stronger box."""
    read = select_reads(detections, roi, min_confidence).read
    return PlateDetections(detections.xyxy[read], detections.confidence[read])
