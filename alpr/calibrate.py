"""`alpr calibrate`: fits the confidence model of the configured OCR engine (ocr_worker/calibration.py)
on photographs with ground truth: first its format weight (each of FORMAT_WEIGHTS read in full, the one
with the most exact reads kept), then the logistic model on the reads at that weight. The reads are
every image's by the configured recogniser, or (`UnseenReads`) those of chosen folds by recognisers
that never trained on them: a recogniser is surer of images it learnt than of a camera's. Reports how
it generalises by cross-validation (folds by image), and writes it into the calibration file, keeping
the other engines' models."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from alpr.eval_scoring import Outcome
from alpr.evaluation import evaluate
from alpr.folds import FOLDS, fold, parse_folds
from alpr.ground_truth import Sample, dataset_folders
from common.config import Settings
from common.errors import ConfigError, InputError, OutputError
from common.private_files import refuse_link
from common.private_files import write_whole as write_file_whole
from common.types import BoxXYXY, PlateCandidate, PlateRead
from detector_worker.core import DetectorSettings, PlateDetections, PlateDetector
from ocr_worker.calibration import FEATURES, FORMAT_WEIGHTS, Calibration, features
from ocr_worker.core import OcrSettings, PlateReader
from ocr_worker.engines import ENGINES
from ocr_worker.formats import Reading

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

    def read_plates(
        self,
        crops: Sequence[np.ndarray | None],
        boxes: Sequence[tuple[BoxXYXY, float]],
        at_side_edge: Sequence[bool] = (),
    ) -> list[PlateRead]:
        """The reads without the side-edge cap (its candidates are new objects): what is fitted is the
        recogniser's own confidence, which the cap then bounds."""
        return super().read_plates(crops, boxes)

    def finish(self, readings: list[Reading], height_px: float) -> list[PlateCandidate]:
        candidates = super().finish(readings, height_px)
        if candidates:
            row = features(readings, 0, self.formats.typical_length, height_px)
            self.recorded[id(candidates[0])] = (candidates[0], row)
        return candidates


def features_of(recorded: Recorded, candidate: PlateCandidate) -> list[float]:
    """The recorded features of the reading `candidate` came from."""
    kept, row = recorded[id(candidate)]
    if kept is not candidate:
        raise LookupError(f"no features were recorded for {candidate!r}")
    return row


@dataclass(frozen=True)
class UnseenReads:
    """Reads of images a recogniser never trained on: the recogniser's ONNX file (None: the configured
    one) and the folds (alpr/folds.py) of the images to read with it."""

    model_file: Path | None
    folds: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> UnseenReads:
        """`FILE:FOLDS` (`/tmp/plate_2-4.onnx:0,1`) or `default:FOLDS`; ValueError saying the form."""
        model, _, folds = text.rpartition(":")
        if not model:
            raise ValueError(f"unseen reads are FILE:FOLDS or default:FOLDS (e.g. /tmp/m.onnx:0,1), not {text!r}")
        path = None if model == "default" else Path(model)
        if path is not None and not path.is_file():
            raise ValueError(f"no recogniser file at {path}")
        return cls(path, parse_folds(folds))

    def describe(self, default_file: Path | None = None) -> dict[str, Any]:
        """What calibration.json records of it: the recogniser file's name and digest (`default_file`
        for the configured one, where it has a file), and the folds."""
        path = self.model_file or default_file
        if path is None:
            return {"model": "default", "folds": sorted(self.folds)}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        name = path.name if self.model_file else f"default ({path.name})"
        return {"model": name, "sha256": digest, "folds": sorted(self.folds)}


ALL_IMAGES = (UnseenReads(None, frozenset(range(FOLDS))),)
"""Without unseen reads: every image, read by the configured recogniser."""


class Reads(NamedTuple):
    """Per read: its features (x), whether it is exact (y), its set's name and its image's file name."""

    x: np.ndarray
    y: np.ndarray
    sets: list[str]
    images: list[str]


class RememberingDetector(PlateDetector):
    """The detector, answering an image it has seen from memory: calibrating reads each image once per
    format weight and source, and the detector (deterministic) dominated the time."""

    def __init__(self, settings: DetectorSettings) -> None:
        super().__init__(settings)
        self.seen: dict[bytes, PlateDetections] = {}

    def detect(self, frames: Sequence[np.ndarray]) -> list[PlateDetections]:
        keys = [hashlib.sha1(f"{f.shape}|{f.dtype}".encode() + f.tobytes()).digest() for f in frames]
        new = [i for i, key in enumerate(keys) if key not in self.seen]
        if new:
            for i, found in zip(new, super().detect([frames[i] for i in new]), strict=True):
                self.seen[keys[i]] = found
        return [self.seen[key] for key in keys]


