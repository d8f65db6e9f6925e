"""Finding the registration inside a detector's box: free-standing characters, characters touching a
frame (the text detector's case), two-row plates in reading order, tilt undone, and real photos whose
boxes hold car body around the plate."""

import random

import cv2
import numpy as np
import pytest

from common import geometry
from ocr_worker.core import OcrSettings, PlateReader
from ocr_worker.synthetic import draw_plate, draw_two_rows
from ocr_worker.text_lines import PlateTextLocator, TextLine, character_rows, joined, plate_rows, rectified


@pytest.fixture(scope="module")
def locator() -> PlateTextLocator:
    return PlateTextLocator()


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(OcrSettings(region="eu"))


def framed_plate(text: str) -> np.ndarray:
    """Dark characters touching a dark frame (blobs join, so no free-standing row is found), on a car."""
    plate = np.full((60, 240, 3), 235, np.uint8)
    cv2.putText(plate, text, (10, 57), cv2.FONT_HERSHEY_SIMPLEX, 1.9, (20, 20, 20), 5, cv2.LINE_AA)
    cv2.rectangle(plate, (1, 1), (238, 58), (20, 20, 20), 4)  # every character stands on the frame
    return cv2.copyMakeBorder(plate, 40, 40, 60, 60, cv2.BORDER_CONSTANT, value=(90, 40, 30))


def line(x1: float, y1: float, x2: float, y2: float) -> TextLine:
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    return TextLine(corners, y2 - y1, 0.9)


def test_the_tallest_line_is_the_registration_and_a_stacked_row_comes_first_when_above():
    state, number, slogan = line(20, 0, 120, 10), line(10, 20, 190, 60), line(40, 70, 160, 78)
    assert plate_rows([state, number, slogan]) == [number]
    top = line(30, 0, 150, 30)
    assert plate_rows([number, top, slogan]) == [top, number]
    assert plate_rows([]) == []


