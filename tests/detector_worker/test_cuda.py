"""The detector's CUDA path: the torch backend on a GPU, FP32 and FP16, finds the plates the CPU finds,
batched as one by one. These run where torch sees a CUDA device (a GPU machine a session borrows;
benchmarks/bench_detector_gpu.py measures its speed there) and are skipped elsewhere: CI has no GPU.
What a machine without one must do (refuse FP16 and a CUDA device it lacks) is tested everywhere."""

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from detector_worker.backends import OnnxBackend, TorchBackend
from detector_worker.core import DetectorSettings, PlateDetector
from detector_worker.weights import install_models
from tests.helpers import clip_frames, iou

SURE = 0.25
"""Boxes at or above this confidence are the ones compared (the reader's)."""

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (CI has none)")


def sure_boxes(detections) -> list[np.ndarray]:
    return [d.xyxy[d.confidence >= SURE] for d in detections]


def assert_same_plates(expected: list[np.ndarray], found: list[np.ndarray], least_iou: float) -> None:
    assert sum(len(boxes) for boxes in expected) >= 8  # the clip's plates, not an empty comparison
    for want, got in zip(expected, found, strict=True):
        assert len(got) == len(want)
        for box in want:
            assert max(iou(tuple(box), tuple(other)) for other in got) >= least_iou


@needs_cuda
@pytest.mark.parametrize("half", [False, True])
def test_on_cuda_the_detector_finds_the_plates_the_cpu_finds(settings, demo_clip, half):
    frames = list(clip_frames(demo_clip[0], set(range(0, 64, 4))).values())
    cpu = PlateDetector(DetectorSettings(model_dir=settings.model_dir, backend="torch"))
    gpu = PlateDetector(DetectorSettings(model_dir=settings.model_dir, backend="torch", device="cuda:0", half=half,
                                         batch_size=8))  # fmt: skip
    expected = sure_boxes(cpu.detect(frames))
    assert_same_plates(expected, sure_boxes(gpu.detect(frames)), 0.9 if half else 0.98)
    one_by_one = [sure_boxes(gpu.detect([frame]))[0] for frame in frames]
    assert_same_plates(expected, one_by_one, 0.9 if half else 0.98)
    assert gpu.backend.model.predictor.model.fp16 is half  # type: ignore[attr-defined]


@needs_cuda
def test_the_settings_build_an_fp16_detector_on_cuda(settings):
    from alpr.wiring import build_detector

    update = {"detector_backend": "torch", "detector_device": "cuda:0", "detector_half": True}
    chosen = settings.model_copy(update=update)
    detector = build_detector(chosen)
    assert detector.settings.half and detector.backend.half  # type: ignore[attr-defined]


def test_fp16_is_refused_where_it_cannot_run(settings):
    install_models(settings.model_dir)
    with pytest.raises(ConfigError, match="FP32 only"):
        OnnxBackend(settings.model_dir / "plate_yolov8n.onnx", "cpu", 960, 1, half=True)
    with pytest.raises(ConfigError, match="FP16 runs on a CUDA device, not cpu"):
        TorchBackend(settings.model_dir / "plate_yolov8n.pt", "cpu", 960, 1, half=True)
