"""`alpr eval`: accuracy and speed on folders of real photographs with ground truth, in the
OpenALPR benchmark layout (`NAME.txt` beside each image) or as plate crops (`groundtruth.csv`): exact
reads, how far the confidence can be trusted (coverage and wrong reads at the threshold, a
reliability table), and per image the cause of each miss."""

from __future__ import annotations

import csv
import glob
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common import defaults, geometry
from common.config import Settings
from common.csv_files import spreadsheet_safe
from common.errors import InputError
from common.private_files import replaced_privately
from common.regions import load_regions
from common.text_files import shown_path
from common.types import PlateRead
from common.watchlist import normalise_plate
from detector_worker.core import PlateDetector, boxes_to_read
from ingest.image_files import UnreadableFrameError, read_image
from ocr_worker.core import PlateReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    image: Path
    plate: str
    box_xyxy: tuple[float, float, float, float] | None  # None for a crop: the image is the plate


RELIABILITY_BINS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)
"""Confidence bins of the reliability table: lower edges, the last one the upper bound."""

MIN_SCALED_PIXELS = 4
"""The least width or height `scaled_image` shrinks an image to."""

ERROR_COLUMNS = ("set", "image", "truth", "best_read", "confidence", "top_n", "cause")
"""Columns of `alpr eval --errors FILE`, one row per image."""


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


def load_samples(folder: Path) -> tuple[list[Sample], bool]:
    """The folder's samples and whether they are crops (groundtruth.csv) rather than scenes. A line that is
    not a label (too few fields, a box that is not four finite numbers of positive size, no plate text, an
    image that is not in the folder), or ground truth that is not UTF-8, is an InputError naming the file
    and line: such lines were passed over unsaid, and the figures were of fewer images than given. A
    byte-order mark, a header row and blank lines are passed over."""
    truth = folder / "groundtruth.csv"
    if truth.is_file():
        samples = []
        for number, row in enumerate(csv.reader(truth_lines(truth)), start=1):
            where = f"{truth}:{number}"
            if not "".join(row).strip() or (number == 1 and row[0].strip().lower() in HEADER_NAMES):
                continue
            if len(row) < 3:
                raise InputError(f"{where}: expected file,region,PLATE")
            samples.append(Sample(image_in(folder, row[0], where), plate_of(row[2], where), None))
        return samples, True
    samples = []
    for label in sorted(t for t in folder.glob("*.txt") if is_label(t)):  # a README.txt beside is no label
        try:
            lines = truth_lines(label)
        except OSError as error:  # unreadable: its image was passed over unsaid
            raise InputError(f"{label}: cannot read this label: {error.strerror or error}") from None
        for number, line in enumerate(lines, start=1):
            where = f"{label}:{number}"
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 6:
                raise InputError(f"{where}: expected file<TAB>x<TAB>y<TAB>width<TAB>height<TAB>PLATE")
            x, y, w, h = box_of(parts[1:5], where)
            samples.append(Sample(image_in(folder, parts[0], where), plate_of(parts[5], where), (x, y, x + w, y + h)))
    labelled = {sample.image.name for sample in samples}
    if unlabelled := sorted(p.name for p in folder.iterdir() if is_image(p) and p.name not in labelled):
        names = ", ".join(ascii(name)[1:-1] for name in unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else "")
        log.warning("%d image(s) in %s have no label and are not measured: %s", len(unlabelled), folder, names)
    return samples, False


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Image files of a NAME.txt set: a .txt file beside one of the same stem is its label."""


def is_image(path: Path) -> bool:
    """Whether `path` is an image file of a set (by its suffix, of any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


HEADER_NAMES = ("file", "filename", "image", "name")
"""A groundtruth.csv whose first row's first cell is one of these has a header row."""


def image_in(folder: Path, name: str, where: str) -> Path:
    """The image a label names: a file in `folder` itself (a name with a folder in it, `..` or an
    absolute path, read photos from elsewhere), else InputError naming `where`."""
    name = name.strip()
    if not name or Path(name).name != name or name in (".", ".."):
        raise InputError(f"{where}: the image must be named by its file name in {folder}, not {ascii(name)[:80]}")
    path = folder / name
    if not path.is_file():
        raise InputError(f"{where}: no image file {ascii(name)[:80]} in {folder}")
    return path


def plate_of(text: str, where: str) -> str:
    """A label's plate text as reads are written, normalised as a watch-list's plates are (upper case, no
    spaces, dashes or dots: truth `YG9 X2G` never matched the read YG9X2G); InputError naming `where`."""
    try:
        return normalise_plate(text)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None


def box_of(fields: list[str], where: str) -> tuple[float, float, float, float]:
    """A label's box (x, y, width, height) from its four fields; InputError naming `where` unless they are
    four finite numbers."""
    try:
        x, y, w, h = (float(v) for v in fields)
    except ValueError:
        x = y = w = h = math.nan
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise InputError(f"{where}: the plate's box must be four numbers (x, y, width, height), of positive size")
    return x, y, w, h


def truth_lines(path: Path) -> list[str]:
    """The lines of a ground-truth file; InputError where it is not UTF-8 text."""
    try:
        return path.read_bytes().decode("utf-8-sig").splitlines()  # a byte-order mark was part of the first name
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: ground truth must be UTF-8 text (byte {error.start} is not)") from None


MAX_SET_DEPTH = 4
"""How far below the folder `alpr eval` is given its sets are looked for (the shared datasets' scenes lie
two down, openalpr-endtoend/us): a folder such as a home folder is not walked whole."""


def dataset_folders(root: Path) -> list[Path]:
    """`root` itself when it holds ground truth, else every folder below it that does, by path, up to
    MAX_SET_DEPTH down: a set's own sub-folders are not looked in, and a folder reached twice (by a link)
    is read once, by its own path. Only the folders just below were looked in: given the shared datasets'
    folder, eval read openalpr-plates alone and passed over openalpr-endtoend/{us,eu,br} unsaid."""
    if root.exists() and not root.is_dir():  # a file: it said "does not exist" (a review)
        raise InputError(f"dataset {root} is not a folder: name the folder of the images and their labels")
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist")

    def has_truth(p: Path) -> bool:  # a notes.txt beside the sets' folders made the root a set of none
        return (p / "groundtruth.csv").is_file() or any(is_label(t) for t in p.glob("*.txt"))

    if has_truth(root):
        return [root]
    folders: list[Path] = []
    seen = {root.resolve()}

    def look_in(folder: Path, depth: int) -> None:  # a folder itself before a link to it
        for path in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: (p.is_symlink(), p.name)):
            if (real := path.resolve()) in seen:  # a link to a folder read already, or above (a loop)
                continue
            seen.add(real)
            if has_truth(path):
                folders.append(path)
            elif depth < MAX_SET_DEPTH:
                look_in(path, depth + 1)

    look_in(root, 1)
    folders.sort()
    if not folders:
        raise InputError(
            f"{root} holds no ground truth (NAME.txt beside images, or groundtruth.csv), nor does any folder"
            f" up to {MAX_SET_DEPTH} below it"
        )
    return folders


