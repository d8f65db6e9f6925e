"""Synthetic plates for training the recogniser: a region's own templates (common/plate_formats.yaml) give
the text; a layout per region (US: a state band and a slogan line around the number; EU: a blue
band with a country code; BR: Mercosur's blue top band, or the older grey plate with its city band;
any region: two rows, top row first) and random colours and fonts
(DejaVu, a free licence, Debian's fonts-dejavu-core) draw it; perspective, rotation, loose framing
with car body around, blur, noise, low light, glare, dirt and JPEG degrade it as cameras do."""

from __future__ import annotations

import random
import string
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.regions import DIGITS, LETTERS, load_regions

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/TTF"))
FONT_NAMES = ("DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf",
              "DejaVuSansCondensed.ttf", "DejaVuSerifCondensed-Bold.ttf")  # fmt: skip
"""Fonts plates are drawn in (the first found is required)."""

WORDS = ("CALIFORNIA", "TEXAS", "FLORIDA", "NEW YORK", "OHIO", "GEORGIA", "ILLINOIS", "ARIZONA", "NEVADA",
         "SUNSHINE STATE", "THE LONE STAR STATE", "EMPIRE STATE", "LAND OF LINCOLN", "DMV.CA.GOV")  # fmt: skip
"""Text of US state bands and slogans (not read: the recogniser learns to leave it)."""

CITIES = ("SP-SAO PAULO", "BA-SALVADOR", "PR-CURITIBA", "RJ-RIO DE JANEIRO", "MG-BELO HORIZONTE", "BA-SIMOES FILHO")
"""City bands of Brazil's older grey plates (not read)."""

TWO_ROW_SHARE = 0.08
"""Share of synthetic plates drawn on two rows."""


@cache
def fonts() -> tuple[Path, ...]:
    found = tuple(d / n for n in FONT_NAMES for d in FONT_DIRS if (d / n).is_file())
    if not found:
        raise FileNotFoundError("no DejaVu font found: apt-get install fonts-dejavu-core")
    return found


def plate_text(region: str, rng: random.Random) -> str:
    """A reading that fits one of the region's templates."""
    template = rng.choice(list(load_regions()[region].templates) or ["LLLDDDD"])
    pools = {"L": sorted(LETTERS), "D": sorted(DIGITS), "A": sorted(LETTERS | DIGITS)}
    return "".join(rng.choice(pools[k]) for k in template)


def _font(size: int, rng: random.Random) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(rng.choice(fonts())), size)


def _colours(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    light = [(245, 245, 245), (250, 235, 120), (225, 235, 250), (235, 235, 225), (255, 255, 255)]
    dark = [(20, 20, 20), (20, 40, 120), (140, 20, 20), (20, 90, 40), (60, 60, 60)]
    background, ink = rng.choice(light), rng.choice(dark)
    return (ink, background) if rng.random() < 0.1 else (background, ink)


def draw_two_rows(text: str, rng: random.Random) -> np.ndarray:
    """A square-ish plate (motorcycles, some vans and trailers) with the text on two rows."""
    height, width = 130, rng.randint(150, 220)
    background, ink = _colours(rng)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    cut = rng.randint(2, max(2, len(text) - 3)) if len(text) > 4 else max(1, len(text) // 2)
    for row, (centre, part) in enumerate(((height * 0.28, text[:cut]), (height * 0.72, text[cut:]))):
        size = int(height * rng.uniform(0.3, 0.4) * (0.85 if row == 0 and rng.random() < 0.5 else 1.0))
        font = _font(size, rng)
        box = draw.textbbox((0, 0), part, font=font)
        if box[2] - box[0] > width - 10:
            font = ImageFont.truetype(font.path, max(10, int(size * (width - 10) / (box[2] - box[0]))))
        draw.text((width / 2, centre), part, fill=ink, font=font, anchor="mm")
    if rng.random() < 0.5:
        draw.rectangle((1, 1, width - 2, height - 2), outline=ink, width=rng.randint(1, 3))
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)


def draw_plate(text: str, region: str, rng: random.Random) -> np.ndarray:
    """The plate alone, BGR, about 100 px tall."""
    height = 100
    width = {"us": 200, "eu": 470, "br": 300}.get(region, 300)
    background, ink = _colours(rng)
    grey_br = region == "br" and rng.random() < 0.5
    if grey_br:
        background, ink = (rng.randint(175, 215),) * 3, (rng.randint(15, 50),) * 3
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    top, bottom, left = 0, height, 0
    if region == "us":
        draw.text((width / 2, 4), rng.choice(WORDS), fill=rng.choice([ink, (150, 30, 30), (30, 30, 150)]),
                  font=_font(16, rng), anchor="mt")  # fmt: skip
        if rng.random() < 0.6:
            draw.text(
                (width / 2, height - 3), rng.choice(WORDS).lower().title(), fill=ink, font=_font(11, rng), anchor="mb"
            )
        top, bottom = 22, height - 14
    elif region == "eu":
        draw.rectangle((0, 0, 38, height), fill=(30, 60, 160))
        draw.text((19, height - 8), rng.choice(["D", "F", "I", "CZ", "SK", "NL", "PL", "E"]), fill=(255, 255, 255),
                  font=_font(18, rng), anchor="mb")  # fmt: skip
        left = 40
    elif grey_br:
        draw.text((width / 2, 3), rng.choice(CITIES), fill=ink, font=_font(13, rng), anchor="mt")
        top = 18
    elif region == "br":
        draw.rectangle((0, 0, width, 24), fill=(30, 60, 160))
        draw.text((width / 2, 12), "BRASIL", fill=(255, 255, 255), font=_font(14, rng), anchor="mm")
        top = 26
    spaced = text
    if grey_br and len(text) == 7:
        spaced = text[:3] + rng.choice(["-", "·", " "]) + text[3:]
    elif rng.random() < 0.5 and len(text) > 4:
        cut = rng.randint(2, len(text) - 2)
        spaced = text[:cut] + rng.choice([" ", "-", " • "]) + text[cut:]
    size = int((bottom - top) * rng.uniform(0.7, 0.95))
    font = _font(size, rng)
    box = draw.textbbox((0, 0), spaced, font=font)
    scale = min(1.0, (width - left - 8) / max(1, box[2] - box[0]))
    if scale < 1.0:
        font = ImageFont.truetype(font.path, max(10, int(size * scale)))
    draw.text(((left + width) / 2, (top + bottom) / 2), spaced, fill=ink, font=font, anchor="mm")
    if rng.random() < 0.5:
        draw.rectangle((1, 1, width - 2, height - 2), outline=ink, width=rng.randint(1, 3))
    return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)


