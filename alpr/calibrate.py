"""`alpr calibrate`: fits the confidence model of the configured OCR engine (ocr_worker/calibration.py)
on photographs with ground truth: first its format weight (each of FORMAT_WEIGHTS read in full, the one
with the most exact reads kept), then the logistic model on the reads at that weight. Reports how it
generalises by cross-validation (folds by image), and writes it into the calibration file, keeping the
other engines' models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from alpr.evaluation import Outcome, dataset_folders, evaluate
from common.config import Settings
from common.types import PlateCandidate
from ocr_worker.calibration import FEATURES, FORMAT_WEIGHTS, Calibration, features
from ocr_worker.core import OcrSettings, PlateReader
from ocr_worker.formats import Reading

FOLDS = 5
"""Cross-validation folds."""

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)
"""Confidence thresholds the cross-validation reports, beside the configured one."""


Recorded = dict[int, tuple[PlateCandidate, list[float]]]
"""The features of each crop's top reading, by the id of the candidate object returned for it (kept
alongside, so the id stays its own)."""


class FeatureRecorder(PlateReader):
    """An uncalibrated reader that records the features of each crop's top reading, to find them again
    by candidate once evaluate has picked one read per image among the detector's boxes."""

    def __init__(self, settings: OcrSettings, recorded: Recorded) -> None:
        super().__init__(settings)
        self.recorded = recorded

    def finish(self, readings: list[Reading]) -> list[PlateCandidate]:
        candidates = super().finish(readings)
        if candidates:
            self.recorded[id(candidates[0])] = (candidates[0], features(readings, 0, self.formats.typical_length))
        return candidates


def features_of(recorded: Recorded, candidate: PlateCandidate) -> list[float]:
    """The recorded features of the reading `candidate` came from."""
    kept, row = recorded[id(candidate)]
    if kept is not candidate:
        raise LookupError(f"no features were recorded for {candidate!r}")
    return row


def collect(roots: list[Path], settings: Settings, format_weight: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features and exactness of the best read of every image that has one, with its set's name, the
    region's formats counting by `format_weight`."""
    from alpr.wiring import build_detector, ocr_settings

    recorded: Recorded = {}

    def raw_reader(s: Settings, region: str) -> PlateReader:
        return FeatureRecorder(ocr_settings(s, region, False, format_weight), recorded)

    rows, labels, sets = [], [], []
    for root in roots:
        outcomes: dict[str, list[Outcome]] = {}
        evaluate(root, settings, build_detector, raw_reader, outcomes)
        for name, items in outcomes.items():
            for outcome in items:
                if outcome.best is None or not outcome.best.candidates:
                    continue
                rows.append(features_of(recorded, outcome.best.candidates[0]))
                labels.append(1.0 if outcome.correct else 0.0)
                sets.append(name)
    return np.asarray(rows, float), np.asarray(labels, float), sets


def cross_validate(
    x: np.ndarray, y: np.ndarray, sets: list[str], thresholds: list[float]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per threshold and set: coverage and wrong among accepted, each image scored by a model fitted
    without its fold."""
    folds = np.arange(len(y)) % FOLDS
    scores = np.zeros(len(y))
    for fold in range(FOLDS):
        model = Calibration.fit(x[folds != fold], y[folds != fold])
        scores[folds == fold] = [model.probability(row) for row in x[folds == fold]]
    report: dict[str, dict[str, dict[str, float]]] = {}
    for threshold in sorted(set(thresholds)):
        rows = report.setdefault(f"{threshold:g}", {})
        for name in sorted(set(sets)):
            mask = np.asarray([s == name for s in sets])
            accepted = mask & (scores >= threshold)
            rows[name] = {
                "reads": int(mask.sum()),
                "coverage_of_reads": round(float(accepted.sum() / max(mask.sum(), 1)), 4),
                "wrong_among_accepted": round(float((accepted & (y == 0)).sum() / max(accepted.sum(), 1)), 4),
            }
    return report


def choose_format_weight(exact_reads: dict[float, int]) -> float:
    """The format weight with the most exact reads; of those that tie, the fullest (a lighter weight
    must earn its place)."""
    return max(exact_reads, key=lambda weight: (exact_reads[weight], weight))


def calibrate(roots: list[Path], settings: Settings, out: Path) -> dict[str, Any]:
    for root in roots:
        dataset_folders(root)  # a clear error before minutes of work
    collected = {weight: collect(roots, settings, weight) for weight in FORMAT_WEIGHTS}
    exact = {weight: int(labels.sum()) for weight, (_, labels, _) in collected.items()}
    weight = choose_format_weight(exact)
    x, y, sets = collected[weight]
    model = replace(Calibration.fit(x, y), format_weight=weight)
    from alpr.wiring import ocr_settings

    key = ocr_settings(settings).engine_key
    existing = json.loads(out.read_text()) if out.is_file() else {"models": {}}
    existing.pop("features", None)  # once for the whole file; now each model says what it was fitted on
    existing["models"][key] = {
        "features": list(FEATURES),
        "weights": list(model.weights),
        "bias": model.bias,
        "format_weight": model.format_weight,
        "exact_reads_by_format_weight": {f"{w:g}": n for w, n in exact.items()},
        "fitted_on": sorted({str(r) for r in roots}),
        "images": int(len(y)),
        "cross_validation": cross_validate(x, y, sets, [*THRESHOLDS, settings.ocr_min_confidence]),
    }
    out.write_text(json.dumps(existing, indent=1) + "\n")
    return dict(existing["models"][key])