def set_name(folder: Path, root: Path) -> str:
    """A set's name in the figures and the errors file: its path below `root` (`openalpr-endtoend/us`;
    two sets of one name in two folders are two), or its own name where `root` is the set."""
    return folder.name if folder == root else folder.relative_to(root).as_posix()


def is_label(path: Path) -> bool:
    """Whether a .txt file is a photo's label (a README.txt or notes.txt beside the photos is not): an image
    of its stem lies beside it (then an unreadable or garbled one is an error naming it, not passed over with
    its image), or its first line holds six tab-separated fields, or begins with the name of a file in its
    folder."""
    if any(is_image(image) for image in path.parent.glob(f"{glob.escape(path.stem)}.*")):
        return True
    try:
        with path.open("rb") as handle:
            first = handle.readline(4096).decode("utf-8-sig", "replace").strip()
    except OSError:
        return False
    name = first.split("\t")[0].split(" ")[0]
    return first.count("\t") >= 5 or (bool(name) and Path(name).name == name and (path.parent / name).is_file())


def region_for(folder: Path, default: str) -> str:
    """The plate region a folder's name announces (us, eu, br), else the configured one."""
    return folder.name if folder.name in load_regions() else default


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


def evaluate_folder(
    folder: Path,
    detector: PlateDetector | None,
    reader: PlateReader,
    min_confidence: float,
    crop_margin: float = defaults.OCR_CROP_MARGIN,
    keep: Callable[[Sample], bool] | None = None,
    scale: float = 1.0,
) -> tuple[Tally, bool, list[Outcome]]:
    samples, crops = load_samples(folder)
    if not samples:
        raise InputError(f"{folder} holds no samples")
    samples = [scaled_sample(s, scale) for s in samples if keep is None or keep(s)]
    if not crops and detector is None:
        raise ValueError("scene folders need a detector")
    tally, outcomes = Tally(), []
    for sample, reads, timings in _run(samples, crops, detector, reader, crop_margin, scale):
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
    return tally, crops, outcomes