def degrade(plate: np.ndarray, rng: random.Random) -> np.ndarray:
    """The plate as a camera sees it through the detector's box: on a car, warped, loose, blurred, noisy."""
    h, w = plate.shape[:2]
    margin_x, margin_y = int(w * rng.uniform(0.05, 0.3)), int(h * rng.uniform(0.1, 0.5))
    body = np.full((h + 2 * margin_y, w + 2 * margin_x, 3), [rng.randint(0, 255) for _ in range(3)], np.uint8)
    grain = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 12, body.shape)
    body = np.clip(body.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jitter = np.array([[rng.uniform(-0.08, 0.08) * w, rng.uniform(-0.12, 0.12) * h] for _ in range(4)], np.float32)
    target = corners + jitter + np.array([margin_x, margin_y], np.float32)
    warp = cv2.getPerspectiveTransform(corners, target)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), warp, body.shape[1::-1])
    warped = cv2.warpPerspective(plate, warp, body.shape[1::-1])
    image = np.where(mask[..., None] > 0, warped, body)
    if rng.random() < 0.4:
        angle = rng.uniform(-5, 5)
        matrix = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), angle, 1.0)
        image = cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.3:  # dirt
        for _ in range(rng.randint(1, 6)):
            centre = (rng.randint(0, image.shape[1] - 1), rng.randint(0, image.shape[0] - 1))
            cv2.circle(image, centre, rng.randint(2, 8), [rng.randint(40, 120)] * 3, -1)
    if rng.random() < 0.2:  # glare
        x = rng.randint(0, image.shape[1] - 1)
        cv2.ellipse(image, (x, image.shape[0] // 2), (rng.randint(10, 40), image.shape[0]), 20, 0, 360,
                    (255, 255, 255), -1)  # fmt: skip
        image = cv2.addWeighted(image, 0.7, cv2.GaussianBlur(image, (0, 0), 5), 0.3, 0)
    scale = rng.uniform(0.2, 0.8)  # small and far away, then read at whatever size the camera gave
    small = cv2.resize(image, (max(8, int(image.shape[1] * scale)), max(8, int(image.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    if rng.random() < 0.5:
        kernel = rng.choice([3, 5])
        small = cv2.GaussianBlur(small, (kernel, 1 if rng.random() < 0.5 else kernel), 0)  # motion or focus
    light = rng.uniform(0.35, 1.3)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(0, 10), small.shape)
    noisy = small.astype(np.float32) * light + noise
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(25, 90)])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    return np.asarray(decoded) if decoded is not None else image


def sample(rng: random.Random, regions: tuple[str, ...] = ("us", "eu", "br")) -> tuple[np.ndarray, str]:
    """One synthetic crop and its text."""
    region = rng.choice(regions)
    text = plate_text(region, rng)
    if rng.random() < 0.05:  # a vanity text
        text = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(4, 7)))
    plate = draw_two_rows(text, rng) if rng.random() < TWO_ROW_SHARE else draw_plate(text, region, rng)
    return degrade(plate, rng), text
