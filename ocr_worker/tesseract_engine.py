"""The `tesseract` OCR engine: Tesseract's LSTM through its C API (tesserocr), one line, plate
characters only, with per-symbol alternatives. No process is started per plate."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from common.errors import ConfigError
from common.regions import DIGITS, LETTERS
from ocr_worker import preprocess
from ocr_worker.formats import CharChoices

WHITELIST = "".join(sorted(LETTERS | DIGITS))

TESSERACT_HEIGHT = 64
"""Height, in pixels, plate lines are scaled to before Tesseract reads them."""


def binarized_line(line: np.ndarray) -> np.ndarray:
    """The original design's recipe (grayscale, bilateral filter, Otsu threshold) on the located
    line, scaled to a height Tesseract reads well and framed in white."""
    gray = preprocess.upscale_to_height(preprocess.to_gray(line), TESSERACT_HEIGHT)
    binary = preprocess.clear_border(preprocess.binarize(preprocess.denoise(gray)))
    return np.pad(binary, 12, constant_values=255)


def find_tessdata() -> str:
    """Tesseract's language folder: $TESSDATA_PREFIX, else Debian's /usr/share/tesseract-ocr/*/tessdata."""
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata"))]
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "eng.traineddata")):
            return folder
    raise ConfigError("Tesseract's eng.traineddata was not found; install tesseract-ocr or set TESSDATA_PREFIX")


class TesseractEngine:
    """Reads a binarised plate line with Tesseract; one API object, reused for every plate (an
    ocr_worker.engines.OcrEngine)."""

    type_key: ClassVar[str] = "tesseract"
    reads_recogniser_files: ClassVar[bool] = False

    @classmethod
    def configured(cls, model: str, model_file: Path | None, threads: int) -> TesseractEngine:
        """Tesseract's own English model: the recogniser settings are the ppocr engine's."""
        return cls()

    @staticmethod
    def calibration_key(model: str) -> str:
        return "tesseract"

    @staticmethod
    def recogniser_file(model: str) -> Path | None:
        return None

    @staticmethod
    def trained_on_benchmark(model: str) -> bool:
        return False

    def __init__(self, tessdata: str | None = None) -> None:
        from tesserocr import OEM, PSM, PyTessBaseAPI

        self.api = PyTessBaseAPI(path=tessdata or find_tessdata(), lang="eng", psm=PSM.SINGLE_LINE, oem=OEM.LSTM_ONLY)
        self.api.SetVariable("tessedit_char_whitelist", WHITELIST)
        self.api.SetVariable("lstm_choice_mode", "2")
        self.api.SetVariable("load_system_dawg", "0")
        self.api.SetVariable("load_freq_dawg", "0")

    def recognize_batch(self, lines: Sequence[np.ndarray]) -> list[CharChoices]:
        """Each located line, binarised (`binarized_line`), read in turn."""
        return [self.recognize(binarized_line(line)) for line in lines]

    def recognize(self, binary: np.ndarray) -> CharChoices:
        from tesserocr import RIL, iterate_level

        image = np.ascontiguousarray(binary, dtype=np.uint8)
        height, width = image.shape[:2]
        self.api.SetImageBytes(image.tobytes(), width, height, 1, width)
        self.api.Recognize()
        choices: list[list[tuple[str, float]]] = []
        iterator = self.api.GetIterator()
        if iterator is None:
            return choices
        for symbol in iterate_level(iterator, RIL.SYMBOL):
            try:
                text = (symbol.GetUTF8Text(RIL.SYMBOL) or "").strip().upper()
            except RuntimeError:  # tesserocr's way of saying "empty symbol"
                continue
            if len(text) != 1 or text not in WHITELIST:
                continue
            alternatives = {text: symbol.Confidence(RIL.SYMBOL) / 100.0}
            for choice in symbol.GetChoiceIterator():
                char = (choice.GetUTF8Text() or "").strip().upper()
                if len(char) == 1 and char in WHITELIST and char not in alternatives:
                    alternatives[char] = choice.Confidence() / 100.0
            ranked = sorted(alternatives.items(), key=lambda item: item[1], reverse=True)
            # Tesseract's confidences are certainties, not probabilities: its chosen symbol is the
            # likeliest by construction, so it maps to [0.5, 1] and the alternatives below it.
            top, *rest = [max(0.0, min(1.0, p)) for _, p in ranked]
            probabilities = [0.5 + 0.5 * top, *(0.5 * p for p in rest)]
            choices.append([(c, p) for (c, _), p in zip(ranked, probabilities, strict=False)])
        return choices
