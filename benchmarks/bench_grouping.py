"""How well the sighting pool turns a road's reads into one sighting per car, on sequences made of real
photos: cars spaced out, back to back, and queued two in view. `bench_voting.py` measures the vote over
one plate's frames; this measures the grouping between plates: merges (one car's sighting takes the next
car's reads), splits, misses, and sightings of no plate (stickers, signs).

Method, per set (us, eu, br photos of the OpenALPR benchmark, `NAME.txt` ground truth):

1. CARS photos are drawn (seeded) from those whose plate is at least MIN_PLATE_PX wide. Each becomes a
   car: the photo's region around its plate (the car's rear, stickers and all: the box grown by SPRITE
   plate widths and heights), pasted on a fixed road on a 1280x720 frame.
2. Each car drives through the frame in PASS_S (seeded within its range): its plate's centre moves from
   the far end of the road (y 230) to the near (y 620), drifting sideways up to DRIFT_PX, and its plate
   grows from 40% to 100% of min(160 px, 1.5 times its width in the photo). Frames are sampled at the
   default 5 frames/s. Five scenarios: `spaced` (ROAD_S of empty road between cars), `back_to_back`
   (the next car enters as the last leaves), `queued` (the next car enters when the last is 70% of
   the way through: two cars in view, the nearer drawn over the farther) and `occluded` (spaced, each
   plate hidden for the OCCLUDED share of its pass: its reads before and after are one car's) and
   `two_lanes` (cars in turn in two lanes LANE_PX either side of the road's centre, each entering half
   way through the last one's pass: two cars side by side, a lane's next about as its last leaves).
3. Every frame goes through the default detector and reader as the pipeline's `process_batch` does
   (boxes_to_read, crop with the configured margin, read_plates); each read becomes an Observation.
   A read is of a car's plate when its box's centre lies near that plate (`Trace.car_of`), else of no
   plate. The plates' boxes and the reads are written to `--trace` (JSON) and read from it when it
   exists: grouping rules are then measured again in seconds (a trace is not checked against the code
   or the scenarios that made it: delete it when they change).
4. The reads go, frame by frame, through `SightingTracker` at the configured gap, and the closed tracks
   that `is_vehicle_pass` keeps are the sightings; each sighting's reads are known by following the
   tracks. Scored per scenario, over the cars read at least once:
   - one sighting: the car's reads went to exactly one sighting (most of whose plate reads are its);
   - plate right: that sighting's voted plate is the car's (exact);
   - merged: cars whose reads went into a sighting most of whose plate reads are another car's;
   - split: the extra sightings of cars whose reads made more than one;
   - no-plate sightings: sightings made of reads of no plate only (stickers, signs, text on the car).

Nothing here is tuned to the images; the geometry is fixed above.

`--every 2 5` scores the same reads again as cameras sampling 2.5 and 1 frames/s would have them.

    .venv/bin/python benchmarks/bench_grouping.py [--sets us eu br] [--cars 20] [--trace FILE] [--every 1 2 5]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

import cv2
import numpy as np

from alpr.ground_truth import configured_region, load_samples, region_for
from alpr.wiring import build_detector, build_reader
from common import defaults, geometry
from common.config import Settings
from common.types import BoxXYXY, Observation
from detector_worker.core import boxes_to_read
from sighting_worker.core import SightingTracker, is_vehicle_pass

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "openalpr-endtoend"
FRAME_W, FRAME_H = 1280, 720
FAR_Y, NEAR_Y = 230.0, 620.0
"""Where a plate's centre enters and leaves the road, pixels from the top."""
DRIFT_PX = 120.0
MIN_PLATE_PX = 60
"""Photos whose plate is narrower are not drawn (upscaled 3 times, a plate is blur)."""
SPRITE = (1.6, 4.0, 1.6, 2.0)
"""How far a car's region reaches around its plate: plate widths left and right, heights up and down."""
PASS_S = (1.6, 2.4)
ROAD_S = 1.2
QUEUE_AT = 0.7
"""`queued`: how far through its pass the last car is when the next enters."""
MATCH_GROWTH = 0.5
"""A read is of a car's plate when its box's centre lies in the plate's box grown by this share per side."""
OCCLUDED = (0.35, 0.7)
"""`occluded`: the share of its pass during which a car's plate is hidden (a van passing in front)."""
LANE_PX = 270.0
"""`two_lanes`: how far each lane's centre lies from the road's at the near end (half that at the far)."""
SCENARIOS = ("spaced", "back_to_back", "queued", "occluded", "two_lanes")


