"""Synthetic training plates: texts that fit their region, images a camera could have taken."""

import random

import numpy as np
import pytest

from ocr_worker.formats import region_formats
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
