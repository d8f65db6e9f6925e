"""The validated types that cross stages: plate detections, plate candidates, plate reads, and the
observations (reads fed to grouping) and sightings (one vehicle pass) of the sighting pool.

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


@dataclass(frozen=True)
class Observation:
    """One plate read in one frame: where (box, in pixels) and when (capture time, seconds) the plate
    was seen, the text read ("" for a plate found but not read: such a read may extend a track by its
    box but never votes) and the confidence in [0, 1], the calibrated probability the text is right."""

    camera_id: str
    frame_id: str
    plate_index: int
    captured_at_s: float
    box_xyxy: BoxXYXY
    text: str
    confidence: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], but got {self.confidence}")
        if self.plate_index < 0:
            raise ValueError(f"plate_index must be >= 0, but got {self.plate_index}")
        if len(self.box_xyxy) != 4 or self.box_xyxy[2] < self.box_xyxy[0] or self.box_xyxy[3] < self.box_xyxy[1]:
            raise ValueError(f"box_xyxy must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, but got {self.box_xyxy}")

    @property
    def center_xy(self) -> tuple[float, float]:
        """Centre of the box, in pixels."""
        x1, y1, x2, y2 = self.box_xyxy
        return (x1 + x2) / 2.0, (y1 + y2) / 2.0

    @property
    def width_px(self) -> float:
        """Width of the box, in pixels."""
        return self.box_xyxy[2] - self.box_xyxy[0]


@dataclass(frozen=True)
class Sighting:
    """One vehicle pass in front of one camera: the voted plate and its confidence in [0, 1], when the
    pass began and ended (capture times, seconds), how many reads it holds, the single best read
    (frame, box, confidence) and the distinct texts read with their counts, most common first.
    `sighting_id` is "<camera_id>:<frame_id>:<plate_index>" of the earliest read: the same reads give
    the same id, so writing a sighting twice is idempotent."""

    sighting_id: str
    camera_id: str
    plate: str
    confidence: float
    first_seen_s: float
    last_seen_s: float
    reads: int
    best_frame_id: str
    best_box_xyxy: BoxXYXY
    best_confidence: float
    texts: tuple[tuple[str, int], ...]