@dataclass(frozen=True)
class Car:
    """A car of a scenario: its photo's plate, when it enters and how long it takes to pass."""

    plate: str
    enters_s: float
    pass_s: float
    drift_px: float
    lane_px: float = 0.0


@dataclass(frozen=True)
class Read:
    """A read of the trace: the frame, its time, the box, the text and the calibrated confidence."""

    frame: int
    time_s: float
    box: BoxXYXY
    text: str
    confidence: float


@dataclass(frozen=True)
class Trace:
    """A scenario's cars (their plates), the plate boxes in each frame (car, box; nearest last) and the reads."""

    plates: list[str]
    boxes: dict[int, list[tuple[int, BoxXYXY]]]
    reads: list[Read]

    def to_json(self) -> dict[str, object]:
        return {"plates": self.plates, "boxes": {str(k): v for k, v in self.boxes.items()},
                "reads": [asdict(read) for read in self.reads]}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> Trace:  # type: ignore[type-arg]
        boxes = {int(k): [(int(car), tuple(box)) for car, box in v] for k, v in data["boxes"].items()}
        reads = [Read(**{**read, "box": tuple(read["box"])}) for read in data["reads"]]
        return cls(list(data["plates"]), boxes, reads)  # type: ignore[arg-type]

    def every(self, step: int) -> Trace:
        """The trace as a camera sampling every `step`-th of its frames would have read it."""
        boxes = {frame: plates for frame, plates in self.boxes.items() if frame % step == 0}
        return Trace(self.plates, boxes, [read for read in self.reads if read.frame % step == 0])

    def car_of(self, read: Read) -> int:
        """The car whose plate the read is (-1: none): the nearest car whose plate box, grown by
        MATCH_GROWTH of its size on every side, holds the read's centre."""
        x, y = (read.box[0] + read.box[2]) / 2, (read.box[1] + read.box[3]) / 2
        for car, (x1, y1, x2, y2) in reversed(self.boxes.get(read.frame, [])):
            grow_x, grow_y = MATCH_GROWTH * (x2 - x1), MATCH_GROWTH * (y2 - y1)
            if x1 - grow_x <= x <= x2 + grow_x and y1 - grow_y <= y <= y2 + grow_y:
                return car
        return -1


