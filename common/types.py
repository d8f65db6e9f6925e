"""The validated types that cross stages: plate detections, plate candidates and plate reads.

Coordinates are pixels in the frame they came from; `xyxy` is (x_min, y_min, x_max, y_max).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoxXYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class PlateDetections:
    """Plate boxes found in one frame, highest confidence first."""

    xyxy: FloatArray
    confidence: FloatArray

    def __post_init__(self) -> None:
        if not isinstance(self.xyxy, np.ndarray) or self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            shape = getattr(self.xyxy, "shape", type(self.xyxy).__name__)
            raise ValueError(f"xyxy must be a 2D np.ndarray with shape (_, 4), but got {shape}")
        if not isinstance(self.confidence, np.ndarray) or self.confidence.shape != (len(self.xyxy),):
            shape = getattr(self.confidence, "shape", type(self.confidence).__name__)
            raise ValueError(f"confidence must be a 1D np.ndarray with shape ({len(self.xyxy)},), but got {shape}")

    @classmethod
    def empty(cls) -> PlateDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def boxes(self) -> Iterator[tuple[BoxXYXY, float]]:
        """Each box as a plain tuple with its confidence."""
        for box, conf in zip(self.xyxy.tolist(), self.confidence.tolist(), strict=False):
            yield (box[0], box[1], box[2], box[3]), float(conf)


@dataclass(frozen=True)
class PlateCandidate:
    """One reading of a plate: text, confidence in [0, 1], and the plate format it fits, if any."""

    text: str
    confidence: float
    format_name: str | None = None

    @property
    def matches_format(self) -> bool:
        return self.format_name is not None


@dataclass(frozen=True)
class PlateRead:
    """A plate found in a frame and read: its box, the detector's confidence, candidates best first."""

    box_xyxy: BoxXYXY
    detection_confidence: float
    candidates: tuple[PlateCandidate, ...] = field(default_factory=tuple)

    @property
    def best(self) -> PlateCandidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def text(self) -> str:
        return self.best.text if self.best else ""

    @property
    def confidence(self) -> float:
        return self.best.confidence if self.best else 0.0
