"""`alpr train-ocr`'s parts: the converted model with its plate head starts where PP-OCRv6 stands, its
ONNX export reads exactly as the torch model does, through the engine that reads plates, and its int8
form (what ships) still reads, with weights that no x86 CPU's int8 arithmetic can saturate."""

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from alpr.folds import FOLDS, fold, held_out
from alpr.ocr_int8 import quantize
from alpr.train_crops import RealCrop
from alpr.train_ocr import (
    exact_by_subset,
    export,
    greedy_text,
    plate_model,
    to_batch,
    train,
)
from common.errors import InputError
from ocr_worker.ppocr_engine import PLATE_ALPHABET, PpocrEngine, bundled_model_path
from ocr_worker.synthetic import draw_plate
from ocr_worker.text_lines import PlateTextLocator
from tests.conftest import unavailable

try:
    import torch
except ImportError as error:  # torch comes with `make setup`: under ALPR_TESTS_REQUIRE_ALL its absence fails
    unavailable(f"torch is not installed: {error}")


def test_the_plate_head_keeps_pretrained_reading_and_the_export_matches(tmp_path):
    model = plate_model(tmp_path).eval()
    plates = PlateTextLocator().locate([draw_plate(t, "eu", random.Random(1)) for t in ("KPX4721", "RK605AB")])
    with torch.no_grad():
        logits = model(torch.from_numpy(to_batch(plates))).numpy()
    assert logits.shape[-1] == len(PLATE_ALPHABET) + 1
    assert [greedy_text(row) for row in logits] == ["KPX4721", "RK605AB"]  # read before any training
    full = PpocrEngine(bundled_model_path("v6"))  # the 18,710-class original reads them too
    assert ["".join(c[0][0] for c in choices) for choices in full.recognize_batch(plates)] == ["KPX4721", "RK605AB"]
    path = tmp_path / "plate.onnx"
    export(model, path)
    engine = PpocrEngine(path)
    probabilities = engine.session.run(None, {engine.input_name: to_batch(plates)})[0]
    assert np.abs(probabilities - torch.from_numpy(logits).softmax(-1).numpy()).max() < 1e-4
    assert ["".join(c[0][0] for c in choices) for choices in engine.recognize_batch(plates)] == ["KPX4721", "RK605AB"]
    assert engine.input_width == 160  # read at the width it was trained at, as the metadata says
    small = tmp_path / "plate_int8.onnx"
    quantize(path, small, [to_batch([plate]) for plate in plates * 4])
    int8 = PpocrEngine(small)
    assert small.stat().st_size < 0.5 * path.stat().st_size and int8.input_width == 160
    assert ["".join(c[0][0] for c in choices) for choices in int8.recognize_batch(plates)] == ["KPX4721", "RK605AB"]
    assert widest_int8_weight(small) <= 64
    assert "Gelu" not in {node.op_type for node in onnx.load(str(small)).graph.node}  # in uint8 (ocr_int8.py)


EXPORTED_AFTER_TORCHVISION = """
import sys
from pathlib import Path

import torchvision.ops  # what ultralytics (the detector) imports: torch.onnx.symbolic_helper, its compatibility copy

from alpr.train_ocr import export, plate_model

work = Path(sys.argv[1])
export(plate_model(work).eval(), work / "plate.onnx")
"""


def test_the_export_goes_through_in_a_process_that_imported_torchvision_first(tmp_path):
    """torchvision.ops, imported before onnx2torch, left onnx2torch reading the exporter's opset from a module
    without it: every export failed (AttributeError), as the test above did after the detector's tests in one
    pytest process. A process of its own: in this one, which imported first is already decided."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])}
    done = subprocess.run([sys.executable, "-c", EXPORTED_AFTER_TORCHVISION, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "plate.onnx").stat().st_size > 1_000_000


def widest_int8_weight(path: Path) -> int:
    """The largest |weight| among a model's int8 initialisers (the quantised convolutions)."""
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer]
    return max(int(np.abs(w.astype(np.int32)).max()) for w in weights if w.dtype == np.int8 and w.size > 1)


def test_the_shipped_model_reads_alike_on_every_x86_cpu():
    """AVX2 CPUs without VNNI sum pairs of uint8 x int8 products in int16 (vpmaddubsw): 255 x 127 x 2
    saturates, 255 x 64 x 2 does not. With 7-bit weights every CPU computes the same integers; the
    8-bit model shipped before read 3 US photos of 111 fewer on an AMD EPYC than its arithmetic gives."""
    assert widest_int8_weight(bundled_model_path("plate")) <= 64


def test_one_image_in_five_is_held_out_by_name():
    names = [f"car{i}.jpg" for i in range(1000)]
    share = sum(held_out(n) for n in names) / len(names)
    assert 0.15 < share < 0.25 and held_out("car7.jpg") == held_out("car7.jpg")


