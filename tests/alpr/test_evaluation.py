"""`alpr eval` on real photographs: a few of each set, through the command, with --json."""

import csv
import json
import logging
import re

import cv2
import numpy as np
import pytest

from alpr.cli import main
from common.errors import InputError
from ocr_worker.core import OcrSettings, PlateReader

KEYS = {
    "n",
    "detection_recall_iou50",
    "detection_recall_iou30",
    "exact_top1",
    "exact_topn",
    "wrong_above_threshold",
    "coverage",
    "ms_per_image",
    "ms_per_stage",
}
SUBSET_KEYS = KEYS | {"wrong_among_accepted", "causes", "reliability"}


def copy_subset(src, dst, count):
    dst.mkdir(parents=True)
    for label in sorted(src.glob("*.txt"))[:count]:
        (dst / label.name).write_bytes(label.read_bytes())
        image = label.read_text().split("\t")[0]
        (dst / image).write_bytes((src / image).read_bytes())


def test_eval_scenes_per_region(datasets_dir, tmp_path, settings, capsys):
    for region in ("us", "eu", "br"):
        copy_subset(datasets_dir / "openalpr-endtoend" / region, tmp_path / "sets" / region, 10)
    errors = tmp_path / "errors.csv"
    args = ["eval", str(tmp_path / "sets"), "--json", str(tmp_path / "m.json"), "--errors", str(errors)]
    assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) >= KEYS | {"wrong_among_accepted"} and metrics["n"] == 30
    assert set(metrics["subsets"]) == {"us", "eu", "br"}
    with errors.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and {r["set"] for r in rows} == {"us", "eu", "br"}
    for region, floor in (("us", 0.3), ("eu", 0.5), ("br", 0.6)):
        subset = metrics["subsets"][region]
        assert set(subset) >= SUBSET_KEYS and subset["region"] == region
        mine = [r for r in rows if r["set"] == region]
        right = sum(r["cause"] == "right" for r in mine)
        assert right == round(subset["exact_top1"] * 10) and all(r["cause"] != "right" or r["truth"] == r["best_read"]
                                                                 for r in mine)  # fmt: skip
        assert sum(subset["causes"].values()) == 10 and sum(b["reads"] for b in subset["reliability"]) <= 10
        accepted = [r for r in mine if r["confidence"] and float(r["confidence"]) >= settings.ocr_min_confidence]
        assert subset["coverage"] == len(accepted) / 10
        assert subset["wrong_above_threshold"] == sum(r["cause"] != "right" for r in accepted) / 10
        assert subset["detection_recall_iou30"] >= 0.9
        assert subset["exact_top1"] >= floor, (region, subset)
        within = sum(r["cause"] == "right within top-N" for r in mine)  # read, but not as the best
        assert round(subset["exact_topn"] * 10) == right + within and subset["causes"].get("right", 0) == right
    table = capsys.readouterr().out
    assert "top1" in table and "br" in table and "is read with" not in table


