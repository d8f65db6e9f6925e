"""The detector core: `PlateDetector.detect(frames) -> plates per frame`, batching, and which boxes lie
inside a region of interest (those are read; every box is redacted). Knows nothing of Redis or jobs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from common import defaults
from common.errors import ConfigError, InputError
from common.types import PlateDetections
from detector_worker.backends import BACKENDS, DetectorBackend
from detector_worker.weights import resolve_weights

Polygon = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector runs; see common/defaults.py for what each default means."""

    model_dir: Path
    weights: Path | None = None
    backend: str = defaults.DETECTOR_BACKEND
    device: str = defaults.DETECTOR_DEVICE
    imgsz: int = defaults.DETECTOR_IMGSZ
    confidence: float = defaults.DETECTOR_CONFIDENCE
    max_plates_per_frame: int = defaults.DETECTOR_MAX_PLATES_PER_FRAME
    batch_size: int = defaults.DETECTOR_BATCH_SIZE
    threads: int = 0  # 0: one per core


class PlateDetector:
    """Finds licence plates in batches of BGR frames."""

    def __init__(self, settings: DetectorSettings) -> None:
        if settings.backend not in BACKENDS:
            raise ConfigError(f"detector backend must be one of {sorted(BACKENDS)}, got {settings.backend!r}")
        weights = resolve_weights(settings.backend, settings.model_dir, settings.weights)
        threads = settings.threads or os.cpu_count() or 1
        self.settings = settings
        self.threads = threads
        self.backend: DetectorBackend = BACKENDS[settings.backend](weights, settings.device, settings.imgsz, threads)

    def detect(self, frames: Sequence[np.ndarray]) -> list[PlateDetections]:
        """Every plate in each frame, highest confidence first. A region of interest chooses which of
        them are read (`inside_roi`), never which are hidden: every box found is redacted."""
        for index, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
                shape = getattr(frame, "shape", type(frame).__name__)
                raise InputError(f"frame {index} must be an HxWx3 BGR image, but got {shape}")
        out: list[PlateDetections] = []
        step = max(1, self.settings.batch_size)
        for start in range(0, len(frames), step):
            chunk = frames[start : start + step]
            raw = self.backend.infer(chunk, self.settings.confidence, self.settings.max_plates_per_frame)
            out.extend(merge_nested(PlateDetections(xyxy, conf)) for xyxy, conf in raw)
        return out


def merge_nested(detections: PlateDetections) -> PlateDetections:
    """One box for each group of nested boxes: a box with DETECTOR_NESTED_SHARE of the smaller one's area
    in its overlap with a stronger box is merged into it (their union, the stronger's confidence). Plates
    do not overlap, but the detector also marks part of a plate, or a plate with its holder, which NMS
    at IoU 0.7 keeps: read too, one plate became two tracks and one car two sightings. The union, not
    the stronger box alone, so that no part of the plate is left unblurred when the stronger box is
    the part."""
    boxes = detections.xyxy.copy()
    kept: list[int] = []
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    for index, box in enumerate(boxes):  # highest confidence first
        for other in kept:
            overlap = np.clip(np.minimum(box[2:], boxes[other, 2:]) - np.maximum(box[:2], boxes[other, :2]), 0, None)
            if float(np.prod(overlap)) >= defaults.DETECTOR_NESTED_SHARE * max(min(areas[index], areas[other]), 1e-6):
                boxes[other] = np.concatenate(
                    [np.minimum(box[:2], boxes[other, :2]), np.maximum(box[2:], boxes[other, 2:])]
                )
                break
        else:
            kept.append(index)
    if len(kept) == len(detections):
        return detections
    return PlateDetections(boxes[kept], detections.confidence[kept])


def inside_roi(detections: PlateDetections, roi: Polygon | None) -> npt.NDArray[np.bool_]:
    """Per box: does its centre lie inside the polygon (every box, when there is none)?"""
    if roi is None or len(detections) == 0:
        return np.ones(len(detections), bool)
    contour = np.asarray(roi, np.float32).reshape(-1, 1, 2)
    centres = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in centres], bool)


def filter_by_roi(detections: PlateDetections, roi: Polygon | None) -> PlateDetections:
    """The boxes to read: those whose centre lies inside the polygon (all of them when there is none)."""
    inside = inside_roi(detections, roi)
    return PlateDetections(detections.xyxy[inside], detections.confidence[inside])