def remembering_detector() -> Callable[[Settings], PlateDetector]:
    """A detector factory that builds one RememberingDetector on first call (a folder of crops needs
    none: no weights then) and gives the same one after."""
    built: list[PlateDetector] = []

    def detector(settings: Settings) -> PlateDetector:
        from alpr.wiring import build_detector

        if not built:
            built.append(build_detector(settings, RememberingDetector))
        return built[0]

    return detector


def collect(
    roots: list[Path],
    settings: Settings,
    format_weight: float,
    sources: Sequence[UnseenReads] = ALL_IMAGES,
    detector: Callable[[Settings], PlateDetector] | None = None,
    scales: Sequence[float] = (1.0,),
) -> Reads:
    """The best read of every image that has one, the region's formats counting by `format_weight`:
    each source's images read by its recogniser (an image of two sources gives two reads), at each of
    `scales` (alpr.evaluation.scaled_image: a read of a shrunk image is in set `NAME@SCALE`); `detector`
    (else remembering_detector()) builds what finds the plates, where a folder needs one."""
    detector = detector or remembering_detector()
    rows: list[list[float]] = []
    labels: list[float] = []
    sets: list[str] = []
    images: list[str] = []
    for scale in scales:
        for source in sources:
            x, y, names, files = _collect_one(roots, settings, format_weight, source, detector, scale)
            rows += x
            labels += y
            sets += names if scale == 1 else [f"{name}@{scale:g}" for name in names]
            images += files
    return Reads(np.asarray(rows, float), np.asarray(labels, float), sets, images)


def at_full_size(reads: Reads) -> np.ndarray:
    """Which reads are of images at their own size (not shrunk by `collect`'s scales)."""
    return np.array(["@" not in name for name in reads.sets], bool)


def _collect_one(
    roots: list[Path],
    settings: Settings,
    format_weight: float,
    source: UnseenReads,
    detector: Callable[[Settings], PlateDetector],
    scale: float = 1.0,
) -> tuple[list[list[float]], list[float], list[str], list[str]]:
    from alpr.wiring import ocr_settings

    recorded: Recorded = {}

    def raw_reader(s: Settings, region: str) -> PlateReader:
        chosen = replace(ocr_settings(s, region, False, format_weight), model_file=source.model_file)
        return FeatureRecorder(chosen, recorded)

    def in_folds(sample: Sample) -> bool:
        return fold(sample.image.name) in source.folds

    rows, labels, sets, images = [], [], [], []
    for root in roots:
        outcomes: dict[str, list[Outcome]] = {}
        evaluate(root, settings, detector, raw_reader, outcomes, in_folds, scale)
        for name, items in outcomes.items():
            for outcome in items:
                if outcome.best is None or not outcome.best.candidates:
                    continue
                rows.append(features_of(recorded, outcome.best.candidates[0]))
                labels.append(1.0 if outcome.correct else 0.0)
                sets.append(name)
                images.append(outcome.sample.image.name)
    return rows, labels, sets, images


def cross_validated_scores(x: np.ndarray, y: np.ndarray, images: list[str] | None = None) -> np.ndarray:
    """Each read's probability by a model fitted without its fold: folds by image (alpr/folds.py) when
    `images` are given, so that two reads of one image (by two recognisers) fall in the same fold;
    else by position."""
    folds = np.array([fold(name) for name in images]) if images else np.arange(len(y)) % FOLDS
    scores = np.zeros(len(y))
    for k in range(FOLDS):
        if (folds == k).any():
            model = Calibration.fit(x[folds != k], y[folds != k])
            scores[folds == k] = [model.probability(row) for row in x[folds == k]]
    return scores