def eval_crops(folder, tmp_path, settings, rows, name):
    """`alpr eval --engine tesseract` on `folder` with `rows` as its groundtruth.csv: metrics and errors."""
    with (folder / "groundtruth.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    out, errors = tmp_path / f"{name}.json", tmp_path / f"{name}.csv"
    args = ["eval", str(folder), "--engine", "tesseract", "--json", str(out), "--errors", str(errors)]
    assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
    with errors.open() as handle:
        return json.loads(out.read_text()), list(csv.DictReader(handle))


def test_eval_crops_gives_exact_figures_and_a_wrong_truth_lowers_them(datasets_dir, tmp_path, settings, capsys):
    """Twenty real crops: exact_top1 and exact_topn are what the reader itself reads, and ground truth
    made wrong for some of the crops read right lowers them by exactly that many (a positive control)."""
    src = datasets_dir / "openalpr-plates"
    dst = tmp_path / "crops"
    dst.mkdir()
    with (src / "groundtruth.csv").open() as handle:
        rows = list(csv.reader(handle))[:20]
    for row in rows:
        (dst / row[0]).write_bytes((src / row[0]).read_bytes())
    reader = PlateReader(OcrSettings(engine="tesseract", region=settings.ocr_region))
    reads = {row[0]: [c.text for c in reader.read(cv2.imread(str(dst / row[0])))] for row in rows}
    right = [row for row in rows if reads[row[0]][:1] == [row[2].strip().upper()]]
    in_top_n = [row for row in rows if row[2].strip().upper() in reads[row[0]]]
    assert len(right) >= 2, reads  # Tesseract reads some of these crops: the control below needs them

    metrics, errors = eval_crops(dst, tmp_path, settings, rows, "true")
    assert metrics["engine"] == "tesseract" and metrics["n"] == 20
    assert (tmp_path / "true.csv").stat().st_mode & 0o777 == 0o600  # plates, as an export's: its owner's only
    assert metrics["subsets"]["crops"]["region"] == "us"  # no region in its name: its truth names US states
    assert "else us's where its groundtruth.csv names US states" in capsys.readouterr().out
    assert metrics["detection_recall_iou50"] is None
    assert (metrics["exact_top1"], metrics["exact_topn"]) == (len(right) / 20, len(in_top_n) / 20)
    assert {r["image"] for r in errors if r["cause"] == "right"} == {row[0] for row in right}

    wrong = "QQQ9999"  # no reading of these crops
    assert all(wrong not in texts for texts in reads.values())
    falsified = {row[0] for row in right[: (len(right) + 1) // 2]}
    lies = [[name, region, wrong if name in falsified else plate] for name, region, plate in rows]
    metrics, errors = eval_crops(dst, tmp_path, settings, lies, "lies")
    assert metrics["exact_top1"] == (len(right) - len(falsified)) / 20
    assert metrics["exact_topn"] == (len(in_top_n) - len(falsified)) / 20
    assert {r["image"] for r in errors if r["cause"] == "right"} == {row[0] for row in right} - falsified
    assert {r["image"] for r in errors if r["truth"] == wrong} == falsified


def test_a_photo_is_judged_by_the_read_at_its_labelled_plate(datasets_dir, tmp_path, settings):
    # Each photo shows a second car's plate, which the reader reads surer than the labelled one
    # (CWN2245 behind DD4C591, 6MTP929 beside 6TIX874): the labelled plate's read is what is judged.
    src, folder = datasets_dir / "openalpr-endtoend" / "us", tmp_path / "us"
    folder.mkdir()
    for stem in ("wts-lg-000138", "wts-lg-000148"):
        for suffix in (".txt", ".jpg"):
            (folder / f"{stem}{suffix}").write_bytes((src / f"{stem}{suffix}").read_bytes())
    errors = tmp_path / "errors.csv"
    args = ["eval", str(folder), "--json", str(tmp_path / "m.json"), "--errors", str(errors)]
    assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
    with errors.open() as handle:
        assert [(r["truth"], r["best_read"]) for r in csv.DictReader(handle)] == [
            ("DD4C591", "DD4C591"),
            ("6TIX874", "6TIX874"),
        ]
    assert json.loads((tmp_path / "m.json").read_text())["exact_top1"] == 1.0


def test_eval_can_hold_to_the_fifth_the_plate_recogniser_never_trained_on(datasets_dir, tmp_path, settings):
    from alpr.folds import fold

    copy_subset(datasets_dir / "openalpr-endtoend" / "us", tmp_path / "sets" / "us", 40)
    errors = tmp_path / "errors.csv"
    args = ["eval", str(tmp_path / "sets"), "--folds", "0", "--errors", str(errors)]
    assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
    with errors.open() as handle:
        images = [row["image"] for row in csv.DictReader(handle)]
    labels = sorted((tmp_path / "sets" / "us").glob("*.txt"))
    expected = [p.read_text().split("\t")[0] for p in labels if fold(p.read_text().split("\t")[0]) == 0]
    assert sorted(images) == sorted(expected) and 0 < len(images) < 40


def test_eval_reads_the_photos_as_a_camera_of_less_resolution_would(datasets_dir, tmp_path, settings):
    # --scale shrinks each photo and its labelled box alike: the plates are still found where the labels
    # say (a box left at full scale would match none), and fewer are read as they shrink.
    copy_subset(datasets_dir / "openalpr-endtoend" / "us", tmp_path / "sets" / "us", 10)
    metrics = {}
    for scale in ("1", "0.5", "0.2"):
        out = tmp_path / f"m{scale}.json"
        args = ["eval", str(tmp_path / "sets"), "--scale", scale, "--json", str(out)]
        assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
        metrics[scale] = json.loads(out.read_text())["subsets"]["us"]
    assert [m["scale"] for m in metrics.values()] == [1.0, 0.5, 0.2]
    assert metrics["0.5"]["detection_recall_iou30"] >= 0.9
    assert metrics["0.2"]["exact_top1"] < metrics["1"]["exact_top1"]


def test_eval_refuses_a_scale_that_no_camera_of_less_resolution_has(capsys):
    import pytest

    for bad in ("0", "-0.5", "1.5", "nan", "half"):
        with pytest.raises(SystemExit):
            main(["eval", "anywhere", "--scale", bad])
        assert "--scale" in capsys.readouterr().err
    from alpr.arguments import build_parser

    assert build_parser().parse_args(["eval", "anywhere", "--scale", "0.5"]).scale == 0.5


def test_the_errors_file_is_not_written_through_a_link(datasets_dir, tmp_path, settings, capsys):
    """`--errors` names a file of plates: a link planted at its name is refused, not written through."""
    folder = tmp_path / "crops"
    folder.mkdir()
    src = datasets_dir / "openalpr-plates"
    with (src / "groundtruth.csv").open() as handle:
        row = next(csv.reader(handle))
    (folder / row[0]).write_bytes((src / row[0]).read_bytes())
    (folder / "groundtruth.csv").write_text(",".join(row) + "\n")
    target, link = tmp_path / "elsewhere.csv", tmp_path / "errors.csv"
    target.write_text("")
    link.symlink_to(target)
    args = ["eval", str(folder), "--engine", "tesseract", "--errors", str(link), "--model-dir", str(settings.model_dir)]
    assert main(args) == 2
    assert "is a symbolic link" in capsys.readouterr().err and target.read_text() == ""


def test_a_label_beside_its_image_that_cannot_be_read_is_an_error_and_unlabelled_images_are_named(tmp_path, caplog):
    """A NAME.txt beside NAME.png that was unreadable or garbled was taken for notes and passed over with its
    image, unsaid (a review): a .txt of an image's stem is its label. Images no label names are said."""
    from alpr.ground_truth import load_samples

    folder = tmp_path / "us"
    folder.mkdir()
    for name in ("car.png", "van.JPG", "bus.jpg"):
        cv2.imwrite(str(folder / name), np.zeros((40, 80, 3), np.uint8))
    (folder / "car.txt").write_text("car.png\t1\t2\t30\t10\tABC123\n")
    (folder / "van.txt").write_bytes(b"\xff\xfe\x00garbled\x00\n")
    with pytest.raises(InputError, match="van.txt: ground truth must be UTF-8"):
        load_samples(folder)
    (folder / "van.txt").unlink()
    (folder / "van.txt").mkdir()  # unreadable (as root, a mode of 000 reads)
    with pytest.raises(InputError, match="van.txt: cannot read this label"):
        load_samples(folder)
    (folder / "van.txt").rmdir()
    (folder / "van.txt").write_text("not a label at all\n")
    with pytest.raises(InputError, match="van.txt:1: expected file<TAB>x"):
        load_samples(folder)
    (folder / "van.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="alpr.ground_truth"):
        assert [s.image.name for s in load_samples(folder)[0]] == ["car.png"]
    assert "2 image(s) in" in caplog.text and "not measured: bus.jpg, van.JPG" in caplog.text


def test_labels_that_are_no_labels_are_named_not_passed_over(tmp_path, capsys):
    """A label with spaces for tabs, a box of no size, a name reaching out of the folder, an image that is
    not there: each was passed over unsaid (fewer images than given) or failed as `cannot decode`. Now
    one line names the file and line, before any image is read. A byte-order mark, a header row and a
    plate written with spaces and dashes are read as meant."""
    from alpr.ground_truth import load_samples

    folder = tmp_path / "us"
    folder.mkdir()
    cv2.imwrite(str(folder / "car.png"), np.zeros((40, 80, 3), np.uint8))
    for line, message in [
        ("car.png 1 2 30 10 ABC123", "car.txt:1: expected file<TAB>x"),
        ("car.png\t1\t2\t-30\t10\tABC123", "car.txt:1: the plate's box must be four numbers .* of positive size"),
        ("../car.png\t1\t2\t30\t10\tABC123", "car.txt:1: the image must be named by its file name"),
        ("gone.png\t1\t2\t30\t10\tABC123", "car.txt:1: no image file 'gone.png'"),
        ("car.png\t1\t2\t30\t10\t - ", "car.txt:1: not a plate: nothing left"),
    ]:
        (folder / "car.txt").write_text(line + "\n")
        with pytest.raises(InputError, match=message):
            load_samples(folder)
    (folder / "car.txt").write_text("\ufeffcar.png\t1\t2\t30\t10\tyg9-x2 g\n\n")
    (folder / "README.txt").write_text("Photos taken at the north gate, June\n")  # notes beside: no label
    assert [(s.image.name, s.plate) for s in load_samples(folder)[0]] == [("car.png", "YG9X2G")]
    (folder / "car.txt").unlink()
    (folder / "groundtruth.csv").write_text("\ufefffile,state,plate\ncar.png,ca,7ABC 284\n")
    assert [(s.image.name, s.plate) for s in load_samples(folder)[0]] == [("car.png", "7ABC284")]
    (folder / "groundtruth.csv").write_text("car.png,ca\n")
    with pytest.raises(InputError, match="groundtruth.csv:1: expected file,region,PLATE"):
        load_samples(folder)


def test_an_image_is_read_as_the_ingest_nodes_read_them(tmp_path, capsys):
    """cv2.imread hung on a FIFO named like a photo, decoded a 20000 x 20000 PNG whole (3.3 GB), and
    crashed the process on a folder name that is not UTF-8. Now each is one line and exit code 2."""
    import os

    for folder_name, name, make, message in [
        ("fifo", "fifo.png", lambda path: os.mkfifo(path), "no image file 'fifo.png'"),
        ("bomb", "bomb.png", lambda path: cv2.imwrite(str(path), np.zeros((9000, 9000), np.uint8)),
         "cannot read image .*bomb.png: .*pixels"),
        (os.fsdecode(b"cam\xff"), "car.png", lambda path: cv2.imencode(".png", np.zeros((40, 80, 3), np.uint8))[1]
         .tofile(str(path)), ""),
    ]:  # fmt: skip
        folder = tmp_path / folder_name
        folder.mkdir()
        make(folder / name)
        (folder / "groundtruth.csv").write_text(f"{name},ca,ABC123\n")
        code = main(["eval", str(folder), "--engine", "tesseract"])
        captured = capsys.readouterr()
        if folder_name.startswith("cam"):  # read through imdecode, never by its path: no crash
            assert code == 0 and "crops" not in captured.err
        else:
            assert code == 2 and re.search(message, captured.err), captured.err


def test_an_image_that_cannot_be_read_is_counted_and_named_and_the_others_still_give_figures(tmp_path, capsys):
    """One truncated JPEG ended `alpr eval` with no figures at all (a review): it is left out, named, counted
    under `unreadable` in --json, and the command exits 1 at the end."""
    folder, report = tmp_path / "crops", tmp_path / "m.json"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((40, 120, 3), 200, np.uint8))
    photo = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))[1]
    (folder / "cut.jpg").write_bytes(photo.tobytes()[:5000])
    (folder / "groundtruth.csv").write_text("good.png,ca,ABC123\ncut.jpg,ca,XYZ789\n")
    assert main(["eval", str(folder), "--engine", "tesseract", "--json", str(report)]) == 1
    printed = capsys.readouterr().out
    assert f"unreadable: 1 images, left out of the figures: {folder / 'cut.jpg'}: undecodable image" in printed
    assert re.search(r"^crops +\S+ +1 ", printed, re.MULTILINE), printed  # the good one's figures
    metrics = json.loads(report.read_text())
    assert (metrics["n"], metrics["unreadable"], metrics["subsets"]["crops"]["unreadable"]) == (1, 1, 1)


def test_the_errors_file_escapes_formulas_and_the_outputs_stay_out_of_the_dataset(datasets_dir, tmp_path, capsys):
    src = datasets_dir / "openalpr-plates"
    folder = tmp_path / "crops"
    folder.mkdir()
    name = "=HYPERLINK(1).png"
    (folder / name).write_bytes((src / "ak1165.png").read_bytes())
    (folder / "groundtruth.csv").write_text(f'"{name}",ak,=1+2\n')
    assert main(["eval", str(folder), "--engine", "tesseract"]) == 2  # a truth that is no plate: one line
    assert "groundtruth.csv:1: not a plate: 4 characters, 2 not A-Z or 0-9" in capsys.readouterr().err
    (folder / "groundtruth.csv").write_text(f'"{name}",ak,ABC123\n')
    for flag in ("--json", "--errors"):  # it replaced groundtruth.csv, or a photo, and exited 0
        assert main(["eval", str(folder), "--engine", "tesseract", flag, str(folder / "groundtruth.csv")]) == 2
        assert "inside the dataset" in capsys.readouterr().err
    errors = tmp_path / "errors.csv"
    assert main(["eval", str(folder), "--engine", "tesseract", "--errors", str(errors)]) == 0
    with errors.open() as handle:
        row = next(csv.DictReader(handle))
    assert row["image"] == "'" + name and row["truth"] == "ABC123"


def test_every_set_below_the_folder_given_is_read(datasets_dir, tmp_path, settings):
    """Given the shared datasets' folder, eval read openalpr-plates alone and passed over the scenes of
    openalpr-endtoend/{us,eu,br} unsaid: every set below is found, named by its path, each once."""
    import os

    from alpr.ground_truth import dataset_folders

    assert [f.relative_to(datasets_dir).as_posix() for f in dataset_folders(datasets_dir)] == [
        "openalpr-endtoend/br", "openalpr-endtoend/eu", "openalpr-endtoend/us", "openalpr-plates",
    ]  # fmt: skip
    root = tmp_path / "sets"
    crops = datasets_dir / "openalpr-plates"
    rows = [row for row in csv.reader((crops / "groundtruth.csv").open()) if row and row[0].startswith("ca")][:6]
    for folder, part in (("openalpr-plates", rows[:3]), ("more/ca", rows[3:])):
        (root / folder).mkdir(parents=True)
        for row in part:
            (root / folder / row[0]).write_bytes((crops / row[0]).read_bytes())
        with (root / folder / "groundtruth.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows(part)
    (root / "more" / "ca" / "inside").mkdir()  # a set's own sub-folders are not sets of it
    (root / "more" / "ca" / "inside" / "groundtruth.csv").write_text("")
    os.symlink(root / "more", root / "again")  # the same set reached twice: read once, by its own path
    (root / "notes").mkdir()
    os.symlink(root, root / "notes" / "loop")  # a link back up: not walked round for ever
    assert [f.relative_to(root).as_posix() for f in dataset_folders(root)] == ["more/ca", "openalpr-plates"]
    out = tmp_path / "m.json"
    assert main(["eval", str(root), "--engine", "tesseract", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["subsets"]) == {"more/ca", "openalpr-plates"} and metrics["n"] == 6
    (tmp_path / "empty" / "a" / "b").mkdir(parents=True)
    with pytest.raises(InputError, match="holds no ground truth .*, nor does any folder up to 4 below it"):
        dataset_folders(tmp_path / "empty")
