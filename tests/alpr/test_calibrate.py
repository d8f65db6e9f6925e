"""`alpr calibrate` chooses the recogniser's format weight by exact reads (the fullest on a tie), fits
the confidence model on the reads at that weight, and writes both where the reader finds them."""

import json

import cv2
import numpy as np
import pytest

import alpr.calibrate as calibrate_module
from common.config import Settings
from ocr_worker.calibration import FEATURES, FORMAT_WEIGHTS, load_calibrations
from ocr_worker.core import PlateReader


@pytest.mark.parametrize(
    ("exact", "chosen"),
    [
        ({1.0: 679, 0.5: 680, 0.2: 685}, 0.2),
        ({1.0: 596, 0.5: 596, 0.2: 575}, 1.0),  # a tie keeps the fullest
        ({1.0: 10, 0.5: 12, 0.2: 12}, 0.5),
    ],
)
def test_the_weight_with_most_exact_reads_is_chosen(exact, chosen):
    assert calibrate_module.choose_format_weight(exact) == chosen


def test_calibrate_writes_the_chosen_weight_and_the_fit_at_it(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)

    def collect(roots, settings, weight):  # more exact reads at 0.5; confidence predicts exactness
        right = 140 if weight == 0.5 else 120
        y = np.array([1.0] * right + [0.0] * (200 - right))
        x = np.column_stack([y * 2 - 1 + rng.normal(0, 0.5, 200), np.zeros((200, len(FEATURES) - 1))])
        return x, y, ["us"] * 200

    monkeypatch.setattr(calibrate_module, "collect", collect)
    monkeypatch.setattr(calibrate_module, "dataset_folders", lambda root: [root])
    out = tmp_path / "calibration.json"
    out.write_text(json.dumps({"models": {"tesseract": {"weights": [1, 0, 0, 0, 0], "bias": 0.0}}}))
    entry = calibrate_module.calibrate([tmp_path], Settings.load({}), out)
    assert entry["format_weight"] == 0.5 and entry["exact_reads_by_format_weight"] == {"1": 120, "0.5": 140, "0.2": 120}
    assert entry["images"] == 200 and set(entry["exact_reads_by_format_weight"]) == {f"{w:g}" for w in FORMAT_WEIGHTS}
    fitted = load_calibrations(out)
    assert fitted["ppocr-plate"].format_weight == 0.5 and fitted["ppocr-plate"].weights[0] > 0
    assert fitted["tesseract"].format_weight == 1.0  # the other engines' fits are kept


def test_collect_gives_the_features_of_the_read_each_image_ends_with(datasets_dir, tmp_path, settings):
    """On real photos: one row per image with a read, for the read `alpr eval` picks among the boxes
    (its confidence is the row's first feature), labelled by whether that read is exact."""
    from alpr.evaluation import evaluate
    from alpr.wiring import build_detector, build_reader
    from tests.alpr.test_evaluation import copy_subset

    copy_subset(datasets_dir / "openalpr-endtoend" / "us", tmp_path / "sets" / "us", 8)
    x, y, sets = calibrate_module.collect([tmp_path / "sets"], settings, 0.2)
    outcomes: dict = {}
    evaluate(
        tmp_path / "sets", settings, build_detector,
        lambda s, region: build_reader(s, region, calibrated=False, format_weight=0.2), outcomes,
    )  # fmt: skip
    read = [o for o in outcomes["us"] if o.best is not None and o.best.candidates]
    assert x.shape == (len(read), len(FEATURES)) and sets == ["us"] * len(read) and len(read) >= 6
    assert list(y) == [float(o.correct) for o in read]
    confidences = [min(max(o.best.candidates[0].confidence, 1e-4), 1 - 1e-4) for o in read]
    assert np.allclose(x[:, 0], [np.log(p / (1 - p)) for p in confidences])


def test_collect_weighs_the_least_sure_character_of_the_read(datasets_dir, tmp_path, settings):
    """On real plate crops: the row's last feature is the least sure character of the top reading, as
    the reader's own steps give it (line found, recognised, ranked)."""
    from ocr_worker.core import OcrSettings
    from ocr_worker.formats import rank_candidates

    source = datasets_dir / "openalpr-plates"
    folder = tmp_path / "crops"
    folder.mkdir()
    rows = (source / "groundtruth.csv").read_text().splitlines()[:12]
    (folder / "groundtruth.csv").write_text("\n".join(rows) + "\n")
    names = [row.split(",")[0] for row in rows]
    for name in names:
        (folder / name).write_bytes((source / name).read_bytes())
    x, _, _ = calibrate_module.collect([folder], settings, 0.2)
    reader = PlateReader(OcrSettings(region=settings.ocr_region, calibrated=False, format_weight=0.2))
    lines = reader.locator.locate([cv2.imread(str(folder / name)) for name in names])
    choices = reader._ppocr.recognize_batch(lines)
    weakest = [rank_candidates(c, reader.formats, settings.ocr_max_candidates)[0].weakest_character for c in choices]
    clamped = np.clip(weakest, 1e-4, 1 - 1e-4)
    assert x.shape[0] == len(names) and np.allclose(x[:, -1], np.log(clamped / (1 - clamped)), atol=1e-6)
    assert min(weakest) < 0.95 < max(weakest)  # the crops differ in it: a real signal, not a constant
