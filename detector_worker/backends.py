"""Detector inference backends, chosen by config key: `onnx` (ONNX Runtime, no torch at run time),
`onnx-int8` (the same runtime on the export quantised to int8 at `alpr setup`: detector_worker/quantize.py)
and `torch` (ultralytics). Each maps a batch of BGR frames to boxes in the frames' own pixels."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from common.errors import ConfigError
from common.types import FloatArray
from detector_worker.weights import unloadable_weights

NMS_IOU = 0.7
"""IoU above which overlapping plate boxes are merged (ultralytics' default)."""

NMS_CANDIDATES_PER_PLATE = 30
"""At most this many candidate boxes per plate kept (`max_det`), the strongest, go into NMS: YOLO gives
about 11 per plate (216 for a frame of 20 plates), and NMS's cost grows with the square of its input
(a frame of noise above the low confidence floor cost 650 ms with all 8,400 candidates)."""

STRIDE = 32
"""The network's largest stride: letterboxed sides are padded to a multiple of it."""

INT8_CONFIDENCE_SHARE = 0.7
"""The int8 model keeps boxes from this share of the confidence floor (0.035 at the default 0.05). Its scores
scatter about the float model's (on the benchmark photos 0.01-0.02 higher on average, a twentieth of
boxes 0.015-0.055 lower), and three plates of cars further back that the float model kept at 0.05-0.07 at
imgsz 640 came out at 0.041-0.045: every box is blurred, so a plate dropped under the floor would reach
disk unblurred. From 0.7 of it, every plate the float model keeps at the floor is kept, at 960 and at
640 (about 10% more boxes, each read as well; the reads the same)."""

RawBoxes = tuple[FloatArray, FloatArray]

log = logging.getLogger(__name__)


class DetectorBackend(Protocol):
    def infer(self, frames: Sequence[np.ndarray], confidence: float, max_det: int) -> list[RawBoxes]:
        """Boxes (N, 4) xyxy and confidences (N,) per frame, highest confidence first."""
        ...


def _letterbox_shape(frames: Sequence[np.ndarray], imgsz: int) -> tuple[int, int]:
    """Smallest (height, width), multiples of STRIDE, that hold every frame scaled to `imgsz`."""
    height = width = 0
    for frame in frames:
        h, w = frame.shape[:2]
        ratio = imgsz / max(h, w)
        height = max(height, max(1, round(h * ratio)))  # a 1x2000 frame still gets a row of pixels
        width = max(width, max(1, round(w * ratio)))
    return -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE


class OnnxBackend:
    """YOLOv8 exported to ONNX with dynamic batch and size, pre- and post-processing in numpy."""

    def __init__(self, weights: Path, device: str, imgsz: int, threads: int, half: bool = False) -> None:
        if half:
            raise ConfigError("the ONNX detector runs in FP32 only; FP16 is the torch backend's, on CUDA")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            index = device.partition(":")[2] or "0"
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(index)}))  # type: ignore[arg-type]
        try:
            self.session = ort.InferenceSession(str(weights), options, providers=providers)
        except Exception as error:  # onnxruntime's errors share no base of their own
            raise unloadable_weights(weights, error) from None
        self.input_name = self.session.get_inputs()[0].name
        self.imgsz = imgsz

    def infer(self, frames: Sequence[np.ndarray], confidence: float, max_det: int) -> list[RawBoxes]:
        tensor, placements = letterboxed(frames, self.imgsz)
        output = self.session.run(None, {self.input_name: tensor})[0]
        return [
            _decode(prediction, confidence, max_det, placement, frame.shape[:2])
            for prediction, placement, frame in zip(output, placements, frames, strict=False)
        ]


class OnnxInt8Backend(OnnxBackend):
    """The float backend on the int8 model, on the CPU (its 7-bit weights compute alike on every x86 CPU;
    not measured on a GPU), keeping boxes from INT8_CONFIDENCE_SHARE of the confidence floor."""

    def __init__(self, weights: Path, device: str, imgsz: int, threads: int, half: bool = False) -> None:
        if device != "cpu":
            raise ConfigError(f"the int8 detector (onnx-int8) runs on the CPU, not {device}: choose onnx or torch")
        super().__init__(weights, device, imgsz, threads, half)

    def infer(self, frames: Sequence[np.ndarray], confidence: float, max_det: int) -> list[RawBoxes]:
        return super().infer(frames, confidence * INT8_CONFIDENCE_SHARE, max_det)


