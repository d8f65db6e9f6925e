"""`alpr calibrate` chooses the recogniser's format weight by exact reads (the fullest on a tie), fits
the confidence model on the reads at that weight, and writes both where the reader finds them."""

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import alpr.calibrate as calibrate_module
from alpr.arguments import build_parser
from common.config import Settings
from common.errors import InputError
from ocr_worker.calibration import FEATURES, FORMAT_WEIGHTS, load_calibrations
from ocr_worker.core import PlateReader
from ocr_worker.ppocr_engine import bundled_model_path


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

    def collect(
        roots, settings, weight, sources, detector, scales
    ):  # more exact reads at 0.5; confidence predicts exactness
        assert not isinstance(detector, calibrate_module.PlateDetector)  # a factory: nothing built for crops
        right = 140 if weight == 0.5 else 120
        y = np.array([1.0] * right + [0.0] * (200 - right))
        x = np.column_stack([y * 2 - 1 + rng.normal(0, 0.5, 200), np.zeros((200, len(FEATURES) - 1))])
        return calibrate_module.Reads(x, y, ["us"] * 200, [f"{i}.jpg" for i in range(200)])

    monkeypatch.setattr(calibrate_module, "collect", collect)
    monkeypatch.setattr(calibrate_module, "dataset_folders", lambda root: [root])
    out = tmp_path / "calibration.json"
    out.write_text(json.dumps({"models": {"tesseract": {"weights": [1, 0, 0, 0, 0], "bias": 0.0}}}))
    model_file = tmp_path / "plate_folds234.onnx"
    model_file.write_bytes(bundled_model_path("v4").read_bytes())  # a recogniser ONNX Runtime loads
    sources = [calibrate_module.UnseenReads.parse(f"{model_file}:0,1"), calibrate_module.UnseenReads.parse("default:0")]
    entry = calibrate_module.calibrate([tmp_path], Settings.load({}), out, sources)
    shipped = hashlib.sha256(bundled_model_path("plate").read_bytes()).hexdigest()
    assert entry["reads"] == [
        {"model": model_file.name, "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(), "folds": [0, 1]},
        {"model": "default (plate_rec.onnx)", "sha256": shipped, "folds": [0]},
    ]
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
    x, y, sets, _ = calibrate_module.collect([tmp_path / "sets"], settings, 0.2)
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


def test_collect_also_reads_each_image_shrunk_and_names_those_reads_by_their_scale(datasets_dir, tmp_path, settings):
    """`--scales`: each image is read again shrunk (as `alpr eval --scale` does), in a set of its own, so
    the fit sees smaller plates; its crops fall short of the recogniser's height, the originals do not."""
    from tests.alpr.test_evaluation import copy_subset

    copy_subset(datasets_dir / "openalpr-endtoend" / "us", tmp_path / "sets" / "us", 6)
    reads = calibrate_module.collect([tmp_path / "sets"], settings, 0.2, scales=(1.0, 0.3))
    full = calibrate_module.at_full_size(reads)
    assert {s for s, f in zip(reads.sets, full, strict=True) if not f} == {"us@0.3"} and full.sum() >= 5
    assert sorted(reads.images) == sorted(2 * [n for n, f in zip(reads.images, full, strict=True) if f])
    height = reads.x[:, FEATURES.index("log_short_height")]
    assert height[~full].mean() < height[full].mean() <= 0 and height[~full].max() < 0
    assert reads.y[~full].sum() <= reads.y[full].sum()


@pytest.mark.parametrize("text", ["0.5", "1,0", "1,2", "1,x"])
def test_the_scales_to_calibrate_at_include_full_size_and_lie_in_zero_to_one(text, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["calibrate", "sets", "--scales", text])
    assert "--scales" in capsys.readouterr().err
    assert build_parser().parse_args(["calibrate", "sets", "--scales", "0.5,1,0.5"]).scales == (1.0, 0.5)


def test_a_plate_the_frame_cuts_at_its_side_is_fitted_on_the_recognisers_own_confidence(
    datasets_dir, tmp_path, settings
):
    """The side-edge cap bounds a read's confidence after the fit, so calibrating reads such a plate
    uncapped (and finds its features: the capped candidates would be other objects)."""
    label = sorted((datasets_dir / "openalpr-endtoend" / "us").glob("*.txt"))[0]
    name, x, y, w, h, plate = label.read_text().split()[:6]
    image = cv2.imread(str(label.parent / name))
    folder = tmp_path / "sets" / "us"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "cut.png"), image[:, : int(x) + int(w) * 3 // 4])
    (folder / "cut.txt").write_text("\t".join(("cut.png", x, y, w, h, plate)) + "\n")
    collected = calibrate_module.collect([tmp_path / "sets"], settings, 0.2)
    assert collected.x.shape == (1, len(FEATURES))


def test_the_format_weights_passes_share_one_detection_of_each_image(datasets_dir, tmp_path, settings):
    """Calibrating reads every image once per format weight and source: the detector, which dominated
    the time, now sees each image once, and its answers are the same."""
    from alpr.wiring import build_detector
    from tests.alpr.test_evaluation import copy_subset

    copy_subset(datasets_dir / "openalpr-endtoend" / "us", tmp_path / "sets" / "us", 5)
    factory = calibrate_module.remembering_detector()
    first = calibrate_module.collect([tmp_path / "sets"], settings, 1.0, detector=factory)
    detector = factory(settings)
    assert isinstance(detector, calibrate_module.RememberingDetector) and len(detector.seen) == 5
    again = calibrate_module.collect([tmp_path / "sets"], settings, 1.0, detector=factory)
    fresh = calibrate_module.collect([tmp_path / "sets"], settings, 1.0, detector=build_detector)
    assert len(detector.seen) == 5 and np.array_equal(first.x, again.x) and np.array_equal(first.x, fresh.x)


def test_collect_weighs_the_least_sure_character_of_the_read(datasets_dir, tmp_path, settings):
    """On real plate crops: the row's logit_weakest_character is the least sure character of the top reading, and
    its look_alike_margin the reading's, as the reader's own steps give them (line found, recognised, ranked)."""
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
    x, _, _, _ = calibrate_module.collect([folder], settings, 0.2)
    reader = PlateReader(OcrSettings(region=settings.ocr_region, calibrated=False, format_weight=0.2))
    lines = reader.locator.locate([cv2.imread(str(folder / name)) for name in names])
    choices = reader.engine.recognize_batch(lines)
    tops = [rank_candidates(c, reader.formats, settings.ocr_max_candidates)[0] for c in choices]
    weakest = [top.weakest_character for top in tops]
    clamped = np.clip(weakest, 1e-4, 1 - 1e-4)
    weakest_column = x[:, FEATURES.index("logit_weakest_character")]
    assert x.shape[0] == len(names) and np.allclose(weakest_column, np.log(clamped / (1 - clamped)), atol=1e-6)
    assert min(weakest) < 0.95 < max(weakest)  # the crops differ in it: a real signal, not a constant
    look_alike_column = x[:, FEATURES.index("look_alike_margin")]  # and so the margin over a look-alike
    assert np.allclose(look_alike_column, [top.look_alike_margin for top in tops], atol=1e-9)


@pytest.mark.parametrize(
    ("text", "message"),
    [("0,1", "FILE:FOLDS"), ("default:5", "numbers 0-4"), ("default:", "numbers 0-4"),
     ("/no/such.onnx:0", "no recogniser")],
)  # fmt: skip
def test_unseen_reads_are_a_recogniser_file_and_its_folds(text, message):
    with pytest.raises(ValueError, match=message):
        calibrate_module.UnseenReads.parse(text)


def test_unseen_reads_take_each_fold_once_and_read_with_the_given_recogniser(datasets_dir, tmp_path, settings):
    """On real photos: reads restricted to folds partition the images' rows, and a source with a
    recogniser file reads with that file (here PP-OCRv6 small's, where the default is the plate model)."""
    from alpr.folds import FOLDS
    from ocr_worker.ppocr_engine import bundled_model_path
    from tests.alpr.test_evaluation import copy_subset

    copy_subset(datasets_dir / "openalpr-endtoend" / "us", tmp_path / "sets" / "us", 10)
    roots = [tmp_path / "sets"]
    every, labels, _, _ = calibrate_module.collect(roots, settings, 0.2)
    by_fold = [calibrate_module.UnseenReads(None, frozenset({k})) for k in range(FOLDS)]
    parts, part_labels, _, _ = calibrate_module.collect(roots, settings, 0.2, by_fold)
    assert sorted(map(tuple, parts.round(9))) == sorted(map(tuple, every.round(9))) and len(part_labels) == len(labels)
    some = [calibrate_module.UnseenReads(None, frozenset({0, 1}))]
    assert 0 < len(calibrate_module.collect(roots, settings, 0.2, some)[1]) < len(labels)
    v6 = calibrate_module.UnseenReads(bundled_model_path("v6"), frozenset(range(FOLDS)))
    other, _, _, _ = calibrate_module.collect(roots, settings, 0.2, [v6])
    assert other.shape[1] == every.shape[1] and not np.allclose(other[: len(every)], every[: len(other)])


def test_cross_validation_keeps_the_reads_of_one_image_in_one_fold():
    """Two recognisers' reads of one image: scored by a model fitted without either, never with its twin."""
    rng = np.random.default_rng(1)
    images = [f"car{i}.jpg" for i in range(60)] * 2  # each image read twice
    y = np.array([1.0, 0.0] * 30 * 2)
    x = np.column_stack([y * 2 - 1 + rng.normal(0, 1.0, 120), np.zeros((120, len(FEATURES) - 1))])
    by_image = calibrate_module.cross_validated_scores(x, y, images)
    from alpr.folds import fold
    from ocr_worker.calibration import Calibration

    k = fold(images[0])
    without = Calibration.fit(x[[fold(n) != k for n in images]], y[[fold(n) != k for n in images]])
    assert by_image[0] == pytest.approx(without.probability(x[0]))
    assert by_image[60] == pytest.approx(without.probability(x[60]))  # its twin, the same model
    by_position = calibrate_module.cross_validated_scores(x, y)
    assert not np.allclose(by_position, by_image)


@pytest.mark.parametrize(("extra", "noted"), [([], True), (["--unseen-reads", "default:0"], False)])
def test_fitting_the_plate_recogniser_on_every_image_is_noted(tmp_path, monkeypatch, capsys, extra, noted):
    """The plate recogniser trained on most of the benchmark: a fit on all of it is overconfident."""
    from alpr.cli import main

    sources_seen = []

    def fit(roots, settings, out, sources, scales):
        sources_seen.append(sources)
        return {"images": 1, "weights": [0.0] * len(FEATURES), "bias": 0.0, "format_weight": 0.2,
                "exact_reads_by_format_weight": {}, "cross_validation": {}}  # fmt: skip

    monkeypatch.setattr(calibrate_module, "calibrate", fit)
    assert main(["calibrate", str(tmp_path), "--out", str(tmp_path / "c.json"), *extra]) == 0
    assert ("--unseen-reads" in capsys.readouterr().err) == noted
    assert (sources_seen[0] is calibrate_module.ALL_IMAGES) == noted


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"notes", "(JSONDecodeError)"), (b"[1, 2]", "(a JSON object with its models)"),
     (b'{"a": 1}', "(a JSON object with its models)"), (b"\xff\xfe", "(UnicodeDecodeError)")],
)  # fmt: skip
def test_an_out_file_that_is_no_calibration_is_refused_before_the_fit(tmp_path, content, problem):
    """It was refused after the minutes of the fit, with a traceback (JSONDecodeError, TypeError, ...)."""
    from common.errors import ConfigError

    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(f"--out {out}: it is not a calibration file {problem}")):
        calibrate_module.calibration_file(out)
    (tmp_path / "link.json").symlink_to(out)
    with pytest.raises(ConfigError, match="symbolic link"):
        calibrate_module.calibration_file(tmp_path / "link.json")
    assert calibrate_module.calibration_file(tmp_path / "new.json") == {"models": {}}
    assert out.read_bytes() == content


