"""`alpr eval`: accuracy and speed on folders of real photographs with ground truth, in the
OpenALPR benchmark layout (`NAME.txt` beside each image) or as plate crops (`groundtruth.csv`): exact
reads, how far the confidence can be trusted (coverage and wrong reads at the threshold, a
reliability table), and per image the cause of each miss.
Here the images are read and their reads judged; the sets and labels are read by alpr/ground_truth.py,
scored by alpr/eval_scoring.py, and the figures and errors written by alpr/eval_report.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alpr.eval_scoring import PLATE_MATCH_IOU, Outcome, Tally, best_read, iou
from alpr.ground_truth import Sample, configured_region, dataset_folders, load_samples, region_for, set_name
from common import defaults, geometry
from common.config import Settings
from common.errors import InputError
from common.text_files import shown_path
from common.types import PlateRead
from detector_worker.core import PlateDetector, boxes_to_read
from ingest.image_files import UnreadableFrameError, read_image
from ocr_worker.core import PlateReader

log = logging.getLogger(__name__)

MIN_SCALED_PIXELS = 4
"""The least width or height `scaled_image` shrinks an image to."""


def evaluate_folder(
    folder: Path,
    detector: PlateDetector | None,
    reader: PlateReader,
    min_confidence: float,
    crop_margin: float = defaults.OCR_CROP_MARGIN,
    keep: Callable[[Sample], bool] | None = None,
    scale: float = 1.0,
    unreadable: list[str] | None = None,
) -> tuple[Tally, bool, list[Outcome]]:
    """The folder's tally, whether it is a set of crops, and each image's outcome; the images that cannot be
    read are counted in the tally (`unreadable`), left out of its figures and named in `unreadable`."""
    samples, crops = load_samples(folder)
    if not samples:
        raise InputError(f"{folder} holds no samples")
    samples = [scaled_sample(s, scale) for s in samples if keep is None or keep(s)]
    if not crops and detector is None:
        raise ValueError("scene folders need a detector")
    tally, outcomes, not_read = Tally(), [], list[str]()
    for sample, reads, timings in _run(samples, crops, detector, reader, crop_margin, scale, not_read):
        for stage, seconds in timings.items():
            tally.seconds[stage] += seconds
        detected = None
        if sample.box_xyxy is not None:
            overlap = max((iou(r.box_xyxy, sample.box_xyxy) for r in reads), default=0.0)
            tally.detected_iou50 += overlap >= 0.5
            tally.detected_iou30 += overlap >= 0.3
            detected = overlap >= 0.3
        at_plate = (
            reads
            if sample.box_xyxy is None
            else [r for r in reads if iou(r.box_xyxy, sample.box_xyxy) >= PLATE_MATCH_IOU]
        )
        top = best_read(at_plate)
        outcome = Outcome(
            sample, top, top is not None and top.text == sample.plate,
            any(c.text == sample.plate for r in at_plate for c in r.candidates), detected,
        )  # fmt: skip
        tally.add(outcome, min_confidence)
        outcomes.append(outcome)
    tally.unreadable = len(not_read)
    if unreadable is not None:
        unreadable += not_read
    return tally, crops, outcomes


def scaled_sample(sample: Sample, scale: float) -> Sample:
    """The sample as `scaled_image` shows it: its plate's box in the scaled image's pixels."""
    if scale == 1.0 or sample.box_xyxy is None:
        return sample
    x1, y1, x2, y2 = sample.box_xyxy
    return replace(sample, box_xyxy=(x1 * scale, y1 * scale, x2 * scale, y2 * scale))


def scaled_image(image: np.ndarray, scale: float) -> np.ndarray:
    """The photo as a camera with `scale` times its resolution (0 < scale <= 1) would take it, or a plate
    as far again: shrunk by pixel area, as a sensor averages light."""
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(MIN_SCALED_PIXELS, round(width * scale)), max(MIN_SCALED_PIXELS, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _run(
    samples: list[Sample],
    crops: bool,
    detector: PlateDetector | None,
    reader: PlateReader,
    crop_margin: float,
    scale: float = 1.0,
    unreadable: list[str] | None = None,
) -> Iterator[tuple[Sample, list[PlateRead], dict[str, float]]]:
    """Each sample's reads and the seconds of each stage; an image that cannot be read is named in
    `unreadable` (and a WARNING) and passed over: one truncated JPEG ended the whole run with no figures."""
    for sample in samples:
        start = time.perf_counter()
        try:  # as the ingest nodes read images: a FIFO hung, a bomb took GBs, a non-UTF-8 folder crashed imread
            image = read_image(sample.image, defaults.MAX_FRAME_PIXELS)
        except UnreadableFrameError as error:
            log.warning("cannot read image %s: %s; left out of the figures", shown_path(sample.image), error)
            if unreadable is not None:
                unreadable.append(f"{shown_path(sample.image)}: {error}")
            continue
        image = scaled_image(image, scale)
        loaded = time.perf_counter()
        if crops:
            candidates = reader.read(image)
            h, w = image.shape[:2]
            reads = [PlateRead((0.0, 0.0, float(w), float(h)), 1.0, tuple(candidates))]
            yield sample, reads, {"load": loaded - start, "detect": 0.0, "ocr": time.perf_counter() - loaded}
            continue
        assert detector is not None
        detections = detector.detect([image])[0]
        detected = time.perf_counter()
        boxes = list(boxes_to_read(detections, None, detector.settings.confidence).boxes())  # what is read
        plates = [geometry.crop(image, box, crop_margin) for box, _ in boxes]
        reads = reader.read_plates(plates, boxes, [geometry.at_side_edge(box, image.shape[1]) for box, _ in boxes])
        yield (
            sample,
            reads,
            {"load": loaded - start, "detect": detected - loaded, "ocr": time.perf_counter() - detected},
        )


def evaluate(
    root: Path,
    settings: Settings,
    build_detector: Callable[[Settings], PlateDetector],
    build_reader: Callable[[Settings, str], PlateReader],
    errors: dict[str, list[Outcome]] | None = None,
    keep: Callable[[Sample], bool] | None = None,
    scale: float = 1.0,
    unreadable: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per dataset folder under `root`, keyed by `set_name`, over the samples `keep` accepts
    (all by default), each with the region whose formats read it (`region_for`: the folder's name where it
    names one, else the configured region where one was given, else what its ground truth says, else none);
    with `errors`, each folder's per-image outcomes go there too. With `scale` under 1, every image is read
    as a camera of that much less resolution would take it (`scaled_image`): how reads and their confidence
    hold as plates shrink. Images that cannot be read are left out of the figures, counted in each set's
    `unreadable` and named in `unreadable`."""
    if not 0 < scale <= 1:
        raise InputError(f"the scale of the images must lie in (0, 1], got {scale!r}")
    folders = dataset_folders(root)
    detector = None
    results: dict[str, dict[str, Any]] = {}
    for folder in folders:
        region = region_for(folder, configured_region(settings))
        reader = build_reader(settings, region)
        if detector is None and not (folder / "groundtruth.csv").is_file():
            detector = build_detector(settings)
        tally, crops, outcomes = evaluate_folder(
            folder, detector, reader, settings.ocr_min_confidence, settings.ocr_crop_margin, keep, scale, unreadable
        )
        if not tally.n:  # none of the folds asked for: its figures would read 0.000, as if all were wrong
            continue
        name = set_name(folder, root)
        results[name] = {**tally.as_dict(crops), "region": region, "scale": scale}
        if errors is not None:
            errors[name] = outcomes
    return results
