"""What `alpr calibrate` fits per engine and recogniser on photographs with ground truth, shipped as
data (`ocr_worker/calibration.json`): a confidence that means something (the probability that a
reading is exactly right, from a logistic model over a few features of the ranked candidates: the
reading's per-character confidence, its least sure character, its margin over the next reading,
whether it fits a plate format, its length against the region's, how far the plate's crop falls short
of the recogniser's full resolution, its odds against a look-alike the formats would allow in a
character's place), and the recogniser's format weight, which the reader (ocr_worker/core.py) applies
to the region's template penalty before ranking. Without a fit, confidences stay as the engine's and
templates count in full."""

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
from ocr_worker.ppocr_engine import INPUT_HEIGHT

FEATURES = (
    "logit_confidence", "margin", "format_match", "length_gap", "logit_weakest_character", "log_short_height",
    "look_alike_margin",
)  # fmt: skip
"""What a model may see of a candidate, in order. A model weighs those it was fitted on (calibration.json
names them), so one fitted before a feature was added goes on without it."""

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


def features(readings: Sequence[Reading], index: int, typical_length: float, height_px: float) -> list[float]:
    """The features (FEATURES, in order) of reading `index` among the ranked `readings` of a crop
    `height_px` pixels tall. A crop as tall as the recogniser's input (INPUT_HEIGHT) or taller is read at
    its full resolution: `log_short_height` is log(height / INPUT_HEIGHT) below it, 0 above. How far short
    of it a plate falls tells how much its reading guessed (`alpr eval --scale`: US photos read 98% at
    their size, 61% at a third of it)."""
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
        math.log(min(max(height_px, 1.0), INPUT_HEIGHT) / INPUT_HEIGHT),
        readings[index].look_alike_margin,
    ]


@dataclass(frozen=True)
class Calibration:
    """P(right) = sigmoid(weights . features + bias) over the features `names` (of FEATURES), and the
    format weight the fit was made with."""

    weights: tuple[float, ...]
    bias: float
    format_weight: float = 1.0
    names: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        if unknown := [name for name in self.names if name not in FEATURES]:
            raise ValueError(f"a confidence model weighs only features of {FEATURES}, not {unknown}")
        if len(self.weights) != len(self.names):
            raise ValueError(f"a confidence model weighs {len(self.names)} features, got {len(self.weights)} weights")
        object.__setattr__(self, "_columns", tuple(FEATURES.index(name) for name in self.names))

    def probability(self, x: Sequence[float]) -> float:
        """P(right) of a read whose features (all of FEATURES, in order) are `x`."""
        if len(x) != len(FEATURES):
            raise ValueError(f"a read has {len(FEATURES)} features, got {len(x)}")
        z = self.bias + sum(w * x[i] for w, i in zip(self.weights, self._columns, strict=True))  # type: ignore[attr-defined]
        return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))

    def apply(self, readings: Sequence[Reading], typical_length: float, height_px: float) -> list[PlateCandidate]:
        """The readings' candidates (of a crop `height_px` tall), in the same order, each with its
        probability of being right."""
        return [
            replace(
                r.candidate, confidence=round(self.probability(features(readings, i, typical_length, height_px)), 4)
            )
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


LEGACY_FEATURES = FEATURES[:5]
"""What a model of a file that does not name its features was fitted on (the five of earlier versions)."""


def _model(key: str, entry: dict[str, Any]) -> Calibration:
    """One engine's model, refused with what to do when it was fitted on features this version does not
    compute (one fitted on fewer of them weighs those)."""
    fitted_on = tuple(entry.get("features") or LEGACY_FEATURES)
    if not set(fitted_on) <= set(FEATURES) or len(entry["weights"]) != len(fitted_on):
        raise ConfigError(
            f"the confidence model for {key} was fitted on {list(fitted_on)} ({len(entry['weights'])} weights), "
            f"this version reads {', '.join(FEATURES)}: fit it again with `alpr calibrate`"
        )
    return Calibration(tuple(entry["weights"]), entry["bias"], float(entry.get("format_weight", 1.0)), fitted_on)


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
