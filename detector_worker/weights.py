"""Where the detector's weights come from: the licence-plate YOLOv8n shipped in `fastanpr`, installed
into a model folder with its ONNX export and that export quantised to int8 (detector_worker/quantize.py),
so nothing is downloaded at run time. Each file is written whole or not at all, and `alpr setup`
replaces one it finds cut short."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConfigError
from common.private_files import write_whole

if TYPE_CHECKING:
    import numpy as np

TORCH_WEIGHTS_NAME = "plate_yolov8n.pt"
"""File name of the PyTorch weights inside the model folder."""

ONNX_WEIGHTS_NAME = "plate_yolov8n.onnx"
"""File name of the ONNX export inside the model folder."""

INT8_WEIGHTS_NAME = "plate_yolov8n_int8.onnx"
"""File name of the export quantised to int8 (the `onnx-int8` backend's) inside the model folder."""

WEIGHTS_NAMES = {"onnx": ONNX_WEIGHTS_NAME, "onnx-int8": INT8_WEIGHTS_NAME, "torch": TORCH_WEIGHTS_NAME}
"""The default weights' file name per backend."""


def bundled_weights_path() -> Path:
    """The `best.pt` inside the installed `fastanpr` package, found without importing it."""
    spec = importlib.util.find_spec("fastanpr")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the package fastanpr==0.1.13 is not installed; run `pip install --no-deps fastanpr==0.1.13`")
    path = Path(next(iter(spec.submodule_search_locations))) / "best.pt"
    if not path.is_file():
        raise ConfigError(f"fastanpr is installed but {path} is missing")
    return path


def is_whole_checkpoint(path: Path) -> bool:
    """Whether `path` holds a whole PyTorch checkpoint: a zip archive each member of which reads back (its
    CRC checks). One cut short (a copy killed mid-way, a full disk) is not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, EOFError, zipfile.BadZipFile):
        return False


def is_loadable_onnx(path: Path) -> bool:
    """Whether ONNX Runtime loads the model at `path` (0.1 s for the detector's)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's errors (InvalidProtobuf, Fail, NoSuchFile) share no base of their own
        return False
    return True


def export_onnx(torch_path: Path, onnx_path: Path) -> None:
    """Export the weights at `torch_path` to ONNX (dynamic batch and size) at `onnx_path`, whole: ultralytics
    writes its export beside the weights it reads, so it works on a copy in a folder of its own and the
    file is moved in once written (an export killed mid-way had left a file cut short, newer than the
    weights, which every later `alpr setup` took for done)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix=".export-", dir=onnx_path.parent) as folder:
        weights = Path(folder) / torch_path.name
        shutil.copyfile(torch_path, weights)
        exported = YOLO(str(weights)).export(format="onnx", dynamic=True, simplify=False, verbose=False)
        Path(exported).replace(onnx_path)


def install_models(model_dir: Path) -> tuple[Path, Path]:
    """Copy the bundled weights into `model_dir` and export them to ONNX (dynamic batch and size); weights
    or an export found cut short are made again (they had been kept, and every detector worker then
    died at start on them: `alpr setup` could not mend its own interrupted run)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch_path = model_dir / TORCH_WEIGHTS_NAME
    onnx_path = model_dir / ONNX_WEIGHTS_NAME
    if not is_whole_checkpoint(torch_path):
        write_whole(torch_path, bundled_weights_path().read_bytes(), 0o644)
    if (
        not onnx_path.is_file()
        or onnx_path.stat().st_mtime < torch_path.stat().st_mtime
        or not is_loadable_onnx(onnx_path)
    ):
        export_onnx(torch_path, onnx_path)
    return torch_path, onnx_path


def install_int8(
    model_dir: Path, calibration_frames: Callable[[], Sequence[np.ndarray]], calibrate: bool = False
) -> Path:
    """The int8 model of the ONNX export in `model_dir` (install_models first), made with the shipped
    ranges (or, where they do not fit the export or `calibrate` asks it, from the frames
    `calibration_frames` gives) when it is missing, cut short, older than the export or of another recipe
    (detector_worker/quantize.py), or when `calibrate`; a model that is current is left as it is. The
    ranges it was made with are written beside it (quantize.RANGES_NAME)."""
    from detector_worker.quantize import (
        INT8_RECIPE,
        RANGES_NAME,
        quantize_detector,
        ranges_text,
        recipe_of,
        weights_digest,
    )

    onnx_path, int8_path = model_dir / ONNX_WEIGHTS_NAME, model_dir / INT8_WEIGHTS_NAME
    if (
        calibrate
        or not int8_path.is_file()
        or int8_path.stat().st_mtime < onnx_path.stat().st_mtime
        or recipe_of(int8_path) != INT8_RECIPE
        or not is_loadable_onnx(int8_path)
    ):
        ranges = quantize_detector(onnx_path, int8_path, calibration_frames, calibrate)
        write_whole(model_dir / RANGES_NAME, ranges_text(ranges, weights_digest(onnx_path)).encode(), 0o644)
    return int8_path


WEIGHTS_DIGEST_CHARS = 12
"""Hex characters of a weights file's SHA-256 a detector worker publishes (`weights_digest`)."""


def weights_digest(path: Path) -> str:
    """The start of the SHA-256 of the weights file at `path` (12 MB: about 20 ms), which a detector worker
    publishes with its settings: `alpr status` tells a pool whose members load different weights."""
    digest = hashlib.sha256()
    with path.open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:WEIGHTS_DIGEST_CHARS]


def unloadable_weights(weights: Path, error: Exception) -> ConfigError:
    """The error a detector backend raises at start for weights it cannot load: one line naming the file
    and the way out, not the runtime's traceback."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return ConfigError(
        f"detector weights {weights} cannot be loaded ({reason}); a file cut short or not a model:"
        " `alpr setup` installs the default weights again"
    )


def resolve_weights(backend: str, model_dir: Path, weights: Path | None) -> Path:
    """The weights file a backend loads: the user's own when set, else the installed default."""
    if weights is not None:
        if not weights.is_file():
            raise ConfigError(f"detector weights {weights} do not exist")
        return weights
    path = model_dir / WEIGHTS_NAMES[backend]
    if not path.is_file():
        raise ConfigError(f"detector weights {path} are missing; run `alpr setup` first")
    return path
