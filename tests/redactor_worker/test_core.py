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
