"""Where the detector's weights come from: the licence-plate YOLOv8n shipped in `fastanpr`, installed
into a model folder with its ONNX export, so nothing is downloaded at run time."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from common.errors import ConfigError

TORCH_WEIGHTS_NAME = "plate_yolov8n.pt"
"""File name of the PyTorch weights inside the model folder."""

ONNX_WEIGHTS_NAME = "plate_yolov8n.onnx"
"""File name of the ONNX export inside the model folder."""


def bundled_weights_path() -> Path:
    """The `best.pt` inside the installed `fastanpr` package, found without importing it."""
    spec = importlib.util.find_spec("fastanpr")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the package fastanpr==0.1.13 is not installed; run `pip install --no-deps fastanpr==0.1.13`")
    path = Path(next(iter(spec.submodule_search_locations))) / "best.pt"
    if not path.is_file():
        raise ConfigError(f"fastanpr is installed but {path} is missing")
    return path


def install_models(model_dir: Path) -> tuple[Path, Path]:
    """Copy the bundled weights into `model_dir` and export them to ONNX (dynamic batch and size)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch_path = model_dir / TORCH_WEIGHTS_NAME
    onnx_path = model_dir / ONNX_WEIGHTS_NAME
    if not torch_path.is_file():
        shutil.copyfile(bundled_weights_path(), torch_path)
    if not onnx_path.is_file() or onnx_path.stat().st_mtime < torch_path.stat().st_mtime:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        exported = YOLO(str(torch_path)).export(format="onnx", dynamic=True, simplify=False, verbose=False)
        Path(exported).replace(onnx_path)
    return torch_path, onnx_path


def resolve_weights(backend: str, model_dir: Path, weights: Path | None) -> Path:
    """The weights file a backend loads: the user's own when set, else the installed default."""
    if weights is not None:
        if not weights.is_file():
            raise ConfigError(f"detector weights {weights} do not exist")
        return weights
    path = model_dir / (ONNX_WEIGHTS_NAME if backend == "onnx" else TORCH_WEIGHTS_NAME)
    if not path.is_file():
        raise ConfigError(f"detector weights {path} are missing; run `alpr setup` first")
    return path