def test_rectified_lines_are_level_and_48_pixels_tall():
    image = np.zeros((100, 200, 3), np.uint8)
    cv2.line(image, (20, 40), (180, 60), (255, 255, 255), 8)  # a stroke falling 20 px along the line
    corners = np.array([[15, 25], [185, 45], [185, 75], [15, 55]], np.float32)
    flat = rectified(image, TextLine(corners, 30.0, 0.9))
    assert flat.shape[0] == 48
    rows = np.where(flat[:, :, 0].max(axis=1) > 128)[0]
    columns = [np.where(flat[:, x, 0] > 128)[0].mean() for x in (flat.shape[1] // 4, 3 * flat.shape[1] // 4)]
    assert abs(columns[0] - columns[1]) < 3 and len(rows) < 24  # level, not a diagonal band
    assert joined([flat, flat]).shape[0] == 48


def test_characters_touching_a_frame_are_found_by_the_text_detector(locator, reader):
    crop = framed_plate("KPX472")
    _, free_standing = character_rows(crop)
    assert free_standing is None  # the classical search gives up here
    found = locator.finder.lines([crop])[0]
    assert found and max(found, key=lambda t: t.height).height < 0.7 * crop.shape[0]
    assert reader.read(crop)[0].text == "KPX472"


def test_a_crops_lines_do_not_depend_on_the_other_crops_of_its_batch(locator):
    """Crops were padded to the widest one's search width: the detector's map near the padding changed,
    and a plate read differently with another car's (wider) plate beside it in the frame."""
    plates = [framed_plate(text) for text in ("KPX472", "GHT209", "ZZ91")]
    wide = np.full((60, 700, 3), 200, np.uint8)
    alone = [locator.finder.lines([crop])[0] for crop in plates]
    together = locator.finder.lines([*plates, wide])[:3]
    for one, other in zip(alone, together, strict=True):
        assert [(t.height, t.corners.tolist()) for t in one] == [(t.height, t.corners.tolist()) for t in other]


def test_two_row_plates_read_top_row_first(locator):
    us = PlateReader(OcrSettings(region="us"))
    for seed in range(3):
        plate = draw_two_rows("AB1234", random.Random(seed))
        line_image = locator.locate([plate])[0]
        assert line_image.shape[1] > 2.5 * line_image.shape[0]  # two rows side by side
        assert us.read(plate)[0].text == "AB1234"
        upside_down = np.vstack([plate[plate.shape[0] // 2 :], plate[: plate.shape[0] // 2]])
        assert us.read(upside_down)[0].text != "AB1234"  # the order comes from the rows' places


def test_a_tilted_plate_with_car_around_it_reads(reader):
    plate = draw_plate("KPX4721", "eu", random.Random(2))
    car = cv2.copyMakeBorder(plate, 60, 60, 80, 80, cv2.BORDER_CONSTANT, value=(60, 60, 70))
    h, w = car.shape[:2]
    tilted = cv2.warpAffine(car, cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    assert reader.read(tilted)[0].text == "KPX4721"


def test_loose_boxes_on_real_photos_read_better_than_the_whole_crop(datasets_dir, reader):
    """Brazilian photos whose plates sit in frames (no free-standing row): the located line reads
    where the whole crop did not (measured: 9 such misses of 114 before, 2 after)."""
    from alpr.ground_truth import load_samples

    samples, _ = load_samples(datasets_dir / "openalpr-endtoend" / "br")
    chosen = [s for s in samples if s.image.stem in ("OZC8400", "OKM2371", "PJH0957", "OZG3580")]
    assert len(chosen) == 4
    br = PlateReader(OcrSettings(region="br"))
    right = 0
    for sample in chosen:
        image = cv2.imread(str(sample.image))
        crop = geometry.crop(image, sample.box_xyxy, 0.25)  # looser than a detector's box
        candidates = br.read(crop)
        right += bool(candidates) and candidates[0].text == sample.plate
    assert right >= 3


@pytest.mark.parametrize(
    ("image", "plate"),
    [("hi130.png", "HGX212"), ("id825.png", "MNW235"), ("il1328.png", "IR0NY"), ("ut741.png", "Z387RY")],
)
def test_large_characters_are_one_line_and_beat_the_state_name(datasets_dir, image, plate):
    """US plates whose characters touch (no free-standing row), under a state name, slogan or picture:
    the text detector marks the registration whole and it is read (at a 64-pixel search height it was
    cut in two, or lost to the state name: HGX, 223, I, Z2)."""
    crop = cv2.imread(str(datasets_dir / "openalpr-plates" / image))
    assert crop is not None and character_rows(crop)[1] is None  # the text detector's case
    assert PlateReader(OcrSettings(region="us")).read(crop)[0].text == plate


@pytest.mark.parametrize("angle", [0, 15, 25, 35, -25])
def test_a_tilted_line_found_by_the_text_detector_keeps_its_sides(angle):
    """A line tilted more than its height over its width (20 degrees at 4:1) had its corners sorted by y
    alone: its sides mixed, it looked upright, and it was dropped. Its map: one tilted band."""
    from ocr_worker.text_lines import lines_from_map

    probability = np.zeros((200, 300), np.float32)
    corners = cv2.boxPoints(((150, 100), (160, 40), angle)).astype(np.int32)
    cv2.fillPoly(probability, [corners], 1.0)
    [line] = lines_from_map(probability, 1.0, 1.0)
    top_left, top_right, bottom_right, bottom_left = line.corners
    assert top_left[0] < top_right[0] and bottom_left[0] < bottom_right[0]  # left to right along the line
    assert (top_left[1] + top_right[1]) < (bottom_left[1] + bottom_right[1])  # the top side above the bottom
    assert 2 * line.height < np.linalg.norm(top_right - top_left)  # the long side is the width (both grown)
    upright = np.zeros((200, 300), np.float32)
    cv2.fillPoly(upright, [cv2.boxPoints(((150, 100), (160, 40), 90 + angle)).astype(np.int32)], 1.0)
    assert lines_from_map(upright, 1.0, 1.0) == []  # turned upright (more than 45 degrees): no plate's text


def test_a_loose_crops_smaller_row_under_a_fifth_of_its_height_is_found():
    """A two-row plate in a loose crop: its main row a fifth of the crop tall, its smaller row (0.7 of
    the main) under a fifth — left out with the main row's floor, the plate read a row short."""
    from ocr_worker import preprocess

    gray = np.full((100, 300), 255, np.uint8)
    cv2.putText(gray, "ABC123", (40, 75), cv2.FONT_HERSHEY_SIMPLEX, 0.95, 0, 3)  # 21 px tall
    cv2.putText(gray, "K L M N", (50, 35), cv2.FONT_HERSHEY_SIMPLEX, 0.65, 0, 2)  # 15-16 px tall
    assert preprocess.text_rows(gray) == [(0, 18, 300, 38), (0, 52, 300, 79)]  # both, top first
