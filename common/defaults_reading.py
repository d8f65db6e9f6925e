"""Defaults of how plates are found, read and hidden: the detector (its backend, device, input size,
confidences, tiling), the OCR engine and recogniser, and the redaction of kept frames.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from common.setting_choices import DetectorBackendName, OcrEngineName, OcrModelName

DETECTOR_BACKEND: DetectorBackendName = "onnx"
"""Inference backend for the plate detector: `onnx` (ONNX Runtime), `onnx-int8` (ONNX Runtime on the model
quantised to int8 at `alpr setup`: 1.6-1.7 times as fast per core on CPU, the same plates found; README,
Performance) or `torch` (ultralytics)."""

DETECTOR_DEVICE = "cpu"
"""Device for the detector: `cpu` or `cuda:N`."""

DETECTOR_HALF = False
"""Half precision (FP16) for the `torch` backend on a CUDA device, for larger weights of your own: for the
shipped YOLOv8n it measured no faster on an H200 (likely the work around the network: not profiled), its boxes
at IoU >= 0.98 of FP32's (benchmarks/bench_detector_gpu.py; README, Performance). ONNX runs FP32 only."""

DETECTOR_IMGSZ = 960
"""Longest side, in pixels, that frames are letterboxed to before detection."""

DETECTOR_CONFIDENCE = 0.05
"""Lowest detector confidence read; low on purpose, the OCR stage decides what is a plate."""

DETECTOR_REDACT_CONFIDENCE = 0.05
"""Lowest detector confidence blurred, whatever ALPR_DETECTOR_CONFIDENCE says (it chooses what is read):
raised to 0.5 it left 4 of 120 kept frames of the demo clip with a readable plate (a review)."""

DETECTOR_MAX_PLATES_PER_FRAME = 100
"""At most this many plate boxes per frame, highest confidence first (every one is blurred: a car park
or a queue of traffic holds dozens; the 333 benchmark photos give at most 7 boxes at the low
confidence above)."""

DETECTOR_NESTED_SHARE = 0.6
"""A plate box with this share of its area inside a stronger box is blurred, not read: one plate, one read."""

DETECTOR_BATCH_SIZE = 1
"""Frames per detector inference call. On CPU, 1 measures best (benchmarks/bench_cores.py compares
batch sizes; README, Performance); on a GPU, raise it to the frames per job."""

MAX_INFERENCE_THREADS = 256
"""Most CPU threads ALPR_DETECTOR_THREADS may ask for (more than a large host's cores: the threads spin on
the cores there are). Unbounded, 100,000 made the detector start 10,000 threads, reach 16 GB resident and
ignore SIGINT, never ready (a review)."""

DETECTOR_MAX_DOWNSCALE = 2.0
"""A frame the detector would shrink more than this to fit DETECTOR_IMGSZ (a 4K frame, 4x at 960) is also
searched in overlapping tiles shrunk at most this much (detector_worker/tiles.py): on the whole frame
alone, plates under ~100 px wide fell below what the detector finds, and were neither read nor blurred.
2.0 leaves 1080p at 960 as it was (one view); 4K takes 7 (the frame and 3x2 tiles); 0: never tiled."""

OCR_ENGINE: OcrEngineName = "ppocr"
"""OCR engine: `ppocr` (PP-OCRv4 recogniser via ONNX Runtime) or `tesseract` (Tesseract C API)."""

OCR_MODEL: OcrModelName = "plate"
"""The ppocr engine's recogniser: `plate` (PP-OCRv6 small fine-tuned on plates by `alpr train-ocr`, in
ocr_worker/models), PP-OCRv4 (rapidocr-onnxruntime) or PP-OCRv6 small (rapidocr 3.10.0)."""

OCR_REGION = "us"
"""Plate-format region whose patterns guide correction: a key of common/plate_formats.yaml."""

OCR_MAX_CANDIDATES = 5
"""Candidate readings kept per plate, best first."""

OCR_CROP_MARGIN = 0.08
"""Margin added around a plate box before OCR, as a fraction of the box's width and height."""

OCR_MIN_CONFIDENCE = 0.85
"""A read is trusted at or above this calibrated probability of being exactly right (ocr_worker/
calibration.py; `alpr eval` reports coverage and wrong reads at it, README, Accuracy). Reads below it
are logged as uncertain and left out of the distinct-plates table."""

REDACT_METHOD: Literal["blur", "pixelate"] = "blur"
"""How plates are hidden in kept frames: `blur` (the box repainted from its surroundings, smoothed by a
Gaussian) or `pixelate` (the same as a mosaic); neither keeps a pixel of the plate (redactor_worker/core.py)."""

REDACT_MARGIN = 0.15
"""Margin added around a plate box before redaction, as a fraction of its width and height."""
