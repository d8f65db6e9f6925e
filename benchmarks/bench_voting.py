"""How much voting over a short sequence of frames adds to exact accuracy, measured on real photos
(issue 10 §1): each photo of the OpenALPR sets becomes a short synthetic sequence of one plate, and
the plate voted over the sequence is scored against the single frames.

Method, per photo of each set (us, eu, br, `NAME.txt` ground truth, loaded as `alpr eval` does):

1. The default detector runs once on the full photo. The detection scored is the one `alpr eval`
   would count: the box of highest IoU with the ground-truth box; a photo whose best IoU is under
   0.3 is what eval counts as not detected, and is skipped here (the counts are printed).
2. The region around that box (the box grown by CONTEXT of its width and height on each side) is cut
   out and turned into `--frames` frames, each an independent, realistic degradation of it such as a
   car passing a camera gives, drawn from a generator seeded by the photo's name (reproducible):
   - the detector box shifted by 5-10% of its width and of its height (random direction per axis);
   - the region resized by a scale in 0.85-1.15;
   - on half the frames a mild blur: horizontal motion blur (3-5 px) or Gaussian (sigma 0.5-1.0);
   - brightness/contrast jitter (gain 0.8-1.2, offset -20..20);
   - JPEG re-encoding at quality 50-90.
3. Each frame's crop (`common.geometry.crop` of the shifted box, the configured margin) is read by
   the default reader for the set's region, one `read_plates` call per frame as the pipeline does.
4. Scored, exact top-1 against the ground truth:
   - photo: the undegraded photo's read of the same box (about what `alpr eval` scores);
   - single frame: the mean over all frames of "the frame's best read == truth";
   - first frame: frame 0 alone; any frame: at least one frame right (the ceiling of voting);
   - voted: `sighting_worker.vote` over the frames' reads (text and calibrated confidence);
   - the same reads fed to a `SightingTracker` (the configured gap), 0.2 s apart, the box placed in a
     virtual camera frame drifting DRIFT_WIDTHS plate widths per frame (the car moving): it should
     make exactly one sighting per sequence with the voted plate; splits and disagreements are
     counted;
   - coverage at the configured threshold (0.85): the share of single frames, and of sequences by
     their voted confidence, at or above it, and the wrong share among those accepted.
   Times: detection ms per photo; ms per sequence = making the frames and reading them.

Nothing here is tuned to the images; the degradation ranges are fixed above.

    .venv/bin/python benchmarks/bench_voting.py [--sets us eu br] [--frames 8] [--limit K]
"""

from __future__ import annotations

import argparse
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from alpr.eval_scoring import iou
from alpr.ground_truth import Sample, configured_region, load_samples, region_for
from alpr.wiring import build_detector, build_reader
from common import geometry
from common.config import Settings
from common.types import BoxXYXY, Observation
from detector_worker.core import PlateDetector
from ocr_worker.core import PlateReader
from sighting_worker.core import SightingTracker, vote

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "openalpr-endtoend"
"""The OpenALPR benchmark photos (one folder per region)."""

DETECTED_IOU = 0.3
"""IoU with the ground-truth box from which `alpr eval` counts a plate as detected."""

CONTEXT = 1.0
"""How far the region around the plate box reaches, a fraction of the box's width/height per side."""

SHIFT = (0.05, 0.10)
"""Range of the box shift per frame, a fraction of the box's width (x) and height (y)."""

SCALE = (0.85, 1.15)
"""Range of the region's resize factor per frame."""

BLUR_SHARE = 0.5
"""Share of frames blurred (half of them by motion blur, half by Gaussian blur)."""

MOTION_BLUR_PX = (3, 5)
"""Range of the horizontal motion-blur kernel's length, pixels."""

GAUSSIAN_SIGMA = (0.5, 1.0)
"""Range of the Gaussian blur's sigma, pixels."""

GAIN = (0.8, 1.2)
"""Range of the contrast gain."""

OFFSET = (-20.0, 20.0)
"""Range of the brightness offset, grey levels."""

JPEG_QUALITY = (50, 90)
"""Range of the JPEG re-encoding quality."""

FRAME_INTERVAL_S = 0.2
"""Capture time between frames of a sequence, seconds."""

DRIFT_WIDTHS = 0.3
"""How far the plate moves in the virtual camera frame between frames, in plate widths (for the tracker)."""


