"""The OCR core: `PlateReader.read_plates(crops, boxes, at_side_edge) -> reads`, the one read step the
standalone pipeline and the OCR pool both call (and `read(crop) -> candidates`).
Finds the registration's line in each crop (ocr_worker/text_lines.py), recognises it with the chosen
engine, ranks the readings by plate format and calibrates their confidence.
Knows nothing of Redis or jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from common import defaults
from common.errors import ConfigError, InputError
from common.regions import region_formats
from common.types import BoxXYXY, PlateCandidate, PlateRead
from ocr_worker.calibration import calibration_for
from ocr_worker.engines import ENGINES, OcrEngine
from ocr_worker.formats import Reading, rank_candidates
from ocr_worker.text_lines import PlateTextLocator

MAX_CROP_ASPECT = 15
"""A crop more than this many times as wide as it is tall is no plate (plates are 2:1 to 5:1, a loose
box's margins add little), and is not read: scaled to the row search's height, a 4 x 7680 sliver
became 100 x 192,000 pixels and took 1.7 s and 240 MB (an audit's measure)."""

MAX_CROP_TALLNESS = 4
"""A crop more than this many times as tall as it is wide is no plate either (a two-row plate is about
as tall as wide; the detector's boxes are wider than tall), and is not read: framed for the text
detector by a share of its height on every side, a 65,000 x 4 sliver became 84,500 x 19,504 pixels
and took 10 s and 5 GB (a review: three in one job failed the job on every attempt)."""

MIN_CROP_PIXELS = 4
"""Crops narrower or shorter than this are not read."""

SIDE_EDGE_MAX_CONFIDENCE = 0.2
"""The most a read of a plate at the frame's left or right edge (common.geometry.at_side_edge) may be
trusted: such a plate may run out of the frame, and the part inside reads as a whole plate (520MRK as
MRK at 0.999). Measured by benchmarks/bench_side_edge.py (the frame's side edge through 10 to 50% of
each photo's plate): 309 of 1332 cut plates read right (23%; 48 of 208 on the fifth the recogniser
never trained on), and 459 read wrong at 0.85 or more before the cap (71 of 208). Cut through its top
or bottom instead, a plate is read wrong at 0.85 or more 19 times in 1332: those keep their confidence."""


@dataclass(frozen=True)
class OcrSettings:
    """How plates are read; see common/defaults_reading.py for what each default means."""

    engine: str = defaults.OCR_ENGINE
    region: str = defaults.OCR_REGION
    max_candidates: int = defaults.OCR_MAX_CANDIDATES
    model: str = defaults.OCR_MODEL
    calibrated: bool = True
    threads: int = 1
    format_weight: float | None = None
    """How much the region's formats count (common.regions.RegionFormats.weighted); None: the
    recogniser's fitted weight in calibration.json (also when `calibrated` is off), else 1.0."""
    model_file: Path | None = None
    """A recogniser ONNX file read in place of `model`'s own (ppocr only), keyed and calibrated as
    `model`: `alpr calibrate` reads with one trained without the images it fits on."""

    @property
    def engine_key(self) -> str:
        """The engine and recogniser, as calibration.json keys their fits (`ppocr-plate`, `tesseract`)."""
        return ENGINES[self.engine].calibration_key(self.model)


TOO_SHORT_MAX_CONFIDENCE = 0.2
"""The most a reading shorter than any of the region's plates (plate_formats.yaml: min_length) may be
trusted: a sticker or a sign (the SK of a Slovak car's country sticker, read at 0.88 on the eu formats,
whose plates are 4 to 8 long) or a part of a plate. The fit of the confidence sees such reads too
rarely to learn it (benchmarks/bench_grouping.py: the only sure read of no plate). Not so a reading
longer than the region's longest: vanity plates are (BIGCHEESE, 1TARHEELS on US crops, read right)."""


def capped(candidate: PlateCandidate, most: float) -> PlateCandidate:
    """The candidate with its confidence at most `most` (the ranking stays: the cap keeps order)."""
    return replace(candidate, confidence=min(candidate.confidence, most))


class PlateReader:
    """Reads plate crops into ranked candidates with the configured engine and region."""

    def __init__(self, settings: OcrSettings) -> None:
        if settings.engine not in ENGINES:
            raise ConfigError(f"OCR engine must be one of {', '.join(ENGINES)}, got {settings.engine!r}")
        self.settings = settings
        needs_fit = settings.calibrated or settings.format_weight is None
        fitted = calibration_for(settings.engine_key) if needs_fit else None
        self.calibration = fitted if settings.calibrated else None
        weight = settings.format_weight
        if weight is None:
            weight = fitted.format_weight if fitted else 1.0
        self.formats = region_formats(settings.region).weighted(weight)
        self.locator = PlateTextLocator(threads=settings.threads)
        engine = ENGINES[settings.engine]
        self.engine: OcrEngine = engine.configured(settings.model, settings.model_file, settings.threads)

    def read(self, crop_bgr: np.ndarray) -> list[PlateCandidate]:
        """Candidates for one plate crop, best first (empty when nothing legible)."""
        return self.read_batch([crop_bgr])[0]

    def read_batch(self, crops_bgr: Sequence[np.ndarray]) -> list[list[PlateCandidate]]:
        for index, crop in enumerate(crops_bgr):
            if (
                not isinstance(crop, np.ndarray) or crop.ndim not in (2, 3) or crop.size == 0
                or crop.dtype != np.uint8 or (crop.ndim == 3 and crop.shape[2] not in (1, 3, 4))
            ):  # fmt: skip
                raise InputError(
                    f"plate crop {index} must be a non-empty 8-bit image (gray, BGR or BGRA), but got"
                    f" {getattr(crop, 'shape', crop)!r} {getattr(crop, 'dtype', '')}"
                )
        crops_bgr = [cv2.cvtColor(c, cv2.COLOR_BGRA2BGR) if c.ndim == 3 and c.shape[2] == 4 else c for c in crops_bgr]
        legible = [
            i for i, c in enumerate(crops_bgr)
            if min(c.shape[:2]) >= MIN_CROP_PIXELS
            and c.shape[1] <= MAX_CROP_ASPECT * c.shape[0] and c.shape[0] <= MAX_CROP_TALLNESS * c.shape[1]
        ]  # fmt: skip
        lines = self.locator.locate([crops_bgr[i] for i in legible])
        choices = dict(zip(legible, self.engine.recognize_batch(lines), strict=True))
        ranked = max(self.settings.max_candidates, defaults.OCR_MAX_CANDIDATES)  # as calibrate read them: a
        return [  # list cut to one first had no rival to weigh its margin by, and misreads rose over 0.85
            self.finish(rank_candidates(choices[i], self.formats, ranked), crops_bgr[i].shape[0])[
                : self.settings.max_candidates
            ]
            if i in choices
            else []
            for i in range(len(crops_bgr))
        ]

    def finish(self, readings: list[Reading], height_px: float) -> list[PlateCandidate]:
        """One crop's (`height_px` tall) ranked readings as candidates, their confidence calibrated when a
        fit is in use; those shorter than any of the region's plates at most TOO_SHORT_MAX_CONFIDENCE and ranked after
        the rest (B12 at 0.88 capped to 0.2 stayed the best read before AB123 at 0.6, a review)."""
        if self.calibration is None:
            candidates = [reading.candidate for reading in readings]
        else:
            candidates = self.calibration.apply(readings, self.formats.typical_length, height_px)
        whole = [c for c in candidates if len(c.text) >= self.formats.min_length]
        short = [capped(c, TOO_SHORT_MAX_CONFIDENCE) for c in candidates if len(c.text) < self.formats.min_length]
        return whole + short  # a reading that may be the whole plate before any that cannot, each in its order

    def read_plates(
        self,
        crops: Sequence[np.ndarray | None],
        boxes: Sequence[tuple[BoxXYXY, float]],
        at_side_edge: Sequence[bool] = (),
    ) -> list[PlateRead]:
        """The read step of both modes: each plate's crop (cut by common.geometry.crop; None or empty
        when there is none to read: out of the frame, expired) with its box and the detector's
        confidence, read in one batch; a plate without a crop comes back without candidates. A plate
        `at_side_edge` (per box, common.geometry.at_side_edge; none when empty) may be cut off: its
        candidates' confidence is capped at SIDE_EDGE_MAX_CONFIDENCE."""
        if len(crops) != len(boxes) or (len(at_side_edge) and len(at_side_edge) != len(boxes)):
            raise InputError(
                f"read_plates needs one crop (and edge flag) per box, got {len(crops)} crops"
                f" and {len(at_side_edge)} flags for {len(boxes)} boxes"
            )
        kept = [i for i, crop in enumerate(crops) if crop is not None and crop.size]
        results = dict(zip(kept, self.read_batch([crops[i] for i in kept]), strict=True))  # type: ignore[misc]
        reads = []
        for i, (box, confidence) in enumerate(boxes):
            candidates = results.get(i, [])
            if len(at_side_edge) and at_side_edge[i]:
                candidates = [capped(c, SIDE_EDGE_MAX_CONFIDENCE) for c in candidates]
            reads.append(PlateRead(box, confidence, tuple(candidates)))
        return reads