def write_errors(path: Path, outcomes: dict[str, list[Outcome]]) -> None:
    """One CSV row per image: truth, best read, its confidence, the top-N candidates, the cause; written
    as the exports are (replaced_privately: 0600, no link followed), as the rows are plates."""
    with replaced_privately(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(ERROR_COLUMNS)
        for name, rows in outcomes.items():
            for o in rows:
                candidates = "|".join(c.text for c in o.best.candidates) if o.best else ""
                writer.writerow([spreadsheet_safe(cell) for cell in (  # names and truths are the dataset's own
                    name, o.sample.image.name, o.sample.plate, o.best.text if o.best else "",
                    f"{o.best.confidence:.4f}" if o.best else "", candidates, o.cause,
                )])  # fmt: skip


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
) -> Iterator[tuple[Sample, list[PlateRead], dict[str, float]]]:
    for sample in samples:
        start = time.perf_counter()
        try:  # as the ingest nodes read images: a FIFO hung, a bomb took GBs, a non-UTF-8 folder crashed imread
            image = read_image(sample.image, defaults.MAX_FRAME_PIXELS)
        except UnreadableFrameError as error:
            raise InputError(f"cannot read image {shown_path(sample.image)}: {error}") from None
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
) -> dict[str, dict[str, Any]]:
    """Metrics per dataset folder under `root`, keyed by `set_name`, over the samples `keep` accepts
    (all by default), each with the region whose formats read it (the folder's name where it is one,
    else the configured region); with `errors`, each folder's per-image outcomes go there too. With
    `scale` under 1, every image is read as a camera of that much less resolution would take it
    (`scaled_image`): how reads and their confidence hold as plates shrink."""
    if not 0 < scale <= 1:
        raise InputError(f"the scale of the images must lie in (0, 1], got {scale!r}")
    folders = dataset_folders(root)
    detector = None
    results: dict[str, dict[str, Any]] = {}
    for folder in folders:
        region = region_for(folder, settings.ocr_region)
        reader = build_reader(settings, region)
        if detector is None and not (folder / "groundtruth.csv").is_file():
            detector = build_detector(settings)
        tally, crops, outcomes = evaluate_folder(
            folder, detector, reader, settings.ocr_min_confidence, settings.ocr_crop_margin, keep, scale
        )
        if not tally.n:  # none of the folds asked for: its figures would read 0.000, as if all were wrong
            continue
        name = set_name(folder, root)
        results[name] = {**tally.as_dict(crops), "region": region, "scale": scale}
        if errors is not None:
            errors[name] = outcomes
    return results


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One object with the metrics over every folder (weighted by n) and each folder's own."""

    def weighted(values: list[tuple[float | None, int]]) -> float | None:
        present = [(v, n) for v, n in values if v is not None]
        total = sum(n for _, n in present)
        return round(sum(v * n for v, n in present) / total, 4) if total else None

    keys = [
        "detection_recall_iou50",
        "detection_recall_iou30",
        "exact_top1",
        "exact_topn",
        "wrong_above_threshold",
        "coverage",
        "ms_per_image",
    ]
    out: dict[str, Any] = {"n": sum(r["n"] for r in results.values())}
    out.update({k: weighted([(r[k], r["n"]) for r in results.values()]) for k in keys})
    accepted = sum(r["accepted"] for r in results.values())
    wrong = sum(r["wrong_accepted"] for r in results.values())
    out["wrong_among_accepted"] = round(wrong / accepted, 4) if accepted else None
    out["ms_per_stage"] = {
        stage: weighted([(r["ms_per_stage"][stage], r["n"]) for r in results.values()])
        for stage in ("load", "detect", "ocr")
    }
    out["subsets"] = results
    return out