def test_the_folds_split_images_by_name_and_the_held_out_one_is_fold_zero():
    names = [f"car{i}.jpg" for i in range(1000)]
    counts = [sum(fold(n) == k for n in names) for k in range(FOLDS)]
    assert all(150 < c < 250 for c in counts) and all(held_out(n) == (fold(n) == 0) for n in names)


@pytest.mark.parametrize(
    ("folds", "keep", "message"),
    [(frozenset(), "last", "non-empty subset"), (frozenset({1, 5}), "last", "subset of 0-4"),
     (frozenset(range(FOLDS)), "best", "trains on")],
)  # fmt: skip
def test_training_refuses_folds_it_cannot_measure_or_choose_by(tmp_path, folds, keep, message):
    with pytest.raises((ValueError, InputError), match=message):
        train(tmp_path, tmp_path / "m.onnx", 1, 1, 0.5, keep, None, folds)


def test_exact_reads_are_counted_per_subset_and_over_all():
    crops = [RealCrop(Path(f"{i}.jpg"), plate, None, subset) for i, (plate, subset) in
             enumerate([("ABC123", "us"), ("XYZ9", "us"), ("RK605AB", "eu")])]  # fmt: skip
    assert exact_by_subset(crops, ["ABC123", "XYZ8", "RK605AB"]) == {"eu": 1.0, "us": 0.5, "all": 0.6667}


