"""`alpr demo-clip`: a synthetic traffic clip with known plates, so the project ships no real video.
Cars drive towards the camera over a road, one at a time or side by side; each carries a plate
(plate-like font, border, header) under perspective, motion blur and sensor noise. A JSON sidecar
holds the plates and their boxes."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import OutputError
from common.private_files import make_private_folders

DEFAULT_PLATES = ("KPX4721", "7ABC284", "GHT2093")
"""Plates of the default clip, one car each, all valid `us` formats."""

FRAME_SIZE_WH = (1280, 720)
CLIP_FPS = 10.0
SECONDS_PER_CAR = 4.0
PLATE_SIZE_WH = (520, 260)
"""The plate drawn at full resolution before it is shrunk into the scene (US ratio 2:1)."""


@dataclass(frozen=True)
class CarPass:
    plate: str
    colour_bgr: tuple[int, int, int]
    lane_x: float  # centre of the car's path, as a fraction of the frame width
    tilt: float  # perspective skew of the plate, -1..1


def draw_plate(text: str) -> np.ndarray:
    """A white plate with a dark border, a small header and the registration in large dark type."""
    width, height = PLATE_SIZE_WH
    plate = np.full((height, width, 3), (235, 240, 242), np.uint8)
    cv2.rectangle(plate, (6, 6), (width - 7, height - 7), (40, 40, 40), 8)
    cv2.putText(plate, "DEMO STATE", (150, 52), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (140, 60, 20), 3, cv2.LINE_AA)
    # Characters one by one, drawn tall and narrow like plate type, each centred in its own cell.
    char_w, char_h = 46, 104
    cell = min(68, (width - 50) // max(1, len(text)))
    left, top = (width - cell * len(text)) // 2, (height - char_h) // 2 + 22
    for index, char in enumerate(text):
        glyph = np.zeros((160, 160), np.uint8)
        cv2.putText(glyph, char, (20, 130), cv2.FONT_HERSHEY_DUPLEX, 4.0, 255, 11, cv2.LINE_AA)
        ys, xs = np.nonzero(glyph)
        shape = cv2.resize(glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], (char_w, char_h))
        x = left + index * cell + (cell - char_w) // 2
        region = plate[top : top + char_h, x : x + char_w]
        ink = (shape.astype(np.float32) / 255.0)[..., None]
        region[:] = (region * (1 - ink) + np.array([25, 25, 30]) * ink).astype(np.uint8)
    return plate


def draw_background(rng: np.random.Generator) -> np.ndarray:
    width, height = FRAME_SIZE_WH
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    road = (70 + 50 * y) * np.ones((1, width), np.float32)
    frame = np.repeat(road[:, :, None], 3, axis=2).astype(np.uint8)
    frame[: height // 4] = (190, 170, 150)  # sky and buildings, far away
    for x in range(0, width, 160):
        cv2.rectangle(frame, (x + 10, 40), (x + 120, height // 4), tuple(int(v) for v in rng.integers(90, 160, 3)), -1)
    for lane in (0.33, 0.66):
        for k in range(8):
            y0 = height // 4 + k * 70
            cv2.line(frame, (int(width * lane), y0), (int(width * lane), y0 + 35), (220, 220, 220), 6)
    return frame


def draw_car(frame: np.ndarray, car: CarPass, progress: float, plate: np.ndarray) -> tuple[float, float, float, float]:
    """Draw the car at `progress` (0 far, 1 near) and return its plate's box (x1, y1, x2, y2)."""
    width, height = FRAME_SIZE_WH
    scale = 0.45 + 0.75 * progress
    car_w, car_h = int(360 * scale), int(250 * scale)
    cx = int(width * car.lane_x)
    bottom = int(height * (0.55 + 0.4 * progress))
    x1, y1 = cx - car_w // 2, bottom - car_h
    body = tuple(int(v) for v in car.colour_bgr)
    cv2.rectangle(frame, (x1, y1 + car_h // 3), (x1 + car_w, bottom), body, -1)
    roof = np.array(
        [
            [x1 + car_w // 6, y1 + car_h // 3],
            [x1 + car_w // 4, y1],
            [x1 + 3 * car_w // 4, y1],
            [x1 + 5 * car_w // 6, y1 + car_h // 3],
        ]
    )
    cv2.fillPoly(frame, [roof], body)
    glass = np.array(
        [
            [x1 + car_w // 5, y1 + car_h // 3 - 4],
            [x1 + car_w // 4 + 8, y1 + 8],
            [x1 + 3 * car_w // 4 - 8, y1 + 8],
            [x1 + 4 * car_w // 5, y1 + car_h // 3 - 4],
        ]
    )
    cv2.fillPoly(frame, [glass], (60, 50, 45))
    light_w, light_h = car_w // 6, car_h // 10
    for lx in (x1 + car_w // 14, x1 + car_w - car_w // 14 - light_w):
        cv2.rectangle(frame, (lx, y1 + car_h // 2), (lx + light_w, y1 + car_h // 2 + light_h), (40, 40, 200), -1)
    cv2.rectangle(frame, (x1 - 4, bottom - car_h // 7), (x1 + car_w + 4, bottom), (35, 35, 35), -1)
    plate_w = int(car_w * 0.36)
    plate_h = plate_w // 2
    px1, py1 = cx - plate_w // 2, bottom - car_h // 7 - plate_h - int(4 * scale)
    skew = car.tilt * plate_h * 0.15
    src = np.array(
        [[0, 0], [PLATE_SIZE_WH[0], 0], [PLATE_SIZE_WH[0], PLATE_SIZE_WH[1]], [0, PLATE_SIZE_WH[1]]], np.float32
    )
    dst = np.array(
        [
            [px1, py1 + skew],
            [px1 + plate_w, py1 - skew],
            [px1 + plate_w, py1 + plate_h + skew],
            [px1, py1 + plate_h - skew],
        ],
        np.float32,
    )
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plate, matrix, FRAME_SIZE_WH, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full(plate.shape[:2], 255, np.uint8), matrix, FRAME_SIZE_WH)
    frame[mask > 127] = warped[mask > 127]
    xs, ys = dst[:, 0], dst[:, 1]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def make_clip(path: Path, plates: Sequence[str | tuple[str, ...]] = DEFAULT_PLATES, seed: int = 7) -> dict[str, object]:
    """Write the clip (mp4) and its sidecar `<path>.json`; returns the sidecar's content. Each entry of
    `plates` is one pass of SECONDS_PER_CAR: one car, or a tuple of cars driving side by side. Both are
    written to partial files beside `path` and renamed into place once whole: Ctrl-C left a clip cut short
    at `path`, in place of a whole one that was there (a review)."""
    rng = np.random.default_rng(seed)
    background = draw_background(rng)
    colours = [(150, 60, 30), (40, 40, 160), (200, 200, 200), (40, 120, 40), (20, 20, 20)]
    passes: list[list[CarPass]] = []
    for i, group in enumerate(plates):
        texts = (group,) if isinstance(group, str) else group
        lanes = [0.3 + 0.4 * ((i * 0.37) % 1.0)] if len(texts) == 1 else list(np.linspace(0.25, 0.75, len(texts)))
        passes.append([CarPass(text, colours[(i + k) % len(colours)], float(lane), float(rng.uniform(-1, 1)))
                       for k, (text, lane) in enumerate(zip(texts, lanes, strict=True))])  # fmt: skip
    make_private_folders(path.parent)  # 0700 whatever the umask: `make demo` logs and writes its output there
    if path.is_dir():
        raise OutputError(f"cannot write a video at {path}: name an .mp4 file in a folder that exists")
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # its suffix: VideoWriter's container
    try:
        truth = draw_clip(partial, passes, background, rng, path)
        partial.with_suffix(partial.suffix + ".json").write_text(json.dumps(truth, indent=1))
        partial.replace(path)  # a clip cut short (Ctrl-C) neither lies at `path` nor replaces a whole one there
        partial.with_suffix(partial.suffix + ".json").replace(path.with_suffix(path.suffix + ".json"))
    except BaseException:
        for left in (partial, partial.with_suffix(partial.suffix + ".json")):
            left.unlink(missing_ok=True)
        raise
    return truth


def draw_clip(
    path: Path, passes: list[list[CarPass]], background: np.ndarray, rng: np.random.Generator, named: Path
) -> dict[str, object]:
    """The clip of `passes` written to `path` (the partial file of the one `named`); its sidecar's content."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), CLIP_FPS, FRAME_SIZE_WH)
    if not writer.isOpened():  # a folder or a .txt: it said "wrote" and left only the sidecar (a review)
        raise OutputError(f"cannot write a video at {named}: name an .mp4 file in a folder that exists")
    frames_per_car = int(SECONDS_PER_CAR * CLIP_FPS)
    boxes: list[dict[str, object]] = []
    for pass_index, cars in enumerate(passes):
        plate_images = [draw_plate(car.plate) for car in cars]
        for step in range(frames_per_car):
            frame = background.copy()
            for car, plate_image in zip(cars, plate_images, strict=True):
                box = draw_car(frame, car, step / (frames_per_car - 1), plate_image)
                boxes.append({"frame_index": pass_index * frames_per_car + step, "plate": car.plate, "box_xyxy": box})
            blur = 3 + 2 * (step % 3)  # the car's motion between exposures
            kernel = np.zeros((blur, blur), np.float32)
            kernel[:, blur // 2] = 1.0 / blur
            frame = cv2.filter2D(frame, -1, kernel)
            noise = rng.normal(0, 4.0, frame.shape).astype(np.float32)
            frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            writer.write(frame)
    writer.release()
    flat = [car.plate for cars in passes for car in cars]
    return {"fps": CLIP_FPS, "region": "us", "plates": flat, "boxes": boxes}


CALIBRATION_FRAMES = 16
"""Frames of the default clip the int8 detector is calibrated on (`alpr setup`): every CALIBRATION_STEP-th."""

CALIBRATION_STEP = 7


def calibration_frames() -> list[np.ndarray]:
    """The frames `alpr setup` calibrates the int8 detector on: the default clip written and decoded as a
    camera's video is (its codec's blocks and ringing included), every CALIBRATION_STEP-th frame, 16 in all:
    three cars from far to near. The clip is drawn from a fixed seed, so every setup calibrates alike."""
    with tempfile.TemporaryDirectory(prefix="alpr-calibration-") as folder:
        path = Path(folder) / "clip.mp4"
        make_clip(path)
        capture = cv2.VideoCapture(str(path))
        frames: list[np.ndarray] = []
        index = 0
        while len(frames) < CALIBRATION_FRAMES:
            ok, frame = capture.read()
            if not ok:
                break
            if index % CALIBRATION_STEP == 0:
                frames.append(frame)
            index += 1
        capture.release()
    if len(frames) < CALIBRATION_FRAMES:
        raise OutputError(f"the demo clip gave {len(frames)} of the {CALIBRATION_FRAMES} calibration frames")
    return frames
