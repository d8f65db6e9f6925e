"""Every default value in one place, each with a one-line description (as rq/defaults.py does)."""

from __future__ import annotations

from typing import Literal

DETECTOR_BACKEND: Literal["onnx", "torch"] = "onnx"
"""Inference backend for the plate detector: `onnx` (ONNX Runtime) or `torch` (ultralytics)."""

DETECTOR_DEVICE = "cpu"
"""Device for the detector: `cpu` or `cuda:N`."""

DETECTOR_IMGSZ = 960
"""Longest side, in pixels, that frames are letterboxed to before detection."""

DETECTOR_CONFIDENCE = 0.05
"""Lowest detector confidence kept; low on purpose, the OCR stage decides what is a plate."""

DETECTOR_MAX_PLATES_PER_FRAME = 8
"""At most this many plate boxes per frame, highest confidence first."""

DETECTOR_BATCH_SIZE = 4
"""Frames per detector inference call."""

OCR_ENGINE: Literal["ppocr", "tesseract"] = "ppocr"
"""OCR engine: `ppocr` (PP-OCRv4 recogniser via ONNX Runtime) or `tesseract` (Tesseract C API)."""

OCR_REGION = "us"
"""Plate-format region whose patterns guide correction: a key of ocr_worker/plate_formats.yaml."""

OCR_MAX_CANDIDATES = 5
"""Candidate readings kept per plate, best first."""

OCR_CROP_MARGIN = 0.08
"""Margin added around a plate box before OCR, as a fraction of the box's width and height."""

OCR_MIN_CONFIDENCE = 0.5
"""Reads below this confidence are logged as uncertain and left out of the distinct-plates table."""

REDACT_METHOD: Literal["blur", "pixelate"] = "blur"
"""How plates are hidden in kept frames: `blur` (Gaussian) or `pixelate`."""

REDACT_MARGIN = 0.15
"""Margin added around a plate box before redaction, as a fraction of its width and height."""

SAMPLE_FPS = 5.0
"""Frames per second sampled from each source."""

SQLITE_PATH = "alpr_reads.sqlite"
"""Where the standalone pipeline logs reads when no database URL is set."""

STREAM_OPEN_TIMEOUT_MS = 10_000
"""How long opening a stream URL may take before it is reported unreachable."""

DATASETS_DIR = "../shared/datasets"
"""Where the evaluation photographs live, relative to the working directory."""
