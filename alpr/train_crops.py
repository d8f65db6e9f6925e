"""The real plates `alpr train-ocr` trains on (alpr/train_ocr.py): each labelled photo and crop of the
datasets (`real_crops`), its image read as ingest reads a frame, bounded (`read_crop_images`), cut as a
detector's box gives it, jittered and degraded as a far or poor camera would (`cut`, `degraded`), then
prepared for reading exactly as the engine prepares a line (ocr_worker/text_lines.py)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from alpr.ground_truth import load_samples
from common import defaults, geometry
from common.text_files import shown_path
from ingest.image_files import UnreadableFrameError, read_image
from ocr_worker.ppocr_engine import PLATE_ALPHABET
from ocr_worker.text_lines import PlateTextLocator

log = logging.getLogger(__name__)

MAX_SKIPPED_NAMED = 5
"""Images that could not be read named in the training's warning (all are counted)."""


@dataclass(frozen=True)
class RealCrop:
    image: Path
    plate: str
    box_xyxy: tuple[float, float, float, float] | None
    subset: str


def real_crops(datasets: Path) -> list[RealCrop]:
    crops = []
    for region in ("us", "eu", "br"):
        samples, _ = load_samples(datasets / "openalpr-endtoend" / region)
        crops += [RealCrop(s.image, s.plate, s.box_xyxy, region) for s in samples]
    samples, _ = load_samples(datasets / "openalpr-plates")
    crops += [RealCrop(s.image, s.plate, None, "crops") for s in samples]
    return [c for c in crops if c.plate and set(c.plate) <= set(PLATE_ALPHABET)]


def read_crop_images(crops: list[RealCrop]) -> tuple[dict[Path, np.ndarray], list[RealCrop]]:
    """Each crop's image, read as ingest reads a frame (`read_image`, bounded by MAX_FRAME_PIXELS before
    decoding), and the crops whose image was read. Those that could not be are left out with a WARNING
    naming how many and the first MAX_SKIPPED_NAMED: cv2.imread took a 2.6 MB PNG of 30000x30000 to
    5.3 GB, and dropped what it could not decode unsaid (a review)."""
    images: dict[Path, np.ndarray] = {}
    skipped: list[str] = []
    for path in dict.fromkeys(c.image for c in crops):
        try:
            images[path] = read_image(path, defaults.MAX_FRAME_PIXELS)
        except UnreadableFrameError as error:
            skipped.append(f"{shown_path(path)} ({error.detail})")
    if skipped:
        more = f"; and {len(skipped) - MAX_SKIPPED_NAMED} more" if len(skipped) > MAX_SKIPPED_NAMED else ""
        log.warning("%d images of the training set could not be read, their crops left out: %s%s",
                    len(skipped), "; ".join(skipped[:MAX_SKIPPED_NAMED]), more)  # fmt: skip
    return images, [c for c in crops if c.image in images]


def cut(crop: RealCrop, image: np.ndarray, rng: random.Random | None, locator: PlateTextLocator) -> np.ndarray:
    """The plate as a detector's box gives it (jittered and degraded when training), prepared for reading."""
    if crop.box_xyxy is None:
        piece = image
    else:
        x1, y1, x2, y2 = crop.box_xyxy
        w, h = x2 - x1, y2 - y1
        if rng:
            x1, x2 = x1 + rng.uniform(-0.15, 0.15) * w, x2 + rng.uniform(-0.15, 0.15) * w
            y1, y2 = y1 + rng.uniform(-0.2, 0.2) * h, y2 + rng.uniform(-0.2, 0.2) * h
        piece = geometry.crop(image, (x1, y1, x2, y2), rng.uniform(0.0, 0.15) if rng else 0.08)
        piece = piece if piece.size and min(piece.shape[:2]) >= 4 else image
    if rng:
        if rng.random() < 0.4:
            angle, (h, w) = rng.uniform(-6, 6), piece.shape[:2]
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            piece = cv2.warpAffine(piece, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
        if rng.random() < 0.5:
            gain, offset = rng.uniform(0.6, 1.4), rng.uniform(-40, 40)
            piece = np.clip(piece.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
        if rng.random() < 0.3:
            ok, data = cv2.imencode(".jpg", piece, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(20, 70)])
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
            piece = np.asarray(decoded) if decoded is not None else piece
        piece = degraded(piece, rng)
    return locator.locate([piece])[0]


def degraded(piece: np.ndarray, rng: random.Random) -> np.ndarray:
    """What a far or poor camera does to a real crop: low resolution (shrunk to 30-70% and back), focus
    or motion blur, sensor noise. Trained with these, the held-out images read 119 of 126 against 116."""
    if rng.random() < 0.3:
        h, w = piece.shape[:2]
        f = rng.uniform(0.3, 0.7)
        small = cv2.resize(piece, (max(8, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
        piece = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:
        if rng.random() < 0.5:
            piece = cv2.GaussianBlur(piece, (0, 0), rng.uniform(0.5, 1.2))
        else:
            k = rng.choice([3, 5])
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1 / k  # horizontal motion
            piece = cv2.filter2D(piece, -1, kernel)
    if rng.random() < 0.2:
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(3, 8), piece.shape)
        piece = np.clip(piece.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return piece