def sprite_of(image: np.ndarray, box: BoxXYXY) -> tuple[np.ndarray, BoxXYXY]:
    """The region of the photo around its plate, and the plate's box in it."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, up, right, down = SPRITE
    sx1, sy1 = max(0, int(x1 - left * w)), max(0, int(y1 - up * h))
    sx2, sy2 = min(image.shape[1], int(x2 + right * w)), min(image.shape[0], int(y2 + down * h))
    return image[sy1:sy2, sx1:sx2], (x1 - sx1, y1 - sy1, x2 - sx1, y2 - sy1)


def road() -> np.ndarray:
    """The empty road every car drives on: grey asphalt with grain, lane lines, a verge."""
    rng = np.random.default_rng(11)
    frame = np.clip(rng.normal(95, 12, (FRAME_H, FRAME_W, 3)), 0, 255).astype(np.uint8)
    frame[:140] = (150, 140, 120)
    for x in (300, 980):
        for y in range(160, FRAME_H, 90):
            cv2.line(frame, (x, y), (x, y + 45), (220, 220, 220), 6)
    return frame


def place(frame: np.ndarray, sprite: np.ndarray, plate: BoxXYXY, centre: tuple[float, float], width: float) -> BoxXYXY:
    """Paste the sprite scaled so that its plate is `width` wide with its centre at `centre`; the plate's box."""
    scale = width / (plate[2] - plate[0])
    scaled = cv2.resize(
        sprite, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    ox = centre[0] - scale * (plate[0] + plate[2]) / 2
    oy = centre[1] - scale * (plate[1] + plate[3]) / 2
    x0, y0 = int(round(ox)), int(round(oy))
    fx1, fy1 = max(0, x0), max(0, y0)
    fx2, fy2 = min(FRAME_W, x0 + scaled.shape[1]), min(FRAME_H, y0 + scaled.shape[0])
    if fx2 > fx1 and fy2 > fy1:
        frame[fy1:fy2, fx1:fx2] = scaled[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0]
    return ox + scale * plate[0], oy + scale * plate[1], ox + scale * plate[2], oy + scale * plate[3]


def schedule(plates: list[str], scenario: str, rng: random.Random) -> list[Car]:
    cars, enters_s = [], 0.5
    for index, plate in enumerate(plates):
        lane_px = (-LANE_PX, LANE_PX)[index % 2] if scenario == "two_lanes" else 0.0
        drift_px = rng.uniform(-DRIFT_PX, DRIFT_PX) / (3 if lane_px else 1)
        car = Car(plate, enters_s, rng.uniform(*PASS_S), drift_px, lane_px)
        cars.append(car)
        after = {"spaced": car.pass_s + ROAD_S, "back_to_back": car.pass_s, "queued": QUEUE_AT * car.pass_s,
                 "occluded": car.pass_s + ROAD_S, "two_lanes": 0.5 * car.pass_s}  # fmt: skip
        enters_s += after[scenario]
    return cars


def frames_of(cars: list[Car], sprites: list[tuple[np.ndarray, BoxXYXY]], widths: list[float], occluded: bool):  # type: ignore[no-untyped-def]
    """Each sampled frame of the scenario and the plate boxes of the cars in it (car index, box)."""
    background = road()
    end_s = max(car.enters_s + car.pass_s for car in cars) + 0.5
    for index in range(int(end_s * defaults.SAMPLE_FPS)):
        time_s = index / defaults.SAMPLE_FPS
        frame, plates = background.copy(), []
        in_view = [(i, (time_s - car.enters_s) / car.pass_s) for i, car in enumerate(cars)]
        for i, progress in sorted((item for item in in_view if 0 <= item[1] <= 1), key=lambda item: item[1]):
            car = cars[i]
            x = FRAME_W / 2 + car.lane_px * (0.5 + 0.5 * progress) + car.drift_px * progress
            centre = (x, FAR_Y + (NEAR_Y - FAR_Y) * progress)
            box = place(frame, *sprites[i], centre, widths[i] * (0.4 + 0.6 * progress))
            if occluded and OCCLUDED[0] <= progress <= OCCLUDED[1]:
                x1, y1, x2, y2 = (int(v) for v in box)
                cv2.rectangle(frame, (x1 - 40, y1 - 60), (x2 + 40, y2 + 30), (60, 62, 70), -1)
                continue
            plates.append((i, box))
        yield index, time_s, frame, plates


def photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return image


def trace_scenario(folder: Path, scenario: str, count: int, settings: Settings, detector, reader) -> Trace:  # type: ignore[no-untyped-def]
    """The cars, plate boxes and reads of one scenario of `count` cars of the set in `folder`."""
    samples = [s for s in load_samples(folder)[0] if s.box_xyxy and s.box_xyxy[2] - s.box_xyxy[0] >= MIN_PLATE_PX]
    rng = random.Random(f"{folder.name}:{scenario}")
    chosen = rng.sample(samples, min(count, len(samples)))
    sprites = [sprite_of(photo(s.image), s.box_xyxy) for s in chosen if s.box_xyxy]
    widths = [min(160.0, 1.5 * (box[2] - box[0])) for _, box in sprites]
    cars = schedule([s.plate for s in chosen], scenario, rng)
    trace = Trace([car.plate for car in cars], {}, [])
    for index, time_s, frame, plates in frames_of(cars, sprites, widths, scenario == "occluded"):
        trace.boxes[index] = plates
        found = boxes_to_read(detector.detect([frame])[0], None, detector.settings.confidence)
        boxes = list(found.boxes())
        crops = [geometry.crop(frame, box, settings.ocr_crop_margin) for box, _ in boxes]
        edges = [geometry.at_side_edge(box, FRAME_W) for box, _ in boxes]
        for read in reader.read_plates(crops, boxes, edges):
            if read.best is not None:
                trace.reads.append(Read(index, time_s, read.box_xyxy, read.text, min(1.0, max(0.0, read.confidence))))
    return trace


@dataclass
class Score:
    cars: int = 0
    one_sighting: int = 0
    plate_right: int = 0
    merged: int = 0
    split: int = 0
    no_plate: int = 0
    sightings: int = 0


def score(trace: Trace, gap_s: float, min_confidence: float) -> Score:
    """Group the reads as the sighting pool does and score the sightings against the cars."""
    reads, plates = trace.reads, trace.plates
    tracker = SightingTracker(gap_s)
    members: dict[str, list[Read]] = defaultdict(list)
    sightings = []
    by_frame: dict[int, list[Read]] = defaultdict(list)
    for read in reads:
        by_frame[read.frame].append(read)
    for frame in sorted(by_frame):
        group = by_frame[frame]
        observations = [
            Observation("cam", f"f{frame}", i, r.time_s, r.box, r.text, r.confidence) for i, r in enumerate(group)
        ]
        closed, went_to = tracker.observe_frame_joined(observations)
        for sighting_id, read in zip(went_to, group, strict=True):
            members[sighting_id].append(read)
        sightings += closed
    sightings += tracker.close_all()
    kept = [s for s in sightings if is_vehicle_pass(s, min_confidence)]
    result = Score(sightings=len(kept))
    owner = {}
    for sighting in kept:
        cars = Counter(trace.car_of(read) for read in members[sighting.sighting_id] if trace.car_of(read) >= 0)
        owner[sighting.sighting_id] = cars.most_common(1)[0][0] if cars else -1
        result.no_plate += not cars
    for car in sorted({trace.car_of(read) for read in reads} - {-1}):
        result.cars += 1
        holding = [s for s in kept if any(trace.car_of(r) == car for r in members[s.sighting_id])]
        own = [s for s in holding if owner[s.sighting_id] == car]
        result.merged += any(owner[s.sighting_id] != car for s in holding)
        result.split += max(0, len(own) - 1)
        if len(holding) == 1 and own:
            result.one_sighting += 1
            result.plate_right += own[0].plate == plates[car]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["us", "eu", "br"])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--cars", type=int, default=20)
    parser.add_argument("--every", type=int, nargs="+", default=[1], help="score every Nth frame too (1 fps: 5)")
    parser.add_argument("--trace", type=Path, help="JSON of the reads: written when missing, else read")
    args = parser.parse_args()
    settings = Settings.load({})
    traces: dict[str, dict] = {}
    if args.trace and args.trace.exists():
        traces = json.loads(args.trace.read_text())
    else:
        detector = build_detector(settings)
        for name in args.sets:
            folder = DATASETS / name
            reader = build_reader(settings, region_for(folder, configured_region(settings)))
            for scenario in args.scenarios:
                start = time.perf_counter()
                trace = trace_scenario(folder, scenario, args.cars, settings, detector, reader)
                traces[f"{name}/{scenario}"] = trace.to_json()
                print(
                    f"traced {name}/{scenario}: {len(trace.reads)} reads in {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
        if args.trace:
            args.trace.write_text(json.dumps(traces))
    print(f"gap {settings.sighting_gap_s:g} s, vehicle pass at {settings.ocr_min_confidence:g}")
    for every in args.every:
        print(f"\nsampled at {defaults.SAMPLE_FPS / every:g} frames/s (every {every} of the trace's frames)")
        print(
            f"{'scenario':22} {'cars':>4} {'one':>4} {'right':>5} {'merged':>6} {'split':>5} {'no plate':>8} sightings"
        )
        total = Score()
        for key, data in traces.items():
            row = score(Trace.from_json(data).every(every), settings.sighting_gap_s, settings.ocr_min_confidence)
            print_row(key, row)
            total = Score(*(a + b for a, b in zip(astuple(total), astuple(row), strict=True)))
        print_row("all", total)


def print_row(name: str, s: Score) -> None:
    counts = f"{s.cars:4} {s.one_sighting:4} {s.plate_right:5} {s.merged:6} {s.split:5} {s.no_plate:8} {s.sightings:9}"
    print(f"{name:22} {counts}")


if __name__ == "__main__":
    main()
