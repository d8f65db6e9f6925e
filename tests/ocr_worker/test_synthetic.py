"""Synthetic training plates: texts that fit their region, images a camera could have taken."""

import random

import numpy as np
import pytest

from common.regions import region_formats
from ocr_worker.synthetic import degrade, draw_plate, plate_text, sample


@pytest.mark.parametrize("region", ["us", "eu", "br"])
def test_texts_fit_their_region_and_plates_are_drawn(region):
    rng = random.Random(3)
    for _ in range(20):
        text = plate_text(region, rng)
        assert region_formats(region).match(text), text
    plate = draw_plate(text, region, rng)
    assert plate.shape[0] == 100 and plate.shape[2] == 3 and plate.std() > 10  # ink on a background


def test_degraded_samples_vary_and_are_reproducible():
    first = [sample(random.Random(5)) for _ in range(2)]
    assert first[0][1] == first[1][1] and np.array_equal(first[0][0], first[1][0])  # same seed, same sample
    rng = random.Random(6)
    images = [degrade(draw_plate("ABC1234", "us", rng), rng) for _ in range(5)]
    assert len({image.shape for image in images}) > 1  # scale, framing and warp differ
    assert all(image.ndim == 3 and min(image.shape[:2]) >= 8 for image in images)


def test_two_row_plates_put_the_first_characters_on_top():
    from ocr_worker.synthetic import draw_two_rows

    plate = draw_two_rows("AB1234", random.Random(4))
    ink = (np.abs(plate.astype(int) - plate[plate.shape[0] // 2, 3].astype(int)).sum(axis=2) > 100)[6:-6, 6:-6]
    rows = np.where(ink.any(axis=1))[0]
    gaps = np.where(np.diff(rows) > 3)[0]
    assert len(gaps) >= 1  # two bands of ink, one above the other
    top_width = np.where(ink[: rows[gaps[0]] + 1].any(axis=0))[0]
    assert len(top_width) > 10 and plate.shape[0] > 0.5 * plate.shape[1]


def test_brazilian_plates_come_in_both_generations():
    rng = random.Random(8)
    plates = [draw_plate("OKM2371", "br", rng) for _ in range(12)]
    grey = [p for p in plates if np.ptp(p[5:15].reshape(-1, 3).mean(axis=0)) < 10]  # no blue band on top
    assert 0 < len(grey) < len(plates)
