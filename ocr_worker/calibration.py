"""What `alpr calibrate` fits per engine and recogniser on photographs with ground truth, shipped as
data (`ocr_worker/calibration.json`): a confidence that means something (the probability that a
reading is exactly right, from a logistic model over a few features of the ranked candidates: the
reading's per-character confidence, its least sure character, its margin over the next reading,
whether it fits a plate format, its length against the region's), and the recogniser's format
weight, which the reader (ocr_worker/core.py) applies to the region's template penalty before
ranking. Without a fit, confidences stay as the engine's and templates count in full."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ConfigError
from common.types import PlateCandidate
from ocr_worker.formats import Reading

FEATURES = ("logit_confidence", "margin", "format_match", "length_gap", "logit_weakest_character")
"""What the model sees of a candidate, in order."""

CALIBRATION_FILE = "calibration.json"
"""The fitted models, keyed by engine (`ppocr-v4`, `ppocr-v6`, `tesseract`), in this package."""

FORMAT_WEIGHTS = (1.0, 0.5, 0.2)
"""The format weights `alpr calibrate` tries, the fullest first (kept on ties). A recogniser trained
on plates has learnt their formats, and its readings fit them or not for a reason (a vanity plate, a
country the templates leave out); a general text recogniser has not, and reads O for 0 wherever
a plate's font draws them alike, which the formats put right."""

L2 = 0.01
"""Ridge penalty on the weights (not the bias): keeps a fit on a few hundred photos smooth."""


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def features(readings: Sequence[Reading], index: int, typical_length: float) -> list[float]:
    """The features of reading `index` among the ranked `readings`."""
    candidate = readings[index].candidate
    score = len(candidate.text) * math.log(min(max(candidate.confidence, 1e-4), 1 - 1e-4))
    others = [
        len(r.candidate.text) * math.log(min(max(r.candidate.confidence, 1e-4), 1.0))
        for i, r in enumerate(readings)
        if i != index
    ]
    margin = min(score - max(others), 10.0) if others else 10.0
    return [
        _logit(candidate.confidence),
        margin,
        1.0 if candidate.matches_format else 0.0,
        abs(len(candidate.text) - typical_length),
        _logit(readings[index].weakest_character),
    ]


@dataclass(frozen=True)
class Calibration:
    """P(right) = sigmoid(weights . features + bias), and the format weight the fit was made with."""

    weights: tuple[float, ...]
    bias: float
    format_weight: float = 1.0

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise ValueError(f"a confidence model weighs {len(FEATURES)} features, got {len(self.weights)} weights")

    def probability(self, x: Sequence[float]) -> float:
        z = self.bias + sum(w * v for w, v in zip(self.weights, x, strict=True))
        return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))

    def apply(self, readings: Sequence[Reading], typical_length: float) -> list[PlateCandidate]:
        """The readings' candidates, in the same order, each with its probability of being right."""
        return [
            replace(r.candidate, confidence=round(self.probability(features(readings, i, typical_length)), 4))
            for i, r in enumerate(readings)
        ]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, iterations: int = 50) -> Calibration:
        """Logistic regression by Newton's method with a ridge penalty."""
        design = np.hstack([x, np.ones((len(x), 1))])
        beta = np.zeros(design.shape[1])
        ridge = np.diag([L2 * len(x)] * x.shape[1] + [0.0])
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-np.clip(design @ beta, -30, 30)))
            gradient = design.T @ (p - y) + ridge @ beta
            hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge + 1e-9 * np.eye(len(beta))
            step = np.linalg.solve(hessian, gradient)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(tuple(round(float(w), 6) for w in beta[:-1]), round(float(beta[-1]), 6))


def calibration_path() -> Path:
    """The package's calibration file (what `alpr calibrate` writes by default)."""
    return Path(str(resources.files("ocr_worker").joinpath(CALIBRATION_FILE)))


@cache
def _entries(path: Path | None) -> dict[str, dict[str, Any]]:
    return dict(json.loads((path or calibration_path()).read_text())["models"])


def _model(key: str, entry: dict[str, Any]) -> Calibration:
    """One engine's model, refused with what to do when it was fitted on other features."""
    fitted_on = entry.get("features")
    stale = list(fitted_on) != list(FEATURES) if fitted_on else len(entry["weights"]) != len(FEATURES)
    if stale:
        raise ConfigError(
            f"the confidence model for {key} was fitted on {fitted_on or str(len(entry['weights'])) + ' features'}, "
            f"this version reads {', '.join(FEATURES)}: fit it again with `alpr calibrate`"
        )
    return Calibration(tuple(entry["weights"]), entry["bias"], float(entry.get("format_weight", 1.0)))


def load_calibrations(path: Path | None = None) -> dict[str, Calibration]:
    """Every fitted model: the package's file, or `path`."""
    return {key: _model(key, entry) for key, entry in _entries(path).items()}


def calibration_for(engine_key: str, path: Path | None = None) -> Calibration | None:
    """One engine's model in the package's file, or `path` (another engine's stale model does not
    stand in its way)."""
    try:
        entry = _entries(path).get(engine_key)
    except FileNotFoundError:
        return None
    return _model(engine_key, entry) if entry is not None else None
