"""What the side-edge cap (ocr_worker.core.SIDE_EDGE_MAX_CONFIDENCE) does to a car's sighting when its
plate crosses the frame's left or right edge, measured on real photos with the real detector and reader.

Method, per photo of each set (us, eu, br, `NAME.txt` ground truth, loaded as `alpr eval` does): the
photo becomes a car entering the picture from the left (photos with an even seed) or leaving it on the
right (odd): frames in which the frame's side edge cuts the ground-truth plate through 50, 35, 20 and
10% of its width (`CUTS`), and `WHOLE` frames in which the edge lies half, one and two plate widths
beyond the plate (whole). Each frame is detected and read as `alpr run` reads it (the box of highest
IoU with the plate's is the frame's read; none under 0.3), once with the frame's side-edge flags (what
the pipeline does) and once without them (before the cap). Scored, exact against the ground truth:

- voted: `sighting_worker.vote` over the sequence's reads, right, and accepted (at or above the
  configured threshold) while wrong;
- cut frames: their reads right (the texts are the same with the cap or without it), accepted at the
  threshold, and how many of those are wrong;
- across: the same photo cut by the top (even seeds) or bottom frame edge through the same shares of
  the plate's height, read once each (no side edge: no cap): wrong among accepted / accepted / frames.

Nothing here is tuned to the images; the cuts are fixed above. Photos the recogniser trained on read
their cut plates better than unseen ones would (`--held-out` keeps the fifth it never saw).

    .venv/bin/python benchmarks/bench_side_edge.py [--sets us eu br] [--held-out] [--limit K]
"""

from __future__ import annotations

import argparse
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from alpr.eval_scoring import iou
from alpr.folds import held_out
from alpr.ground_truth import Sample, configured_region, load_samples, region_for
from alpr.wiring import build_detector, build_reader
from common import geometry
from common.config import Settings
from common.types import Observation, PlateRead
from detector_worker.core import PlateDetector, boxes_to_read
from ocr_worker.core import PlateReader
from sighting_worker.core import vote

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "openalpr-endtoend"
"""The OpenALPR benchmark photos (one folder per region)."""

CUTS = (0.5, 0.35, 0.2, 0.1)
"""How much of the plate's width the frame's edge cuts off, frame by frame, as the car enters."""

WHOLE = (0.5, 1.0, 2.0)
"""Where the frame's edge lies in the whole frames, in plate widths beyond the plate."""

MATCH_IOU = 0.3
"""IoU with the ground-truth box (in the frame) from which a detection is the plate's."""


def pair() -> list[int]:
    return [0, 0]


@dataclass
class Tally:
    """Counts for one set; each pair is [with the cap, without it]."""

    sequences: int = 0
    cut_frames: int = 0
    cut_right: int = 0
    across: int = 0
    across_accepted: int = 0
    across_accepted_wrong: int = 0
    voted_right: list[int] = field(default_factory=pair)
    voted_accepted_wrong: list[int] = field(default_factory=pair)
    cut_accepted: list[int] = field(default_factory=pair)
    cut_accepted_wrong: list[int] = field(default_factory=pair)

    def row(self, name: str, seconds: float) -> str:
        cells = [self.voted_right, self.voted_accepted_wrong, self.cut_accepted, self.cut_accepted_wrong]
        shown = " ".join(f"{f'{a} / {b}':>16}" for a, b in cells)
        across = f"{self.across_accepted_wrong} / {self.across_accepted} / {self.across}"
        return (
            f"{name:<4} {self.sequences:>4} {self.cut_frames:>4} {self.cut_right:>4} {shown} {across:>16}"
            f"   ({seconds:.0f} s)"
        )


def frames_of(
    photo: np.ndarray, box: tuple[float, float, float, float], entering: bool
) -> list[tuple[np.ndarray, int, bool]]:
    """The car's frames in capture order: each image, the x offset of the photo's first column in it
    and whether its side edge cuts the plate."""
    x1, _, x2, _ = box
    width = x2 - x1
    steps = [(cut, True) for cut in CUTS] + [(-beyond, False) for beyond in WHOLE]  # entering from the left
    frames = []
    for share, cuts in steps if entering else steps[::-1]:  # leaving on the right: whole first
        at = int(round(min(max(x1 + share * width if entering else x2 - share * width, 0), photo.shape[1])))
        image = photo[:, at:] if entering else photo[:, :at]
        frames.append((np.ascontiguousarray(image), at if entering else 0, cuts))
    return frames


