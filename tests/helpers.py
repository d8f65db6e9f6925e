"""Small helpers the tests share: reading dataset ground truth and frames of the demo clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from alpr.evaluation import Sample, iou, load_samples


def scene_samples(datasets_dir: Path, region: str, count: int) -> list[Sample]:
    samples, _ = load_samples(datasets_dir / "openalpr-endtoend" / region)
    return samples[:count]


def clip_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index = {}, 0
    while len(frames) < len(indices):
        ok, frame = capture.read()
        if not ok:
            break
        if index in indices:
            frames[index] = frame
        index += 1
    capture.release()
    return frames


__all__ = ["clip_frames", "iou", "scene_samples"]