@dataclass(frozen=True)
class Frame:
    """One degraded frame: the image, the detector's (shifted) box in it and, for the tracker, that box
    in the virtual camera frame."""

    image: np.ndarray
    box_xyxy: BoxXYXY
    camera_box_xyxy: BoxXYXY


@dataclass
class SetTally:
    """Counts for one set."""

    photos: int = 0
    not_detected: int = 0
    sequences: int = 0
    frames: int = 0
    photo_right: int = 0
    frame_right: int = 0
    first_right: int = 0
    any_right: int = 0
    voted_right: int = 0
    frame_accepted: int = 0
    frame_accepted_wrong: int = 0
    voted_accepted: int = 0
    voted_accepted_wrong: int = 0
    split: int = 0
    tracker_disagrees: int = 0
    detect_s: float = 0.0
    sequence_s: float = 0.0
    splits: list[str] = field(default_factory=list)


def seed_for(sample: Sample) -> int:
    """A fixed seed per photo and plate (the same every run, unlike `hash`)."""
    return zlib.crc32(f"{sample.image.name}:{sample.plate}".encode())


def degrade(photo: np.ndarray, box: BoxXYXY, index: int, rng: random.Random) -> Frame:
    """Frame `index` of the sequence: the region around `box`, degraded (see the module docstring)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, top, right, bottom = geometry.grow_box(box, CONTEXT, (photo.shape[0], photo.shape[1]))
    region = photo[top:bottom, left:right]
    dx = rng.choice((-1, 1)) * rng.uniform(*SHIFT) * w
    dy = rng.choice((-1, 1)) * rng.uniform(*SHIFT) * h
    scale = rng.uniform(*SCALE)
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    image = cv2.resize(region, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if rng.random() < BLUR_SHARE:
        if rng.random() < 0.5:
            length = rng.randint(*MOTION_BLUR_PX)
            kernel = np.full((1, length), 1.0 / length, np.float32)
            image = cv2.filter2D(image, -1, kernel)
        else:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*GAUSSIAN_SIGMA))
    image = cv2.convertScaleAbs(image, alpha=rng.uniform(*GAIN), beta=rng.uniform(*OFFSET))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(*JPEG_QUALITY)])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise RuntimeError("JPEG re-encoding failed")
    image = decoded
    fx1, fy1 = (x1 + dx - left) * scale, (y1 + dy - top) * scale
    frame_box = (fx1, fy1, fx1 + w * scale, fy1 + h * scale)
    drift = index * DRIFT_WIDTHS * w
    camera_box = (frame_box[0] + drift, frame_box[1], frame_box[2] + drift, frame_box[3])
    return Frame(image, frame_box, camera_box)


def matched_box(detector: PlateDetector, photo: np.ndarray, truth: BoxXYXY) -> tuple[BoxXYXY, float] | None:
    """The detection of highest IoU with the ground-truth box, None when eval counts it not detected."""
    boxes = list(detector.detect([photo])[0].boxes())
    if not boxes:
        return None
    best = max(boxes, key=lambda pair: iou(pair[0], truth))
    return best if iou(best[0], truth) >= DETECTED_IOU else None


def run_sequence(
    sample: Sample,
    photo: np.ndarray,
    detection: tuple[BoxXYXY, float],
    reader: PlateReader,
    settings: Settings,
    frames: int,
    tally: SetTally,
) -> None:
    """Makes and reads one photo's sequence and adds its outcome to `tally`."""
    box, detection_confidence = detection
    threshold = settings.ocr_min_confidence
    margin = settings.ocr_crop_margin
    photo_read = reader.read_plates([geometry.crop(photo, box, margin)], [detection])[0]
    start = time.perf_counter()
    rng = random.Random(seed_for(sample))
    observations = []
    for index in range(frames):
        frame = degrade(photo, box, index, rng)
        crop = geometry.crop(frame.image, frame.box_xyxy, margin)
        read = reader.read_plates([crop], [(frame.box_xyxy, detection_confidence)])[0]
        observations.append(
            Observation(
                "bench", f"{sample.image.stem}-{index}", 0, index * FRAME_INTERVAL_S, frame.camera_box_xyxy,
                read.text, min(1.0, max(0.0, read.confidence)),
            )
        )  # fmt: skip
    tally.sequence_s += time.perf_counter() - start
    plate, confidence = vote(observations)
    tracker = SightingTracker(settings.sighting_gap_s)
    sightings = []
    for observation in observations:
        sightings += tracker.observe_frame([observation])
    sightings += tracker.close_all()
    right = [o.text == sample.plate for o in observations]
    tally.sequences += 1
    tally.frames += frames
    tally.photo_right += photo_read.text == sample.plate
    tally.frame_right += sum(right)
    tally.first_right += right[0]
    tally.any_right += any(right)
    tally.voted_right += plate == sample.plate
    for o, ok in zip(observations, right, strict=True):
        if o.text and o.confidence >= threshold:
            tally.frame_accepted += 1
            tally.frame_accepted_wrong += not ok
    if plate and confidence >= threshold:
        tally.voted_accepted += 1
        tally.voted_accepted_wrong += plate != sample.plate
    if len(sightings) != 1:
        tally.split += 1
        tally.splits.append(f"{sample.image.name}: {[(s.plate, s.reads) for s in sightings]}")
    elif sightings[0].plate != plate:
        tally.tracker_disagrees += 1


