"""The detector's weights in the model folder: `alpr setup` mends files an interrupted run left cut short,
and a worker given weights it cannot load stops with one line naming them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alpr.cli import main
from common.errors import ConfigError
from detector_worker.backends import OnnxBackend, TorchBackend
from detector_worker.weights import (
    ONNX_WEIGHTS_NAME,
    TORCH_WEIGHTS_NAME,
    bundled_weights_path,
    install_models,
    is_loadable_onnx,
    is_whole_checkpoint,
)


def cut_short(source: Path, target: Path, keep: float) -> Path:
    """The first `keep` share of the file at `source`, written at `target` (a copy or an export killed
    mid-way, a full disk)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def test_setup_mends_weights_and_an_export_it_finds_cut_short(tmp_path, settings):
    """A review: the weights were copied in place (not whole) and an export cut short was newer than the
    weights, so every later `alpr setup` kept both, and every detector worker died at start on them."""
    models = tmp_path / "models"
    models.mkdir()
    torch_path = cut_short(bundled_weights_path(), models / TORCH_WEIGHTS_NAME, 0.6)
    onnx_path = cut_short(settings.model_dir / ONNX_WEIGHTS_NAME, models / ONNX_WEIGHTS_NAME, 0.5)
    assert not is_whole_checkpoint(torch_path) and not is_loadable_onnx(onnx_path)
    assert install_models(models) == (torch_path, onnx_path)
    assert torch_path.read_bytes() == bundled_weights_path().read_bytes() and is_loadable_onnx(onnx_path)
    assert sorted(path.name for path in models.iterdir()) == sorted([TORCH_WEIGHTS_NAME, ONNX_WEIGHTS_NAME])
    mtimes = (torch_path.stat().st_mtime_ns, onnx_path.stat().st_mtime_ns)
    install_models(models)  # whole: left as they are
    assert (torch_path.stat().st_mtime_ns, onnx_path.stat().st_mtime_ns) == mtimes


@pytest.mark.parametrize("backend", [OnnxBackend, TorchBackend])
def test_weights_that_cannot_be_loaded_stop_a_backend_with_one_line_naming_them(tmp_path, settings, backend):
    name = ONNX_WEIGHTS_NAME if backend is OnnxBackend else TORCH_WEIGHTS_NAME
    weights = cut_short(settings.model_dir / name, tmp_path / name, 0.5)
    with pytest.raises(ConfigError, match=r"cannot be loaded .*`alpr setup` installs the default weights") as raised:
        backend(weights, "cpu", 640, 1)
    assert str(weights) in str(raised.value) and "\n" not in str(raised.value)


def test_a_detector_worker_on_a_cut_export_says_so_and_exits(tmp_path, settings, redis_url, monkeypatch, capsys):
    """It died with onnxruntime's traceback (InvalidProtobuf), exit 1, restarted over and over by Compose."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(settings.model_dir / TORCH_WEIGHTS_NAME, models / TORCH_WEIGHTS_NAME)
    cut_short(settings.model_dir / ONNX_WEIGHTS_NAME, models / ONNX_WEIGHTS_NAME, 0.3)
    monkeypatch.setenv("ALPR_MODEL_DIR", str(models))
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url]) == 2
    error = capsys.readouterr().err
    assert "cannot be loaded" in error and "Traceback" not in error