def read_frame(
    frame: np.ndarray, truth: tuple[float, float, float, float], detector: PlateDetector, reader: PlateReader,
    margin: float,
) -> tuple[PlateRead | None, PlateRead | None]:  # fmt: skip
    """The plate's read with the side-edge flags and without them (None when not detected)."""
    boxes = list(boxes_to_read(detector.detect([frame])[0], None, detector.settings.confidence).boxes())
    matched = [b for b in boxes if iou(b[0], truth) >= MATCH_IOU]
    if not matched:
        return None, None
    best = max(matched, key=lambda b: iou(b[0], truth))
    crop = [geometry.crop(frame, best[0], margin)]
    flagged = reader.read_plates(crop, [best], [geometry.at_side_edge(best[0], frame.shape[1])])[0]
    return flagged, reader.read_plates(crop, [best])[0]


def run_sample(sample: Sample, detector: PlateDetector, reader: PlateReader, settings: Settings, tally: Tally) -> None:
    photo = cv2.imread(str(sample.image))
    if photo is None:
        raise SystemExit(f"cannot decode {sample.image}")
    assert sample.box_xyxy is not None
    entering = zlib.crc32(sample.image.name.encode()) % 2 == 0
    threshold = settings.ocr_min_confidence
    observations: tuple[list[Observation], list[Observation]] = ([], [])
    for index, (frame, offset, cut) in enumerate(frames_of(photo, sample.box_xyxy, entering)):
        x1, y1, x2, y2 = sample.box_xyxy
        reads = read_frame(frame, (x1 - offset, y1, x2 - offset, y2), detector, reader, settings.ocr_crop_margin)
        tally.cut_frames += cut
        for variant, read in enumerate(reads):
            if read is None or not read.text:
                continue
            observations[variant].append(
                Observation(
                    "bench", f"{sample.image.stem}-{index}", 0, 0.2 * index, read.box_xyxy, read.text, read.confidence
                )  # fmt: skip
            )
            tally.cut_right += cut and variant == 0 and read.text == sample.plate
            if cut and read.confidence >= threshold:
                tally.cut_accepted[variant] += 1
                tally.cut_accepted_wrong[variant] += read.text != sample.plate
    x1, y1, x2, y2 = sample.box_xyxy
    for share in CUTS:  # the top (even seeds) or bottom edge through the plate: characters cut across
        at = int(round(y1 + share * (y2 - y1) if entering else y2 - share * (y2 - y1)))
        frame = np.ascontiguousarray(photo[at:] if entering else photo[:at])
        truth = (x1, y1 - at, x2, y2 - at) if entering else (x1, y1, x2, y2)
        read = read_frame(frame, truth, detector, reader, settings.ocr_crop_margin)[0]
        tally.across += 1
        if read is not None and read.text and read.confidence >= threshold:
            tally.across_accepted += 1
            tally.across_accepted_wrong += read.text != sample.plate
    tally.sequences += 1
    for variant, seen in enumerate(observations):
        plate, confidence = vote(seen)
        tally.voted_right[variant] += plate == sample.plate
        tally.voted_accepted_wrong[variant] += plate != sample.plate and confidence >= threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["us", "eu", "br"], help="set folders under --root")
    parser.add_argument("--held-out", action="store_true", help="only the fifth the recogniser never trained on")
    parser.add_argument("--limit", type=int, default=None, help="at most K photos per set")
    parser.add_argument("--root", type=Path, default=DATASETS, help="the OpenALPR end-to-end benchmark folder")
    args = parser.parse_args()
    settings = Settings.load()
    detector = build_detector(settings)
    print(f"{len(CUTS)} cut and {len(WHOLE)} whole frames per car; at {settings.ocr_min_confidence:.2f};"
          " each figure with the side-edge cap / without it")  # fmt: skip
    titles = ("voted right", "voted acc. wrong", "cut accepted", "cut acc. wrong", "across wr/acc/n")
    header = f"{'set':<4} {'cars':>4} {'cuts':>4} {'right':>5}" + " ".join(f"{t:>16}" for t in titles)
    print(header + "\n" + "-" * len(header))
    for name in args.sets:
        folder = args.root / name
        samples, _ = load_samples(folder)
        samples = [s for s in samples if not args.held_out or held_out(s.image.name)][: args.limit]
        reader = build_reader(settings, region_for(folder, configured_region(settings)))
        tally, start = Tally(), time.perf_counter()
        for sample in samples:
            run_sample(sample, detector, reader, settings, tally)
        print(tally.row(name, time.perf_counter() - start))


if __name__ == "__main__":
    main()
