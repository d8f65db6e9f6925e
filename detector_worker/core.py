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
    """One box for each group of nested boxes: boxes are grouped when DETECTOR_NESTED_SHARE of the
    smaller one's area lies in their overlap (judged on the boxes as found; a box nested in two groups
    joins them), and each group becomes the union of its boxes with its strongest one's confidence.
    Plates do not overlap, but the detector also marks part of a plate, or a plate with its holder,
    which NMS at IoU 0.7 keeps: read too, one plate became two tracks and one car two sightings. The
    union, not the strongest box alone, so that no part of the plate is left unblurred when that box
    is the part."""
    xyxy = detections.xyxy
    areas = np.prod(np.clip(xyxy[:, 2:] - xyxy[:, :2], 0, None), axis=1)

    def nested(a: int, b: int) -> bool:
        overlap = np.prod(np.clip(np.minimum(xyxy[a, 2:], xyxy[b, 2:]) - np.maximum(xyxy[a, :2], xyxy[b, :2]), 0, None))
        return bool(overlap >= defaults.DETECTOR_NESTED_SHARE * max(min(areas[a], areas[b]), 1e-6))

    groups: list[list[int]] = []
    for index in range(len(xyxy)):  # highest confidence first: a group's first box is its strongest
        joined = [group for group in groups if any(nested(index, member) for member in group)]
        if not joined:
            groups.append([index])
            continue
        for group in joined[1:]:
            joined[0].extend(group)
            groups.remove(group)
        joined[0].append(index)
    if len(groups) == len(xyxy):
        return detections
    unions = [np.concatenate([xyxy[group, :2].min(axis=0), xyxy[group, 2:].max(axis=0)]) for group in groups]
    confidence = detections.confidence[[min(group) for group in groups]]
    return PlateDetections(np.array(unions, dtype=xyxy.dtype).reshape(-1, 4), confidence)


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
