"""How `alpr eval` judges the reads of one image against its label and counts them per set: the read
a user would take, its overlap with the labelled plate, the cause of a miss (`Outcome`), and the
running counts with their reliability table (`Tally`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alpr.ground_truth import Sample
from common.types import PlateRead

RELIABILITY_BINS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)
"""Confidence bins of the reliability table: lower edges, the last one the upper bound."""


@dataclass
class Outcome:
    """How one image was read."""

    sample: Sample
    best: PlateRead | None
    correct: bool
    in_top_n: bool
    detected: bool | None  # None for crops

    @property
    def cause(self) -> str:
        if self.correct:
            return "right"
        if self.in_top_n:
            return "right within top-N"
        if self.detected is False or self.best is None:
            return "not detected" if self.detected is False else "nothing read"
        return "detected but misread"


@dataclass
class Tally:
    """Running counts for one dataset folder."""

    n: int = 0
    detected_iou50: int = 0
    detected_iou30: int = 0
    exact_top1: int = 0
    exact_topn: int = 0
    wrong_above_threshold: int = 0
    accepted: int = 0
    causes: dict[str, int] = field(default_factory=dict)
    bins: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in RELIABILITY_BINS[:-1]])
    seconds: dict[str, float] = field(default_factory=lambda: {"load": 0.0, "detect": 0.0, "ocr": 0.0})
    unreadable: int = 0
    """Images that could not be read: not in `n` nor any figure."""

    def add(self, outcome: Outcome, min_confidence: float) -> None:
        self.n += 1
        self.exact_top1 += outcome.correct
        self.exact_topn += outcome.in_top_n
        self.causes[outcome.cause] = self.causes.get(outcome.cause, 0) + 1
        confidence = outcome.best.confidence if outcome.best else 0.0
        accepted = outcome.best is not None and confidence >= min_confidence
        self.accepted += accepted
        self.wrong_above_threshold += accepted and not outcome.correct
        if outcome.best is not None:
            index = next(i for i, upper in enumerate(RELIABILITY_BINS[1:]) if confidence < upper)
            self.bins[index][0] += 1
            self.bins[index][1] += outcome.correct

    def as_dict(self, crops: bool) -> dict[str, Any]:
        n = max(self.n, 1)
        total = sum(self.seconds.values())
        return {
            "n": self.n,
            "detection_recall_iou50": None if crops else round(self.detected_iou50 / n, 4),
            "detection_recall_iou30": None if crops else round(self.detected_iou30 / n, 4),
            "exact_top1": round(self.exact_top1 / n, 4),
            "exact_topn": round(self.exact_topn / n, 4),
            "wrong_above_threshold": round(self.wrong_above_threshold / n, 4),
            "coverage": round(self.accepted / n, 4),
            "wrong_among_accepted": round(self.wrong_above_threshold / self.accepted, 4) if self.accepted else None,
            "accepted": self.accepted,  # the counts, for sums over sets (their rounded shares were a point off)
            "wrong_accepted": self.wrong_above_threshold,
            "causes": dict(sorted(self.causes.items())),
            "unreadable": self.unreadable,
            "reliability": [
                {
                    "confidence": f"{low:.2f}-{min(high, 1.0):.2f}",
                    "reads": count,
                    "right": right,
                    "accuracy": round(right / count, 4) if count else None,
                }
                for (low, high), (count, right) in zip(
                    zip(RELIABILITY_BINS, RELIABILITY_BINS[1:], strict=False), self.bins, strict=True
                )
            ],  # fmt: skip
            "ms_per_image": round(1000 * total / n, 2),
            "ms_per_stage": {k: round(1000 * v / n, 2) for k, v in self.seconds.items()},
        }


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


PLATE_MATCH_IOU = 0.1
"""A photo's ground truth names one plate; the reads judged against it are those whose box overlaps its
box at least this much (the benchmark's boxes are drawn tighter or looser than the detector's: one US
photo's read box meets it at 0.27). Other plates in the photo (cars behind) do not overlap it at all."""


def best_read(reads: list[PlateRead]) -> PlateRead | None:
    """The read a user would take from the image: format-matching reads first, then confidence."""
    readable = [r for r in reads if r.best is not None]
    if not readable:
        return None
    return max(readable, key=lambda r: (r.best.matches_format if r.best else False, r.confidence))