def run_set(folder: Path, detector: PlateDetector, settings: Settings, frames: int, limit: int | None) -> SetTally:
    samples, crops = load_samples(folder)
    if crops:
        raise SystemExit(f"{folder} holds plate crops, not photos with plate boxes")
    reader = build_reader(settings, region_for(folder, configured_region(settings)))
    tally = SetTally()
    photos: dict[Path, np.ndarray] = {}
    for sample in samples[:limit]:
        assert sample.box_xyxy is not None
        photo = photos.get(sample.image)
        if photo is None:
            photo = cv2.imread(str(sample.image))
            if photo is None:
                raise SystemExit(f"cannot decode {sample.image}")
            photos = {sample.image: photo}
        tally.photos += 1
        start = time.perf_counter()
        detection = matched_box(detector, photo, sample.box_xyxy)
        tally.detect_s += time.perf_counter() - start
        if detection is None:
            tally.not_detected += 1
            continue
        run_sequence(sample, photo, detection, reader, settings, frames, tally)
    return tally


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}" if whole else "    -"


def print_table(results: dict[str, SetTally], frames: int, threshold: float) -> None:
    print(f"\n{frames} frames per sequence; exact top-1 %; coverage / wrong among accepted at {threshold:.2f}")
    header = (
        f"{'set':<4} {'photos':>6} {'not det':>7} {'n':>4} | {'photo':>5} {'single':>6} {'first':>5} {'any':>5} "
        f"{'voted':>5} | {'single cov/wrong':>16} {'voted cov/wrong':>16} | {'split':>5} {'disagr':>6} | "
        f"{'det ms':>6} {'ms/seq':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, t in results.items():
        single = f"{percent(t.frame_accepted, t.frames)} / {percent(t.frame_accepted_wrong, t.frame_accepted)}"
        voted = f"{percent(t.voted_accepted, t.sequences)} / {percent(t.voted_accepted_wrong, t.voted_accepted)}"
        print(
            f"{name:<4} {t.photos:>6} {t.not_detected:>7} {t.sequences:>4} | {percent(t.photo_right, t.sequences)} "
            f"{percent(t.frame_right, t.frames):>6} {percent(t.first_right, t.sequences)} "
            f"{percent(t.any_right, t.sequences)} {percent(t.voted_right, t.sequences)} | {single:>16} {voted:>16} | "
            f"{t.split:>5} {t.tracker_disagrees:>6} | {1000 * t.detect_s / max(t.photos, 1):6.0f} "
            f"{1000 * t.sequence_s / max(t.sequences, 1):7.0f}"
        )
    for name, t in results.items():
        for line in t.splits:
            print(f"split ({name}) {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["us", "eu", "br"], help="set folders under --root")
    parser.add_argument("--frames", type=int, default=8, help="frames per sequence")
    parser.add_argument("--limit", type=int, default=None, help="at most K photos (ground-truth plates) per set")
    parser.add_argument("--root", type=Path, default=DATASETS, help="the OpenALPR end-to-end benchmark folder")
    args = parser.parse_args()
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    settings = Settings.load()
    detector = build_detector(settings)
    results = {}
    start = time.perf_counter()
    for name in args.sets:
        results[name] = run_set(args.root / name, detector, settings, args.frames, args.limit)
        print(f"{name}: {results[name].sequences} sequences, {time.perf_counter() - start:.0f} s so far", flush=True)
    print_table(results, args.frames, settings.ocr_min_confidence)


if __name__ == "__main__":
    main()
