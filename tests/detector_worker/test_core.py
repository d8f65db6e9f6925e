from pathlib import Path

import cv2
import numpy as np
import pytest

from common.errors import ConfigError, InputError
from common.types import PlateDetections
from detector_worker.core import (
    DetectorSettings,
    PlateDetector,
    boxes_to_read,
    inside_roi,
    nested_in_stronger,
    select_reads,
)
from redactor_worker.core import redact
from tests.helpers import clip_frames, demo_clip_plates_found, iou, scene_samples, write_clip


def test_finds_plates_in_real_photos(detector, datasets_dir):
    for region in ("us", "eu", "br"):
        samples = scene_samples(datasets_dir, region, 12)
        images = [cv2.imread(str(s.image)) for s in samples]
        found = detector.detect(images)
        pairs = zip(found, samples, strict=True)
        hits = sum(any(iou(box, s.box_xyxy) >= 0.3 for box, _ in d.boxes()) for d, s in pairs)
        assert hits >= 11, f"{region}: plates found in {hits} of 12 photos"


def test_finds_the_demo_clip_plates(detector, demo_clip):
    hits, frames = demo_clip_plates_found(detector, demo_clip)
    assert hits >= 0.9 * frames, f"plates found in {hits} of {frames} frames"


def car_park(datasets_dir: Path, count: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """One 1280x720 frame holding `count` real plates, each with the car around it (US photos, cut at
    three times their box and scaled to 210 px wide), and each plate's box in the frame."""
    frame = np.full((720, 1280, 3), 96, np.uint8)
    plates: list[tuple[float, float, float, float]] = []
    for sample in scene_samples(datasets_dir, "us", 40):
        image = cv2.imread(str(sample.image))
        x1, y1, x2, y2 = (int(v) for v in sample.box_xyxy)
        w, h = x2 - x1, y2 - y1
        left, top = max(0, x1 - w), max(0, y1 - h)
        piece = image[top : min(image.shape[0], y2 + h), left : min(image.shape[1], x2 + w)]
        scale = 210 / piece.shape[1]
        piece = cv2.resize(piece, None, fx=scale, fy=scale)
        if piece.shape[0] > 170:
            continue
        row, column = divmod(len(plates), 5)
        ox, oy = 20 + column * 250, 20 + row * 180
        frame[oy : oy + piece.shape[0], ox : ox + piece.shape[1]] = piece
        plates.append(
            ((x1 - left) * scale + ox, (y1 - top) * scale + oy, (x2 - left) * scale + ox, (y2 - top) * scale + oy)
        )
        if len(plates) == count:
            return frame, plates
    raise AssertionError(f"fewer than {count} photos fit")


def test_every_plate_of_a_crowded_frame_is_found_and_blurred(detector, datasets_dir):
    # OpenCV's NMSBoxes applies top_k before suppression: with a cap there, copies of the strongest
    # plates filled the slots and 7 of these 20 plates were neither read nor blurred.
    frame, plates = car_park(datasets_dir, 20)
    (found,) = detector.detect([frame])
    boxes = [box for box, _ in found.boxes()]
    missed = [
        p
        for p in plates
        if not any(b[0] <= (p[0] + p[2]) / 2 <= b[2] and b[1] <= (p[1] + p[3]) / 2 <= b[3] for b in boxes)
    ]
    assert not missed, f"{len(missed)} of {len(plates)} plates not found"
    hidden = redact(frame, boxes)
    for x1, y1, x2, y2 in plates:
        before = frame[int(y1) : int(y2), int(x1) : int(x2)]
        after = hidden[int(y1) : int(y2), int(x1) : int(x2)]
        sharpness = [cv2.Laplacian(cv2.cvtColor(p, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for p in (before, after)]
        assert sharpness[1] < 0.1 * sharpness[0], "a plate's characters are still sharp after redaction"


@pytest.mark.parametrize(
    ("boxes", "nested"),  # boxes strongest first
    [
        ([], []),
        ([(348, 379, 421, 421)], [False]),
        ([(348, 379, 421, 421), (347, 381, 420, 409)], [False, True]),  # part of the plate (demo clip)
        ([(540, 355, 608, 395), (540, 353, 646, 397)], [False, True]),  # the plate with its holder
        ([(0, 0, 50, 20), (0, 0, 100, 20)], [False, True]),  # the surer box is the part
        ([(0, 0, 100, 50), (110, 0, 210, 50), (60, 0, 160, 50)], [False, False, False]),  # side by side, half over
        ([(0, 0, 100, 20), (150, 0, 250, 20), (0, 0, 250, 20)], [False, False, True]),  # one box over two plates
    ],
)
def test_a_box_nested_in_a_stronger_one_is_blurred_not_read(boxes, nested):
    detections = PlateDetections(
        np.array(boxes, np.float32).reshape(-1, 4), np.linspace(0.9, 0.1, len(boxes), dtype=np.float32)
    )
    assert nested_in_stronger(detections).tolist() == nested
    assert select_reads(detections, None).read.tolist() == [not n for n in nested]
    read = boxes_to_read(detections, None)
    assert read.xyxy.tolist() == detections.xyxy[[not n for n in nested]].tolist()
    # every box is still blurred: the part's surer box does not hide the whole plate, its own box does
    frame = np.zeros((460, 700, 3), np.uint8)
    frame[::2] = 255  # stripes: sharp everywhere
    hidden = redact(frame, [box for box, _ in detections.boxes()])
    for x1, y1, x2, y2 in (tuple(int(v) for v in b) for b in boxes):
        if x2 > x1 and y2 > y1:
            assert hidden[y1:y2, x1:x2].std() < 0.5 * frame[y1:y2, x1:x2].std()


def test_one_plate_is_one_read_box_in_every_frame_of_a_clip(detector, tmp_path):
    # On this clip the detector also marks part of a plate (frame 6) and a plate with its holder (42).
    truth = write_clip(tmp_path / "clip.mp4", ("4RTY532", "BDF3301"), seed=8)  # also tests/distributed's cam-west
    frames = clip_frames(tmp_path / "clip.mp4", set(range(0, len(truth["boxes"]), 2)))
    found = detector.detect([frames[i] for i in sorted(frames)])
    counts = {i: len(boxes_to_read(boxes, None)) for i, boxes in zip(sorted(frames), found, strict=True)}
    assert set(counts.values()) == {1}, counts


def test_batch_matches_single_frames_and_torch_backend(detector, settings, datasets_dir):
    images = [cv2.imread(str(s.image)) for s in scene_samples(datasets_dir, "eu", 3)]
    batched = detector.detect(images)
    single = [detector.detect([image])[0] for image in images]
    torch_detector = PlateDetector(DetectorSettings(model_dir=settings.model_dir, backend="torch"))
    by_torch = torch_detector.detect(images)
    for a, b, c in zip(batched, single, by_torch, strict=False):
        assert iou(next(a.boxes())[0], next(b.boxes())[0]) > 0.9
        assert iou(next(a.boxes())[0], next(c.boxes())[0]) > 0.8


def test_region_of_interest_chooses_what_is_read_not_what_is_found(detector, datasets_dir):
    sample = scene_samples(datasets_dir, "br", 1)[0]
    image = cv2.imread(str(sample.image))
    x1, y1, x2, y2 = sample.box_xyxy
    around = [(x1 - 20, y1 - 20), (x2 + 20, y1 - 20), (x2 + 20, y2 + 20), (x1 - 20, y2 + 20)]
    elsewhere = [(0, 0), (50, 0), (50, 50), (0, 50)]
    (found,) = detector.detect([image])
    assert len(found) >= 1  # every plate is found (and so redacted), whatever the ROI
    assert inside_roi(found, around).any() and not inside_roi(found, elsewhere).any()
    assert len(boxes_to_read(found, around)) >= 1 and len(boxes_to_read(found, elsewhere)) == 0


@pytest.mark.parametrize(
    ("roi", "kept"),
    [(None, 2), ([(0, 0), (100, 0), (100, 100), (0, 100)], 1), ([(500, 500), (600, 500), (600, 600)], 0)],
)
def test_the_roi_chooses_by_box_centres(roi, kept):
    detections = PlateDetections(
        np.array([[10, 10, 30, 20], [200, 200, 260, 230]], np.float32), np.array([0.9, 0.8], np.float32)
    )
    assert len(boxes_to_read(detections, roi)) == kept
    assert len(boxes_to_read(PlateDetections.empty(), roi)) == 0


SQUARE = [(0, 0), (100, 0), (100, 100), (0, 100)]
"""An ROI around the frame's top-left corner."""


@pytest.mark.parametrize(
    ("boxes", "roi", "in_roi", "read", "outside_roi"),
    [
        ([], None, [], [], 0),  # an empty (0, 4) frame
        ([], SQUARE, [], [], 0),
        ([(10, 10, 30, 20)], None, [True], [True], 0),  # no ROI: every box is in it
        ([(10, 10, 30, 20), (200, 200, 260, 230)], SQUARE, [True, False], [True, False], 1),
        ([(200, 200, 260, 230)], SQUARE, [False], [False], 1),  # the ROI misses the only plate
        ([(90, 10, 130, 20)], SQUARE, [False], [False], 1),  # by its centre (110, 15), not its corner
        ([(0, 0, 100, 20), (0, 0, 50, 20)], SQUARE, [True, True], [True, False], 0),  # nested: blurred, not read
        ([(200, 200, 300, 220), (200, 200, 250, 220)], SQUARE, [False, False], [False, False], 1),  # nested out: 1
        ([(0, 0, 50, 20), (0, 0, 100, 20)], None, [True, True], [True, False], 0),  # the surer box is the part
    ],
)
def test_select_reads_chooses_by_roi_and_nesting(boxes, roi, in_roi, read, outside_roi):
    detections = PlateDetections(
        np.array(boxes, np.float32).reshape(-1, 4), np.linspace(0.9, 0.1, len(boxes), dtype=np.float32)
    )
    selection = select_reads(detections, roi)
    assert selection.in_roi.tolist() == in_roi
    assert selection.read.tolist() == read
    assert selection.outside_roi == outside_roi
    assert boxes_to_read(detections, roi).xyxy.tolist() == detections.xyxy[selection.read].tolist()


@pytest.mark.parametrize(
    "frame",
    [np.zeros((10, 10), np.uint8), np.zeros((0, 0, 3), np.uint8), "not an image", np.zeros((40, 60, 3), np.uint16)],
)
def test_bad_frames_are_input_errors(detector, frame):
    with pytest.raises(InputError, match="frame 0 must be an HxWx3 8-bit BGR image"):
        detector.detect([frame])


def test_missing_weights_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="alpr setup"):
        PlateDetector(DetectorSettings(model_dir=tmp_path))
    with pytest.raises(ConfigError, match="do not exist"):
        PlateDetector(DetectorSettings(model_dir=tmp_path, weights=Path(tmp_path / "mine.pt")))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_sliver_of_a_frame_is_detected_with_the_rest_of_its_batch(settings, demo_clip, backend):
    """A 1x2000 frame (valid JPEG, within the pixel limit) scaled to the detector's size once came out
    0 pixels tall and crashed the whole batch, every camera's frames in it lost."""
    path, truth = demo_clip
    index = truth["boxes"][0]["frame_index"]  # a frame with a plate
    frame = clip_frames(path, {index})[index]
    detector = PlateDetector(DetectorSettings(model_dir=settings.model_dir, backend=backend))
    sliver, post = np.full((1, 2000, 3), 90, np.uint8), np.full((2000, 1, 3), 90, np.uint8)
    found = detector.detect([sliver, frame, post])
    assert len(found) == 3 and len(found[0]) == 0 and len(found[2]) == 0 and len(found[1]) >= 1


def test_a_raised_read_threshold_still_finds_every_box_to_blur(detector, demo_clip):
    """ALPR_DETECTOR_CONFIDENCE chooses what is read, not what is hidden: raised to 0.5 it left the
    demo clip's plate sharp in 4 of 120 kept frames (a review), its box found at 0.05-0.5."""
    path, truth = demo_clip
    # the odd frames, half the clip: its frames whose plate the detector finds only below 0.5 were 1, 82, 85,
    # 95 and 119 of 120 (x86, onnxruntime CPU); the assert below says so if none is left among them
    wanted = {b["frame_index"]: tuple(b["box_xyxy"]) for b in truth["boxes"] if b["frame_index"] % 2}
    frames = clip_frames(path, set(wanted))
    order = sorted(frames)
    found = detector.detect([frames[i] for i in order])
    unsure = [i for i, d in zip(order, found, strict=True)
              if any(iou(box, wanted[i]) >= 0.5 and conf < 0.5 for box, conf in d.boxes())
              and not any(iou(box, wanted[i]) >= 0.5 and conf >= 0.5 for box, conf in d.boxes())]  # fmt: skip
    assert unsure, "no frame whose plate the default finds only below 0.5: the test shows nothing"
    strict = PlateDetector(DetectorSettings(**{**detector.settings.__dict__, "confidence": 0.5}))
    for index, detections in zip(unsure, strict.detect([frames[i] for i in unsure]), strict=True):
        hidden = [box for box, _ in detections.boxes()]
        assert any(iou(box, wanted[index]) >= 0.5 for box in hidden), f"frame {index}: its plate left sharp"
        read = boxes_to_read(detections, None, strict.settings.confidence)
        assert not any(iou(box, wanted[index]) >= 0.5 for box, _ in read.boxes()), f"frame {index}: read below 0.5"


def test_select_reads_reads_only_boxes_at_the_threshold():
    detections = PlateDetections(
        np.array([[0, 0, 100, 30], [200, 0, 300, 30], [400, 0, 500, 30]], np.float32), np.array([0.9, 0.3, 0.1])
    )
    assert select_reads(detections, None, 0.3).read.tolist() == [True, True, False]
    assert select_reads(detections, None).read.tolist() == [True, True, True]
    outside = select_reads(detections, [(0, 0), (150, 0), (150, 40), (0, 40)], 0.3)
    assert outside.read.tolist() == [True, False, False] and outside.outside_roi == 1