def letterboxed(frames: Sequence[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
    """The network's input for a batch of BGR frames: each scaled to fit `imgsz` and centred on grey, RGB,
    NCHW, 0-1; with each frame's placement in it (scale, left, top)."""
    height, width = _letterbox_shape(frames, imgsz)
    batch = np.full((len(frames), height, width, 3), 114, np.uint8)
    placements = []
    for index, frame in enumerate(frames):
        h, w = frame.shape[:2]
        ratio = min(height / h, width / w, imgsz / max(h, w))
        new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
        top, left = (height - new_h) // 2, (width - new_w) // 2
        batch[index, top : top + new_h, left : left + new_w] = cv2.resize(
            frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR
        )
        placements.append((ratio, left, top))
    tensor = np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    return tensor, placements


def _decode(
    prediction: np.ndarray,
    confidence: float,
    max_det: int,
    placement: tuple[float, int, int],
    frame_hw: tuple[int, ...],
) -> RawBoxes:
    """One image's raw (4 + classes, anchors) output to NMS-filtered boxes in frame pixels."""
    scores = prediction[4:].max(axis=0)
    keep = scores >= confidence
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    cx, cy, w, h = prediction[:4, keep]
    scores = scores[keep]
    candidates = NMS_CANDIDATES_PER_PLATE * max_det
    if len(scores) > candidates:  # the strongest only: NMS's cost grows with the square of its input
        strongest = np.argpartition(-scores, candidates)[:candidates]
        cx, cy, w, h, scores = cx[strongest], cy[strongest], w[strongest], h[strongest], scores[strongest]
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    # No top_k here: OpenCV applies it to the candidates before suppression, and YOLO gives several
    # per plate, so the copies of the strongest plates would fill every slot and hide the rest.
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), confidence, NMS_IOU)
    chosen = np.asarray(kept, dtype=np.int64).reshape(-1)[:max_det]
    ratio, left, top = placement
    xyxy = xywh[chosen].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - left) / ratio).clip(0, frame_hw[1])
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - top) / ratio).clip(0, frame_hw[0])
    return xyxy.astype(np.float32), scores[chosen].astype(np.float32)


class TorchBackend:
    """The ultralytics YOLO runtime on PyTorch (CPU or CUDA, FP32 or on CUDA FP16)."""

    def __init__(self, weights: Path, device: str, imgsz: int, threads: int, half: bool = False) -> None:
        if half and not device.startswith("cuda"):
            raise ConfigError(f"FP16 runs on a CUDA device, not {device}")
        os.environ.setdefault("YOLO_OFFLINE", "1")
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(threads)
        if torch.get_num_threads() != threads:  # rq issue #1991: check what a worker really gets
            log.warning("torch runs %d threads, not the %d asked for", torch.get_num_threads(), threads)
        try:
            self.model = YOLO(str(weights), task="detect")
        except Exception as error:  # torch.load's, pickle's, ultralytics' own: a file that is not a model
            raise unloadable_weights(weights, error) from None
        self.device = device
        self.imgsz = imgsz
        self.half = half

    def infer(self, frames: Sequence[np.ndarray], confidence: float, max_det: int) -> list[RawBoxes]:
        results = self.model.predict(
            list(frames),
            imgsz=self.imgsz,
            conf=confidence,
            iou=NMS_IOU,
            device=self.device,
            quantize=16 if self.half else None,  # FP16 (ultralytics' `half`, renamed)
            max_det=max_det,
            verbose=False,
        )
        out = []
        for result in results:
            boxes = result.cpu().numpy().boxes  # type: ignore[union-attr]
            if boxes is None:
                out.append((np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)))
                continue
            out.append((np.asarray(boxes.xyxy, np.float32), np.asarray(boxes.conf, np.float32)))
        return out


BACKENDS: dict[str, type[OnnxBackend] | type[TorchBackend]] = {
    "onnx": OnnxBackend, "onnx-int8": OnnxInt8Backend, "torch": TorchBackend,
}  # fmt: skip
"""Backends by the config key that selects them."""