def test_a_fit_on_reads_all_right_or_too_few_is_refused_before_the_file_is_touched(tmp_path, monkeypatch):
    """Every read right fitted weights 0 and bias 25 (every read sure: written over the shipped file by
    default); no read at all ended in numpy's traceback. A recogniser file ONNX Runtime cannot load
    failed with its traceback after the reads."""
    out = tmp_path / "calibration.json"
    out.write_text('{"models": {}}\n')
    for right, total in ((30, 30), (0, 0), (5, 10)):

        def collect(roots, settings, weight, sources, detector, scales, right=right, total=total):  # type: ignore[no-untyped-def]
            y = np.array([1.0] * right + [0.0] * (total - right))
            return calibrate_module.Reads(np.zeros((total, len(FEATURES))), y, ["us"] * total, ["a.jpg"] * total)

        monkeypatch.setattr(calibrate_module, "collect", collect)
        monkeypatch.setattr(calibrate_module, "dataset_folders", lambda root: [root])
        with pytest.raises(InputError, match=f"{total} reads, {right} of them right: a fit needs at least 20"):
            calibrate_module.calibrate([tmp_path], Settings.load({}), out)
        assert out.read_text() == '{"models": {}}\n'
    notonnx = tmp_path / "model.onnx"
    notonnx.write_bytes(b"not a model")
    with pytest.raises(InputError, match="model.onnx: not a recogniser ONNX Runtime loads"):
        calibrate_module.calibrate(
            [tmp_path], Settings.load({}), out, [calibrate_module.UnseenReads(notonnx, frozenset({0}))]
        )


def test_a_calibration_file_is_written_whole_or_not_at_all(tmp_path):
    """A write cut short (a full disk; here a file-size limit) left the calibration file truncated: no
    JSON, and every reader loading it failed. Now it is as it was, and no partial file stays beside it."""
    import subprocess
    import sys

    out = tmp_path / "calibration.json"
    out.write_text('{"models": {}}\n')
    out.chmod(0o644)
    script = (
        "import resource, signal, sys; from pathlib import Path; from alpr.calibrate import write_whole;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024));"
        f"write_whole(Path({str(out)!r}), 'x' * 5000)"
    )
    failed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert failed.returncode != 0 and "cannot write the calibration file" in failed.stderr
    assert out.read_text() == '{"models": {}}\n' and [p.name for p in tmp_path.iterdir()] == ["calibration.json"]
    calibrate_module.write_whole(out, '{"models": {"x": {}}}\n')
    assert json.loads(out.read_text()) == {"models": {"x": {}}} and out.stat().st_mode & 0o777 == 0o644
