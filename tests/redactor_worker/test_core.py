import cv2
import numpy as np
import pytest

from alpr.democlip import draw_plate
from common.geometry import grow_box
from redactor_worker.core import redact


def scene_with_plate(text="KPX4721"):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    frame[120:224, 200:408] = cv2.resize(draw_plate(text), (208, 104), interpolation=cv2.INTER_AREA)
    return frame, (200.0, 120.0, 408.0, 224.0)


@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_plate_pixels_change_and_nothing_else(method, reader_us):
    frame, box = scene_with_plate()
    assert reader_us.read(frame[120:224, 200:408])[0].text == "KPX4721"
    out = redact(frame, [box], method=method, margin=0.1)
    x1, y1, x2, y2 = grow_box(box, 0.1, frame.shape[:2])
    changed = np.any(out != frame, axis=2)
    outside = changed.copy()
    outside[y1:y2, x1:x2] = False
    assert not outside.any(), "pixels outside the plate box changed"
    assert changed[120:224, 200:408].mean() > 0.5
    readings = reader_us.read(out[120:224, 200:408])
    assert all(c.text != "KPX4721" for c in readings), f"still readable after {method}: {readings}"
    assert frame is not out


@pytest.mark.parametrize(
    ("boxes", "shape"),
    [
        ([], (50, 80, 3)),
        ([(-30.0, -10.0, 20.0, 15.0)], (50, 80, 3)),  # partly outside the frame
        ([(70.0, 40.0, 500.0, 500.0)], (50, 80, 3)),
        ([(10.0, 10.0, 10.0, 10.0)], (50, 80, 3)),  # empty box
        ([(5.0, 5.0, 30.0, 20.0), (40.0, 20.0, 70.0, 45.0)], (50, 80, 3)),
    ],
)
def test_edge_boxes_never_fail(boxes, shape):
    frame = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    out = redact(frame, boxes)
    assert out.shape == frame.shape and out.dtype == frame.dtype
    if not boxes:
        assert np.array_equal(out, frame)


@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_a_redacted_plate_holds_nothing_of_its_text(method):
    """A blur or mosaic of the plate itself can be undone by redacting candidate texts alike and keeping
    the one that matches (an audit read back every character of clean 40-pixel plates so). The same
    scene with another plate must redact to exactly the same pixels."""
    one, box = scene_with_plate("KPX4721")
    other, _ = scene_with_plate("MBR1098")
    assert not np.array_equal(one, other)
    assert np.array_equal(redact(one, [box], method=method), redact(other, [box], method=method))


def test_a_box_is_repainted_from_its_surroundings_at_the_frame_edges_and_over_the_whole_frame():
    frame = np.zeros((120, 200, 3), np.uint8)
    frame[:, :, 2] = 200  # a red car
    frame[40:80, 0:90] = (255, 255, 255)  # a white plate at the left edge
    out = redact(frame, [(0.0, 40.0, 90.0, 80.0)], margin=0.0)
    assert np.abs(out[40:80, 0:90].astype(int) - (0, 0, 200)).max() <= 2  # the car's colour, not the plate's
    whole = redact(frame, [(0.0, 0.0, 200.0, 120.0)], margin=0.0)
    assert (whole == 128).all()  # nothing around it: a neutral grey
    gray = redact(frame[:, :, 0].copy(), [(100.0, 40.0, 150.0, 80.0)])
    assert gray.shape == (120, 200) and gray.dtype == np.uint8


def test_a_box_given_with_its_corners_swapped_is_blurred_as_the_same_box():
    """A job's box (x2, y2, x1, y1) covered nothing: the frame was kept with its plate sharp, recorded done."""
    from common.jobs import PlateBox

    frame, (x1, y1, x2, y2) = scene_with_plate()
    assert np.array_equal(redact(frame, [(x2, y2, x1, y1)]), redact(frame, [(x1, y1, x2, y2)]))
    assert np.array_equal(redact(frame, [(x2, y1, x1, y2)]), redact(frame, [(x1, y1, x2, y2)]))
    assert PlateBox(box_xyxy=(x2, y2, x1, y1), confidence=0.9).box_xyxy == (x1, y1, x2, y2)


def test_a_frame_with_as_many_boxes_as_the_detector_keeps_is_hidden_whole():
    """The detector keeps its strongest 100 boxes: a car park's 120 plates were kept with the last 20 sharp
    (an audit). At the cap, more plates may lie unboxed: the whole frame is repainted."""
    from common import defaults

    frame, box = scene_with_plate()
    cap = defaults.DETECTOR_MAX_PLATES_PER_FRAME
    elsewhere = [(10.0 + i, 300.0, 30.0 + i, 320.0) for i in range(cap)]  # boxes away from the plate
    assert (redact(frame, elsewhere) == 128).all()
    below = redact(frame, elsewhere[: cap - 1])
    assert np.array_equal(below[120:224, 200:408], frame[120:224, 200:408])  # under the cap: boxes alone


@pytest.mark.parametrize(("boxes", "max_boxes", "whole"), [(3, 3, True), (2, 3, False), (0, 1, False), (1, 1, True)])
def test_the_cap_is_the_detectors_passed_in(boxes, max_boxes, whole):
    """A detector configured to keep fewer boxes hides the whole frame at its own cap, not the default's."""
    frame, _ = scene_with_plate()
    elsewhere = [(10.0 + i, 300.0, 30.0 + i, 320.0) for i in range(boxes)]
    assert (redact(frame, elsewhere, max_boxes=max_boxes) == 128).all() == whole


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_box_not_made_of_finite_numbers_hides_the_whole_frame(bad):
    """math.floor raised on a NaN or infinite corner and the redaction failed (a review): where a box
    cannot be placed, the plate could be anywhere; the whole frame is repainted, with a plate beside it."""
    frame, box = scene_with_plate()
    for corrupt in [(bad, 10.0, 50.0, 50.0), (0.0, 0.0, 50.0, bad), (np.float32(bad), 0.0, 50.0, 50.0)]:
        assert (redact(frame, [box, corrupt]) == 128).all()
        assert (redact(frame, [corrupt], method="pixelate") == 128).all()