def cross_validate(
    x: np.ndarray, y: np.ndarray, sets: list[str], thresholds: list[float], images: list[str] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Per threshold and set: coverage and wrong among accepted, each read scored by a model fitted
    without its fold (`cross_validated_scores`)."""
    scores = cross_validated_scores(x, y, images)
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


def calibrate(
    roots: list[Path],
    settings: Settings,
    out: Path,
    sources: Sequence[UnseenReads] = ALL_IMAGES,
    scales: Sequence[float] = (1.0,),
) -> dict[str, Any]:
    """Fit the configured engine's format weight and confidence model on the reads of `sources` (by
    default every image, by the configured recogniser), at each of `scales` (the images also shrunk, as
    cameras of less resolution take them: the model learns how much less sure small plates are; the
    format weight is chosen on the reads at full size), and write them into `out`; the written entry."""
    for root in roots:
        dataset_folders(root)  # a clear error before minutes of work
    engine = ENGINES[settings.ocr_engine]
    if any(source.model_file is not None for source in sources) and not engine.reads_recogniser_files:
        readers = ", ".join(key for key, kind in ENGINES.items() if kind.reads_recogniser_files)
        raise InputError(f"unseen reads with a recogniser file need the {readers} engine")
    if 1.0 not in scales or not all(0 < scale <= 1 for scale in scales):
        raise InputError(f"the scales to read at lie in (0, 1] and include 1 (full size), got {list(scales)}")
    for source in sources:  # a file that is no model failed with ONNX Runtime's traceback, after minutes
        if source.model_file is not None:
            loadable_recogniser(source.model_file)
    existing = calibration_file(out)  # before the work: a file that is no calibration failed after the fit
    detector = remembering_detector()  # each image detected once, not once a pass; built only if needed
    collected = {weight: collect(roots, settings, weight, sources, detector, scales) for weight in FORMAT_WEIGHTS}
    default_file = engine.recogniser_file(settings.ocr_model)
    exact = {weight: int(reads.y[at_full_size(reads)].sum()) for weight, reads in collected.items()}
    weight = choose_format_weight(exact)
    x, y, sets, images = collected[weight]
    if len(y) < MIN_READS or y.all() or not y.any():  # all right: every read fitted sure (bias 25); none: a traceback
        raise InputError(
            f"{len(y)} reads, {int(y.sum())} of them right: a fit needs at least {MIN_READS}, some right and some"
            " wrong (more images, or others)"
        )
    model = replace(Calibration.fit(x, y), format_weight=weight)
    from alpr.wiring import ocr_settings

    key = ocr_settings(settings).engine_key
    existing.pop("features", None)  # once for the whole file; now each model says what it was fitted on
    existing["models"][key] = {
        "features": list(FEATURES),
        "weights": list(model.weights),
        "bias": model.bias,
        "format_weight": model.format_weight,
        "exact_reads_by_format_weight": {f"{w:g}": n for w, n in exact.items()},
        "fitted_on": sorted({str(r) for r in roots}),
        "reads": [source.describe(default_file) for source in sources],
        "scales": sorted(scales, reverse=True),
        "images": int(len(y)),
        "cross_validation": cross_validate(x, y, sets, [*THRESHOLDS, settings.ocr_min_confidence], images),
    }
    write_whole(out, json.dumps(existing, indent=1) + "\n")
    return dict(existing["models"][key])


MIN_READS = 20
"""The fewest reads a fit is made on (cross-validated in five folds), some right and some wrong."""


def loadable_recogniser(path: Path) -> None:
    """InputError unless ONNX Runtime loads `path` as a recogniser."""
    from ocr_worker.ppocr_engine import PpocrEngine

    try:
        PpocrEngine(path)
    except Exception as error:
        raise InputError(
            f"--unseen-reads {path}: not a recogniser ONNX Runtime loads ({type(error).__name__})"
        ) from None


def write_whole(out: Path, text: str) -> None:
    """`text` into `out` whole or not at all (a write cut short, a full disk, left the calibration file the
    readers load truncated), readable as the file was."""
    refuse_link(out)
    try:
        mode = out.stat().st_mode & 0o777 if out.exists() else 0o644
        write_file_whole(out, text.encode(), mode)
    except OSError as error:
        raise OutputError(f"cannot write the calibration file {out}: {error.strerror or error}") from None


def calibration_file(out: Path) -> dict[str, Any]:
    """The calibration file `out` holds now, to add a model to ({"models": {}} when there is none yet):
    ConfigError where it is a link, or no calibration file (not JSON, not UTF-8, no models), or cannot be
    written, all before the minutes of work a fit takes; it failed after them, with a traceback."""
    refuse_link(out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: {out.parent} is not a folder")
    if not os.access(out.parent, os.W_OK):  # the file is written beside, then put in its place
        raise ConfigError(f"--out {out}: {out.parent} cannot be written")
    if not out.exists():
        return {"models": {}}
    problem = None
    try:
        existing = json.loads(out.read_bytes().decode("utf-8"))
        if not os.access(out, os.W_OK):
            problem = "it cannot be written"
        elif not isinstance(existing, dict) or not isinstance(existing.get("models"), dict):
            problem = "it is not a calibration file (a JSON object with its models)"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"it is not a calibration file ({type(error).__name__})"
    if problem:
        raise ConfigError(f"--out {out}: {problem}")
    return dict(existing)
