"""The names the choice settings may take (ALPR_OCR_ENGINE, ALPR_OCR_MODEL, ALPR_DETECTOR_BACKEND): each as a
type, for common/config.py's Settings, and as a tuple, for the command line's `choices`."""

from __future__ import annotations

from typing import Literal, get_args

OcrEngineName = Literal["ppocr", "tesseract"]
"""The OCR engines ALPR_OCR_ENGINE (and `--engine`) may name: the keys of ocr_worker/engines.py's ENGINES,
the engines' table, which common cannot read (common knows no role), so tests/ocr_worker/test_engines.py
holds the two equal. A new engine: its class in that table, its key here."""

OCR_ENGINES: tuple[str, ...] = get_args(OcrEngineName)
"""The same names, in that order (`--engine`'s choices)."""

OcrModelName = Literal["v4", "v6", "plate"]
"""The recognisers ALPR_OCR_MODEL (and `--ocr-model`) may name for the ppocr engine."""

OCR_MODELS: tuple[str, ...] = get_args(OcrModelName)
"""The same names, in that order (`--ocr-model`'s choices)."""

DetectorBackendName = Literal["onnx", "onnx-int8", "torch"]
"""The detector runtimes ALPR_DETECTOR_BACKEND (and `--backend`) may name."""

DETECTOR_BACKENDS: tuple[str, ...] = get_args(DetectorBackendName)
"""The same names, in that order (`--backend`'s choices)."""
