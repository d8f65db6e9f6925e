"""`alpr eval` on real photographs: a few of each set, through the command, with --json."""

import csv
import json

from alpr.cli import main

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
        assert set(subset) >= SUBSET_KEYS
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
        assert subset["exact_topn"] >= subset["exact_top1"]
    table = capsys.readouterr().out
    assert "top1" in table and "br" in table


def test_eval_crops_with_groundtruth_csv(datasets_dir, tmp_path, settings):
    src = datasets_dir / "openalpr-plates"
    dst = tmp_path / "crops"
    dst.mkdir()
    with (src / "groundtruth.csv").open() as handle:
        rows = list(csv.reader(handle))[:20]
    for row in rows:
        (dst / row[0]).write_bytes((src / row[0]).read_bytes())
    with (dst / "groundtruth.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert (
        main(
            [
                "eval",
                str(dst),
                "--engine",
                "tesseract",
                "--json",
                str(tmp_path / "c.json"),
                "--model-dir",
                str(settings.model_dir),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "c.json").read_text())
    assert metrics["engine"] == "tesseract" and metrics["n"] == 20
    assert metrics["detection_recall_iou50"] is None
    assert 0.1 <= metrics["exact_top1"] <= metrics["exact_topn"]  # Tesseract reads some of these crops
