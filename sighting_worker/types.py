"""The sighting pool's two types: `Observation`, one plate read fed to grouping, and `Sighting`, the
event grouping emits once a vehicle has left a camera's view. Validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from common.types import BoxXYXY


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
