"""The `ppocr` OCR engine: a PaddleOCR text recogniser — PP-OCRv4 (shipped inside
`rapidocr-onnxruntime`) or PP-OCRv6 small (inside `rapidocr==3.10.0`, installed without its
dependencies) — run directly through ONNX Runtime with CTC decoding restricted to plate characters.
Both take 3x48xW images and carry their dictionary in the model's metadata."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from common.errors import ConfigError
from common.regions import DIGITS, LETTERS
from ocr_worker.formats import CharChoices

INPUT_HEIGHT = 48
"""The recogniser's input height in pixels (PP-OCR's and the plate model's alike): the text lines are
rectified to it (ocr_worker/text_lines.py) and calibration counts a crop shorter than it as short of
full resolution (ocr_worker/calibration.py)."""

MIN_INPUT_WIDTH = 96
"""Inputs narrower than this are padded on the right (PaddleOCR pads to 320; plates need far less)."""

MAX_INPUT_WIDTH = 960
"""Inputs wider than this are squeezed."""

ALTERNATIVES = 3
"""Alternatives kept per character position."""

PLATE_ALPHABET = sorted(LETTERS | DIGITS)


BUNDLED_MODELS = {
    "v4": ("rapidocr_onnxruntime", "rapidocr-onnxruntime", "ch_PP-OCRv4_rec_infer.onnx"),
    "v6": ("rapidocr", "rapidocr==3.10.0 (pip install --no-deps)", "PP-OCRv6_rec_small.onnx"),
}
"""Recogniser version -> (package that ships it, how to install it, file in the package's models/)."""


PLATE_MODEL = "models/plate_rec.onnx"
"""The plate-trained recogniser (`alpr train-ocr`, card beside it), shipped in this package."""


def packaged_model(package: str, install: str, name: str, what: str) -> Path:
    """An ONNX file in an installed package's models/ folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{install} is not installed; it carries the {what}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ConfigError(f"the {what} is missing at {path}")
    return path


def bundled_model_path(version: str = "v4") -> Path:
    """A recogniser ONNX file: the plate model in this package, or PP-OCR's inside its package."""
    if version == "plate":
        return Path(str(resources.files("ocr_worker").joinpath(PLATE_MODEL)))
    package, install, name = BUNDLED_MODELS[version]
    return packaged_model(package, install, name, f"PP-OCR{version} recogniser")


def cpu_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session on the CPU with `threads` threads for each operator, one at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def input_batch(crops_bgr: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Crops as the recogniser's input, Nx3x48xW in [-1, 1]: each scaled to 48 px tall (squeezed when
    wider than `width` or MAX_INPUT_WIDTH) and right-padded to `width`, by default the widest (at least
    MIN_INPUT_WIDTH). Reading and training (`alpr train-ocr`) prepare crops with this one function."""
    limit = width or MAX_INPUT_WIDTH
    widths = [min(limit, max(1, math.ceil(INPUT_HEIGHT * c.shape[1] / max(c.shape[0], 1)))) for c in crops_bgr]
    batch = np.zeros((len(crops_bgr), 3, INPUT_HEIGHT, width or max(MIN_INPUT_WIDTH, *widths)), np.float32)
    for index, (crop, crop_width) in enumerate(zip(crops_bgr, widths, strict=True)):
        image = crop if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        resized = cv2.resize(image, (crop_width, INPUT_HEIGHT)).astype(np.float32)
        batch[index, :, :, :crop_width] = (resized.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return batch


WIDTH_STEP = 16
"""PP-OCR's recognisers read each line at its own width, rounded up to this (lines of one rounded width
share a run)."""


def padded_width(crop: np.ndarray) -> int:
    """The input width PP-OCR's own recognisers read `crop` at: scaled to INPUT_HEIGHT tall, rounded up
    to WIDTH_STEP, between MIN_INPUT_WIDTH and MAX_INPUT_WIDTH."""
    width = math.ceil(INPUT_HEIGHT * crop.shape[1] / max(crop.shape[0], 1))
    return min(MAX_INPUT_WIDTH, max(MIN_INPUT_WIDTH, -(-width // WIDTH_STEP) * WIDTH_STEP))


class PpocrEngine:
    """Recognises one line of plate text, giving per-character alternatives with probabilities (an
    ocr_worker.engines.OcrEngine)."""

    type_key: ClassVar[str] = "ppocr"
    reads_recogniser_files: ClassVar[bool] = True

    @classmethod
    def configured(cls, model: str, model_file: Path | None, threads: int) -> PpocrEngine:
        """The recogniser `model` (plate, v4, v6), or `model_file` in its place."""
        return cls(model_file, threads=threads, version=model)

    @staticmethod
    def calibration_key(model: str) -> str:
        return f"ppocr-{model}"

    @staticmethod
    def recogniser_file(model: str) -> Path | None:
        return bundled_model_path(model)

    @staticmethod
    def trained_on_benchmark(model: str) -> bool:
        return model == "plate"  # `alpr train-ocr` trains it on most of the benchmark's images

    def __init__(self, model_path: Path | None = None, threads: int = 1, version: str = "v4") -> None:
        self.session = cpu_session(model_path or bundled_model_path(version), threads)
        self.input_name = self.session.get_inputs()[0].name
        metadata = self.session.get_modelmeta().custom_metadata_map
        characters = metadata["character"].splitlines()
        # A model trained at one width (alpr train-ocr) is read at that width; PP-OCR's own at each line's.
        self.input_width = int(metadata["input_width"]) if "input_width" in metadata else None
        vocabulary = ["<blank>", *characters, " "]
        # The model's columns of the plate characters, and which plate character each one adds to
        # (upper and lower case merged): the plate characters' probabilities are one gather and product.
        columns = [(i, k) for k, symbol in enumerate(PLATE_ALPHABET) for i, c in enumerate(vocabulary)
                   if c.upper() == symbol and c.isascii()]  # fmt: skip
        self.plate_columns = np.array([i for i, _ in columns])
        self.merge = np.zeros((len(columns), len(PLATE_ALPHABET)), np.float32)
        self.merge[np.arange(len(columns)), [k for _, k in columns]] = 1.0

    def recognize(self, crop_bgr: np.ndarray) -> CharChoices:
        return self.recognize_batch([crop_bgr])[0]

    def recognize_batch(self, crops_bgr: Sequence[np.ndarray]) -> list[CharChoices]:
        """Each crop's read, in one run per input width: the plate model's one width, or for PP-OCR's
        own each line's width rounded up to WIDTH_STEP. Padded to the widest of the batch, a line read
        differently beside a wider one (its read hung on which other cars' plates shared the job)."""
        if not crops_bgr:
            return []
        if self.input_width is not None:
            groups = {self.input_width: list(range(len(crops_bgr)))}
        else:
            groups = {}
            for index, crop in enumerate(crops_bgr):
                groups.setdefault(padded_width(crop), []).append(index)
        reads: list[CharChoices] = [[] for _ in crops_bgr]
        for width, indices in groups.items():
            batch = input_batch([crops_bgr[i] for i in indices], width)
            probabilities = self.session.run(None, {self.input_name: batch})[0]
            for index, plate in zip(indices, probabilities[:, :, self.plate_columns] @ self.merge, strict=True):
                reads[index] = self._decode(plate)
        return reads

    def _decode(self, plate: np.ndarray) -> CharChoices:
        """Greedy CTC decoding of one line's plate-character probabilities (steps x PLATE_ALPHABET),
        where any other symbol counts as a blank."""
        blank = 1.0 - plate.sum(axis=1)
        best = plate.argmax(axis=1)
        emitting = plate[np.arange(len(best)), best] > blank
        choices: list[list[tuple[str, float]]] = []
        run_start = None
        for t in range(len(best) + 1):
            same_run = run_start is not None and t < len(best) and emitting[t] and best[t] == best[run_start]
            if same_run:
                continue
            if run_start is not None:
                peak = run_start + int(plate[run_start:t, best[run_start]].argmax())
                order = np.argsort(plate[peak])[::-1][:ALTERNATIVES]
                choices.append([(PLATE_ALPHABET[i], float(plate[peak, i])) for i in order])
            run_start = t if t < len(best) and emitting[t] else None
        return choices
