import numpy as np
import pytest

from common.types import PlateCandidate, PlateDetections, PlateRead


@pytest.mark.parametrize(
    ("xyxy", "confidence", "error"),
    [
        (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), None),
        (np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), None),
        (np.zeros((2, 3), np.float32), np.zeros((2,), np.float32), "shape \\(_, 4\\)"),
        ([[1, 2, 3, 4]], np.array([0.5], np.float32), "xyxy must be a 2D np.ndarray"),
        (
            np.zeros((2, 4), np.float32),
            np.zeros((3,), np.float32),
            "confidence must be a 1D np.ndarray with shape \\(2,\\)",
        ),
    ],
)
def test_plate_detections_are_validated(xyxy, confidence, error):
    if error is None:
        assert len(PlateDetections(xyxy, confidence)) == len(xyxy)
    else:
        with pytest.raises(ValueError, match=error):
            PlateDetections(xyxy, confidence)


def test_plate_read_best_is_first_candidate():
    read = PlateRead((0, 0, 10, 5), 0.9, (PlateCandidate("ABC123", 0.8, "LLLDDD"), PlateCandidate("A8C123", 0.3)))
    assert (read.text, read.confidence, read.best.matches_format) == ("ABC123", 0.8, True)
    assert PlateRead((0, 0, 1, 1), 0.1).text == ""