def test_training_images_are_read_within_the_pixel_limit_and_those_left_out_are_counted_and_named(tmp_path, caplog):
    """cv2.imread took a 2.6 MB PNG of 30000x30000 to 5.3 GB and dropped what it could not decode unsaid
    (a review): the images are read as ingest reads frames, and those left out are said."""
    import logging

    import cv2

    from alpr.train_crops import read_crop_images
    from common import defaults
    from tests.crafted_images import png_header_only

    (tmp_path / "a_bomb.png").write_bytes(png_header_only(10_000, 5_000))  # refused from its header
    for i in range(6):
        (tmp_path / f"b_{i}.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(tmp_path / "c_good.png"), np.full((40, 120, 3), 90, np.uint8))
    crops = [RealCrop(path, "ABC123", None, "us") for path in sorted(tmp_path.iterdir())]
    with caplog.at_level(logging.WARNING, logger="alpr.train_crops"):
        images, kept = read_crop_images([*crops, crops[-1]])
    assert list(images) == [tmp_path / "c_good.png"] and kept == [crops[-1], crops[-1]]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    limit = defaults.MAX_FRAME_PIXELS
    assert warning.startswith(f"7 images of the training set could not be read, their crops left out: "
                              f"{tmp_path / 'a_bomb.png'} (10000x5000 pixels, more than the limit of {limit}); "
                              f"{tmp_path / 'b_0.jpg'} (undecodable image); "), warning  # fmt: skip
    assert "b_3.jpg" in warning and "b_4.jpg" not in warning and warning.endswith("; and 2 more"), warning


def test_real_crops_are_degraded_as_far_and_poor_cameras_do_reproducibly():
    from alpr.train_crops import degraded

    crop = draw_plate("KPX4721", "us", random.Random(0))
    outs = [degraded(crop.copy(), random.Random(seed)) for seed in range(40)]
    assert all(o.shape == crop.shape and o.dtype == np.uint8 for o in outs)
    changed = [not np.array_equal(o, crop) for o in outs]
    assert 10 <= sum(changed) < 40  # about half the crops are degraded, some are kept as they are
    again = [degraded(crop.copy(), random.Random(seed)) for seed in range(40)]
    assert all(np.array_equal(a, b) for a, b in zip(outs, again, strict=True))  # a seed, one training run


def test_the_command_trains_on_four_fifths_unless_told_which_folds():
    from alpr.arguments import build_parser

    assert build_parser().parse_args(["train-ocr"]).folds == frozenset({1, 2, 3, 4})
    default = build_parser().parse_args(["train-ocr"])
    assert default.device == "cpu" and default.workers == 0
    assert build_parser().parse_args(["train-ocr", "--workers", "64"]).workers == 64
    bad_ones = (["--workers", "-1"], ["--workers", "100000"], ["--device", "gpu"], ["--device", "cuda:x"])
    for bad in (*bad_ones, ["--device", "cpu:0"]):  # 100,000 processes forked, each holding the data set
        with pytest.raises(SystemExit):  # a negative count or an unknown device: a traceback after the conversion
            build_parser().parse_args(["train-ocr", *bad])
    assert build_parser().parse_args(["train-ocr", "--folds", "2,3,4"]).folds == frozenset({2, 3, 4})
    for bad in ("1,9", "a", "", "1,-1", "1,,2"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train-ocr", "--folds", bad])


def test_batches_prepared_by_worker_processes_are_the_ones_drawn_here(tmp_path):
    """`--workers`: batch k of an epoch comes from its own seed, so the worker processes of a DataLoader
    make the very batches this process would, and another epoch (run) makes others."""
    import cv2

    from alpr.train_ocr import EpochBatches, epoch_batches

    path = tmp_path / "plate.png"
    items = [RealCrop(path, "KPX4721", None, "crops"), None, None] * 22  # 66 crops: three batches
    images = {path: draw_plate("KPX4721", "us", random.Random(0))}
    here = [EpochBatches(items, images, "1:1")[k] for k in range(3)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as train() does before forking workers: OpenCV's pool does not survive a fork
    try:
        pooled = list(epoch_batches(items, images, "1:1", 2, random.Random(0), PlateTextLocator()))
    finally:
        cv2.setNumThreads(threads)
    assert [texts for _, texts in pooled] == [texts for _, texts in here] and len(pooled) == 3
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(pooled, here, strict=True))
    assert "KPX4721" in here[0][1] and len(set(here[0][1])) > 1  # real and synthetic plates mixed
    other = EpochBatches(items, images, "1:2")[0]
    assert other[1] != here[0][1] or not np.array_equal(other[0], here[0][0])


def test_training_on_a_cuda_device_it_lacks_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(InputError, match="--device cuda:0: torch sees no CUDA device.s. here"):
        train(tmp_path, tmp_path / "m.onnx", 1, 1, 0.5, device="cuda:0")


def test_without_workers_the_batches_are_drawn_as_the_shipped_model_was_trained():
    """`--workers 0` (the default) keeps the one random stream the shipped model was trained with: the
    texts drawn and the generator's state after an epoch, recorded from the code it was trained by
    (16cf321), must not move, or `alpr train-ocr` no longer rebuilds the shipped model."""
    from alpr.train_ocr import epoch_batches

    path = Path("plate.png")
    items = [RealCrop(path, "KPX4721", None, "crops"), None, RealCrop(path, "KPX4721", (2, 2, 150, 60), "us")] * 12
    rng = random.Random(1)
    images = {path: draw_plate("KPX4721", "us", random.Random(0))}
    batches = list(epoch_batches(items, images, "1:1", 0, rng, PlateTextLocator()))
    drawn = [t for _, texts in batches for t in texts if t != "KPX4721"]
    assert drawn == ["PAM6907", "0499962", "OWQVN", "YRH1X01", "AA495OM", "YKT8324", "TCD9Q96", "RJV2185", "90L4ZW",
                     "WGW4113", "TW88BLR", "JXF3568"]  # fmt: skip
    assert [len(texts) for _, texts in batches] == [32, 4] and rng.random() == 0.21738072963982036


@pytest.mark.parametrize(
    "flags, said",
    [(["--epochs", "0"], "--epochs: must be 1 or more"), (["--epochs", "-1"], "--epochs: must be 1 or more"),
     (["--synthetic-share", "1"], "--synthetic-share: must be at least 0 and below 1"),
     (["--synthetic-share", "nan"], "--synthetic-share: must be at least 0"),
     (["--synthetic-share", "2"], "--synthetic-share: must be"), (["--synthetic-share", "-1"], "--synthetic-share"),
     (["--out", "{tmp}"], "--out: .* is a folder"),
     (["--float-out", "{tmp}/missing/m.onnx"], "--float-out: no folder")],
)  # fmt: skip
def test_numbers_and_outputs_train_ocr_cannot_use_are_refused_before_anything_loads(flags, said, tmp_path, capsys):
    """--epochs 0 failed in the LR scheduler after 59 s of loading, --synthetic-share 1 divided by zero, and
    an --out folder failed once the training was done (a review): now an argparse error, exit 2."""
    from alpr.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["train-ocr", *(flag.format(tmp=tmp_path) for flag in flags)])
    assert stopped.value.code == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert re.search(said, line) and "Traceback" not in line


@pytest.mark.parametrize(
    "epochs, share, out, message",
    [(0, 0.5, "m.onnx", "epochs must be 1 or more"), (1, 1.0, "m.onnx", "synthetic_share must be"),
     (1, float("nan"), "m.onnx", "synthetic_share must be"), (1, 0.5, ".", "a folder"),
     (1, 0.5, "missing/m.onnx", "does not exist")],
)  # fmt: skip
def test_training_refuses_numbers_and_outputs_it_cannot_use_before_loading(tmp_path, epochs, share, out, message):
    with pytest.raises((ValueError, InputError), match=message):
        train(tmp_path, tmp_path / out, epochs, 1, share)
