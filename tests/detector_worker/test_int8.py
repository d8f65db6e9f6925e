"""The int8 detector (`onnx-int8`): made by `alpr setup` from the ONNX export with the shipped ranges
(calibrated on the demo clip); its weights take 7 bits, it finds the plates the float model finds, and it
is chosen by the backend setting, on the CPU only."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from alpr.democlip import calibration_frames
from alpr.wiring import build_detector
from common.config import Settings
from common.errors import ConfigError
from detector_worker.backends import INT8_CONFIDENCE_SHARE, OnnxBackend, OnnxInt8Backend
from detector_worker.core import DetectorSettings, PlateDetector
from detector_worker.quantize import (
    INT8_RECIPE,
    RANGES_KEY,
    RANGES_NAME,
    RECIPE_KEY,
    SHIPPED_RANGES,
    ranges_text,
    read_ranges,
    recipe_of,
    weights_digest,
)
from detector_worker.weights import (
    INT8_WEIGHTS_NAME,
    ONNX_WEIGHTS_NAME,
    TORCH_WEIGHTS_NAME,
    install_int8,
    is_loadable_onnx,
)
from tests.helpers import clip_frames, demo_clip_plates_found, iou, scene_samples


@pytest.fixture(scope="session")
def int8_weights(settings: Settings) -> Path:
    """The int8 model in the model folder, as `alpr setup` makes it (about 20 s the first time)."""
    return install_int8(settings.model_dir, calibration_frames)


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    """calibration_frames() once for the module: each call draws, encodes and decodes the default clip (7 s
    and more; four calls took half of this module's time). The clip is drawn from a fixed seed: the same
    frames each call."""
    return calibration_frames()


def frames_of(frames: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
    """As calibration_frames, copies of `frames`."""
    return lambda: [frame.copy() for frame in frames]


@pytest.fixture(scope="session")
def int8_detector(settings: Settings, int8_weights: Path) -> PlateDetector:
    return build_detector(settings.model_copy(update={"detector_backend": "onnx-int8"}))


def int8_weight_tensors(path: Path) -> list[np.ndarray]:
    """The model's int8 initialisers of four dimensions: the quantised convolutions' weights."""
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer]
    return [w for w in weights if w.dtype == np.int8 and w.ndim == 4]


def test_the_int8_models_weights_take_7_bits(int8_weights):
    """As the plate recogniser's: AVX2 CPUs without VNNI sum pairs of uint8 x int8 products in int16
    (vpmaddubsw), where 255 x 127 x 2 saturates and 255 x 64 x 2 does not, so with 7-bit weights every
    x86 CPU computes the same integers."""
    convolutions = int8_weight_tensors(int8_weights)
    assert len(convolutions) == 57  # all 64 but the Detect head's last six and its box decoding's
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in convolutions) <= 64
    assert recipe_of(int8_weights) == INT8_RECIPE and int8_weights.name == INT8_WEIGHTS_NAME


def test_the_int8_detector_finds_the_plates_the_float_one_finds_in_real_photos(detector, int8_detector, datasets_dir):
    """Every box is blurred: a plate the float model finds and the int8 one misses would reach disk."""
    for region in ("us", "eu", "br"):
        samples = scene_samples(datasets_dir, region, 12)
        images = [cv2.imread(str(s.image)) for s in samples]
        for found, mine, sample in zip(detector.detect(images), int8_detector.detect(images), samples, strict=True):
            best = max((iou(box, sample.box_xyxy) for box, _ in found.boxes()), default=0.0)
            assert (max((iou(box, sample.box_xyxy) for box, _ in mine.boxes()), default=0.0) >= 0.3) == (best >= 0.3)
            for box, confidence in found.boxes():  # the sure boxes in the same places
                if confidence >= 0.25:
                    assert max(iou(box, other) for other, _ in mine.boxes()) >= 0.8, (sample.image.name, box)


def test_the_int8_detector_finds_the_demo_clip_plates(int8_detector, demo_clip):
    hits, frames = demo_clip_plates_found(int8_detector, demo_clip)
    assert hits >= 0.9 * frames, f"plates found in {hits} of {frames} frames"


def test_the_int8_detector_keeps_boxes_from_a_share_of_the_confidence_floor(int8_weights, demo_clip):
    """Its scores scatter about the float model's, so it keeps boxes a little under the floor."""
    path, truth = demo_clip
    frames = list(clip_frames(path, {b["frame_index"] for b in truth["boxes"][::20]}).values())
    plain = OnnxBackend(int8_weights, "cpu", 960, 1).infer(frames, 0.05 * INT8_CONFIDENCE_SHARE, 100)
    for (xyxy, scores), (expected, expected_scores) in zip(
        OnnxInt8Backend(int8_weights, "cpu", 960, 1).infer(frames, 0.05, 100), plain, strict=True
    ):
        assert np.array_equal(xyxy, expected) and np.array_equal(scores, expected_scores)


def test_the_backend_setting_chooses_the_int8_model_and_keeps_the_float_one(settings, int8_detector, tmp_path):
    assert isinstance(int8_detector.backend, OnnxInt8Backend)
    assert type(build_detector(settings).backend) is OnnxBackend  # the float model stays the default
    with pytest.raises(ConfigError, match=rf"{INT8_WEIGHTS_NAME} are missing; run `alpr setup` first"):
        PlateDetector(DetectorSettings(model_dir=tmp_path, backend="onnx-int8"))


def test_the_int8_detector_runs_on_the_cpu_only(settings, int8_weights):
    asked = settings.model_copy(update={"detector_backend": "onnx-int8", "detector_device": "cuda:0"})
    with pytest.raises(ConfigError, match=r"cuda:0 asked for, but the int8 model runs on the CPU only"):
        build_detector(asked)
    with pytest.raises(ConfigError, match="runs on the CPU, not cuda:0"):
        OnnxInt8Backend(int8_weights, "cuda:0", 960, 1)


def copied_export(settings: Settings, tmp_path: Path) -> Path:
    """A model folder holding the bundled weights and their ONNX export, as `alpr setup` leaves them."""
    models = tmp_path / "models"
    models.mkdir()
    for name in (TORCH_WEIGHTS_NAME, ONNX_WEIGHTS_NAME):
        shutil.copyfile(settings.model_dir / name, models / name)
    return models


def test_setup_makes_the_int8_model_again_when_cut_short_stale_or_of_another_recipe(
    settings, int8_weights, calibration, tmp_path
):
    models = copied_export(settings, tmp_path)
    made: list[int] = []

    def frames() -> list[np.ndarray]:
        made.append(1)
        return frames_of(calibration)()[5:7]

    def stamp() -> int:
        return int8_path.stat().st_ino

    int8_path = install_int8(models, frames)
    assert is_loadable_onnx(int8_path) and recipe_of(int8_path) == INT8_RECIPE
    assert made == [] and recipe_of(int8_path, RANGES_KEY) == "shipped"  # no calibration: the shipped ranges
    first = stamp()
    install_int8(models, frames)  # current: left as it is
    assert stamp() == first
    int8_path.write_bytes(int8_path.read_bytes()[:1000])  # cut short
    install_int8(models, frames)
    assert is_loadable_onnx(int8_path) and stamp() != first
    import onnx

    model = onnx.load(str(int8_path))
    next(p for p in model.metadata_props if p.key == RECIPE_KEY).value = "an older recipe"
    onnx.save(model, str(int8_path))
    install_int8(models, frames)
    assert recipe_of(int8_path) == INT8_RECIPE
    (models / ONNX_WEIGHTS_NAME).touch()  # a newer export
    second = stamp()
    install_int8(models, frames)
    assert stamp() != second and made == [] and read_ranges(models / RANGES_NAME) == read_ranges(SHIPPED_RANGES)
    install_int8(models, frames, calibrate=True)  # `alpr setup --calibrate`: this host's decoding of the clip
    assert made == [1] and recipe_of(int8_path, RANGES_KEY) == "calibrated"
    assert read_ranges(models / RANGES_NAME) != read_ranges(SHIPPED_RANGES)  # two frames, not the sixteen


def test_every_host_gets_the_same_int8_model_from_the_shipped_ranges(settings, calibration, tmp_path, monkeypatch):
    """The shipped ranges are what the recipe's calibration on the demo clip gives (this host's decoding of
    it), and the model made with them is the one that calibration makes: each host had calibrated on its own
    decoding, which a codec or a float kernel may change in the last bits. Ranges that do not name the
    export's tensors (other weights, another exporter) are not used: the clip is calibrated on instead."""
    shipped = read_ranges(SHIPPED_RANGES)
    assert shipped is not None and len(shipped) == 269
    models = copied_export(settings, tmp_path)
    calibrated = install_int8(models, frames_of(calibration), calibrate=True)
    ranges = read_ranges(models / RANGES_NAME)
    assert ranges is not None and sorted(ranges) == sorted(shipped)
    for name, (low, high) in shipped.items():  # bit for bit on this kind of host; a codec may move the last bits
        assert np.allclose(ranges[name], (low, high), rtol=1e-4, atol=1e-6), (name, ranges[name], (low, high))
    import onnx

    calibrated_graph = onnx.load(str(calibrated)).graph.SerializeToString()
    install_int8(models, frames_of(calibration))  # current: kept, calibrated
    assert recipe_of(calibrated, RANGES_KEY) == "calibrated"
    (models / ONNX_WEIGHTS_NAME).touch()
    made_from_shipped = install_int8(models, lambda: pytest.fail("calibrated where the shipped ranges fit"))
    assert recipe_of(made_from_shipped, RANGES_KEY) == "shipped"
    if ranges == shipped:
        assert onnx.load(str(made_from_shipped)).graph.SerializeToString() == calibrated_graph
    partial = tmp_path / "partial.json"  # a tensor left out
    partial.write_text(ranges_text(dict(list(shipped.items())[1:]), weights_digest(models / ONNX_WEIGHTS_NAME)))
    monkeypatch.setattr("detector_worker.quantize.SHIPPED_RANGES", partial)
    made: list[int] = []
    (models / ONNX_WEIGHTS_NAME).touch()
    install_int8(models, lambda: made.append(1) or frames_of(calibration)()[5:7])  # type: ignore[func-returns-value]
    assert made == [1] and recipe_of(made_from_shipped, RANGES_KEY) == "calibrated"


def test_other_weights_of_the_same_layers_are_calibrated_not_given_the_shipped_ranges(settings, calibration, tmp_path):
    """A diff review: the shipped ranges were used for any weights whose layers are named alike (a
    fine-tuned checkpoint, weights replaced by hand), one frame's scores then 0.73 off the float model's."""
    import onnx
    from onnx import numpy_helper

    models = copied_export(settings, tmp_path)
    export = models / ONNX_WEIGHTS_NAME
    assert weights_digest(export) == json.loads(SHIPPED_RANGES.read_text())["weights_sha256"]  # the bundled ones
    model = onnx.load(str(export))
    first = next(tensor for tensor in model.graph.initializer if tensor.name.startswith("model.0."))
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * 3, first.name))  # other weights
    onnx.save(model, str(export))
    made: list[int] = []
    int8_path = install_int8(models, lambda: made.append(1) or frames_of(calibration)()[5:7])  # type: ignore[func-returns-value]
    assert made == [1] and recipe_of(int8_path, RANGES_KEY) == "calibrated"
