"""OCR engines as plugins chosen by a config key (ALPR_OCR_ENGINE, `--engine`), as Frigate keys its
detectors by `type_key`: `ENGINES[key]` is the engine's class, and what differs between engines lives
in it — how it is built from the reader's settings, how it recognises the located text lines, how
calibration.json keys its fit, which recogniser file it reads. The reader (ocr_worker/core.py) and the
commands hold an engine or its class and never ask which one it is. A new engine: a class that
satisfies `OcrEngine`, a row in ENGINES, and its key in common/setting_choices.py's OcrEngineName (the names a
setting may give: common knows no role, so a test holds the two equal)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from ocr_worker.formats import CharChoices
from ocr_worker.ppocr_engine import PpocrEngine
from ocr_worker.tesseract_engine import TesseractEngine


class OcrEngine(Protocol):
    """What the reader asks of an engine, and the commands of its class."""

    type_key: ClassVar[str]
    """The config key that selects it."""

    reads_recogniser_files: ClassVar[bool]
    """Whether it reads a recogniser ONNX file given in place of its model's (OcrSettings.model_file)."""

    @classmethod
    def configured(cls, model: str, model_file: Path | None, threads: int) -> OcrEngine:
        """The engine with recogniser `model` (read from `model_file` when given), on `threads` threads."""
        ...

    @staticmethod
    def calibration_key(model: str) -> str:
        """How calibration.json keys the fit of this engine with recogniser `model`."""
        ...

    @staticmethod
    def recogniser_file(model: str) -> Path | None:
        """The file recogniser `model` is read from unless another is given (None: the engine has none)."""
        ...

    @staticmethod
    def trained_on_benchmark(model: str) -> bool:
        """Whether recogniser `model` trained on most of the benchmark's images (a fit on all of them is
        overconfident on a camera's)."""
        ...

    def recognize_batch(self, lines: Sequence[np.ndarray]) -> list[CharChoices]:
        """Each located line of plate text (BGR, ocr_worker/text_lines.py) read: its characters, each
        with its alternatives."""
        ...


ENGINES: dict[str, type[OcrEngine]] = {engine.type_key: engine for engine in (PpocrEngine, TesseractEngine)}
"""OCR engines by the config key that selects them."""
