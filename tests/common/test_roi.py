"""A camera's ROI against its frames' size: the share of its area within the frame, and the warning, once
per camera and frame size, for one lying wholly or mostly outside."""

import logging

import pytest

from common.roi import RoiWatch, share_in_frame

FRAME_WH = (1280, 720)


@pytest.mark.parametrize(
    ("roi", "share"),
    [([(0, 300), (1280, 300), (1280, 720), (0, 720)], 1.0),  # cameras.example.yaml's
     ([(5000, 5000), (6000, 5000), (6000, 6000)], 0.0),  # drawn for no frame of this size
     ([(0, 540), (1920, 540), (1920, 1080), (0, 1080)], 1280 * 180 / (1920 * 540)),  # a 1920x1080 camera's lower half
     ([(0, 0), (1920, 0), (1920, 1080), (0, 1080)], 1280 * 720 / (1920 * 1080)),  # a 1920x1080 whole frame
     ([(300, 0), (720, 0), (720, 1280), (300, 1280)], 420 * 720 / (420 * 1280)),  # x and y swapped
     ([(-100, -100), (100, -100), (100, 100), (-100, 100)], 0.25),  # a corner
     ([(0, 0), (2560, 0), (2560, 720), (1280, 10), (0, 720)], 0.5),  # concave, folded at the frame's side
     ([(0, 0), (100, 100), (200, 200)], 0.0)],  # no area (`alpr run --roi` takes it)
)  # fmt: skip
def test_the_share_of_the_roi_within_the_frame(roi, share):
    assert share_in_frame(roi, FRAME_WH) == pytest.approx(share, abs=1e-3)


def test_a_roi_outside_the_frame_is_warned_of_once_per_camera_and_frame_size(caplog):
    watch, outside = RoiWatch(logging.getLogger("test")), [(5000, 5000), (6000, 5000), (6000, 6000)]
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            watch.check("gate", outside, FRAME_WH)
            watch.check("lane2", [(0, 0), (1280, 0), (1280, 720)], FRAME_WH)  # within: no word
            watch.check("lane3", None, FRAME_WH)  # no ROI: every plate is read
            watch.check("lane4", [(0, 0), (2000, 0), (2000, 2000), (0, 2000)], FRAME_WH)
        watch.check("gate", outside, (6400, 6400))  # its resolution changed: the ROI within now
    assert [r.getMessage().split(": ")[:2] for r in caplog.records] == [
        ["camera gate", "its ROI covers none of its 1280x720 frames"],
        ["camera lane4", "its ROI lies mostly outside (23% of its area within) its 1280x720 frames"],
    ]
