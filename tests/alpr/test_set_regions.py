"""Which plate formats `alpr eval` reads a set with (alpr/ground_truth.region_for): the region its folder's
name (or a word of it) names, else the configured one where given, else us where its groundtruth.csv names
a US state for every plate, else `any`, no country's formats."""

import json

import pytest

from alpr.cli import main
from alpr.ground_truth import UNNAMED_REGION, load_samples, region_for
from common.errors import InputError
from common.regions import load_regions


def test_a_sets_region_is_its_name_else_the_settings_else_a_word_of_its_name_else_its_truths_else_none(tmp_path):
    assert UNNAMED_REGION in load_regions() and not load_regions()[UNNAMED_REGION].templates
    for name, region in (("eu", "eu"), ("br_day", "br"), ("US-gates", "us"), ("plates", UNNAMED_REGION),
                         ("europe", UNNAMED_REGION), ("busy", UNNAMED_REGION), ("us_eu", "us")):  # fmt: skip
        assert region_for(tmp_path / name, None) == region, name
    assert region_for(tmp_path / "plates", "eu") == "eu" and region_for(tmp_path / "br", "eu") == "br"
    assert region_for(tmp_path / "photos_us_border", "eu") == "eu"  # a word yields to what was set
    crops = tmp_path / "crops"
    crops.mkdir()
    (crops / "groundtruth.csv").write_text("\ufefffile,state,plate\n\na.png,ca,ABC123\nb.png,NY,XYZ9876\nc.png,tx,1\n")
    assert region_for(crops, None) == "us" and region_for(crops, "br") == "br"
    (crops / "groundtruth.csv").write_text("a.png,ca,ABC123\nb.png,sk,RK101AO\nc.png,tx,1\nd.png,ny,2\n")
    assert region_for(crops, None) == UNNAMED_REGION  # not every one a state
    (crops / "groundtruth.csv").write_text("a.png,de,B1\nb.png,de,M2\nc.png,in,MH12AB1234\n")
    assert region_for(crops, None) == UNNAMED_REGION  # codes of countries too, too few different ones
    (crops / "groundtruth.csv").write_text("a.png,,ABC123\n")
    assert region_for(crops, None) == UNNAMED_REGION
    (crops / "groundtruth.csv").write_text("a.png,ca," + "A" * 200_000 + "\n")  # past csv's field limit
    assert region_for(crops, None) == UNNAMED_REGION


def test_a_ground_truth_csv_cannot_read_is_an_error_naming_it(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "groundtruth.csv").write_text("a.png,ca,ABC123\nb.png,ca," + "A" * 200_000 + "\n")
    with pytest.raises(InputError, match=r"groundtruth.csv:2: not CSV a label can be read from"):
        load_samples(tmp_path)


def eval_as(folder, tmp_path, name):
    out = tmp_path / f"{name}.json"
    assert main(["eval", str(folder), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_another_countrys_set_is_read_with_no_countrys_formats_not_the_default_regions(
    datasets_dir, tmp_path, monkeypatch
):
    """European photos in a folder that names no region were read with us's formats, whose prior on the
    letter O (US serials leave it out) turned their O into 0: all 108 eu photos 90.7% exactly right against
    98.2% with eu's. Read with `any` they read as with their own region's; ALPR_OCR_REGION=us still holds
    where set."""
    source = datasets_dir / "openalpr-endtoend" / "eu"
    folder = tmp_path / "xx"
    folder.mkdir()
    chosen = [t for t in sorted(source.glob("*.txt")) if "O" in t.read_text().split("\t")[-1][2:]][:12]
    assert len(chosen) == 12
    for label in chosen:
        (folder / label.name).write_bytes(label.read_bytes())
        image = label.read_text().split("\t")[0]
        (folder / image).write_bytes((source / image).read_bytes())
    monkeypatch.delenv("ALPR_OCR_REGION", raising=False)
    unnamed = eval_as(folder, tmp_path, "unnamed")
    monkeypatch.setenv("ALPR_OCR_REGION", "us")
    as_us = eval_as(folder, tmp_path, "us")
    assert unnamed["subsets"]["xx"]["region"] == UNNAMED_REGION and as_us["subsets"]["xx"]["region"] == "us"
    assert unnamed["exact_top1"] > as_us["exact_top1"], (unnamed["exact_top1"], as_us["exact_top1"])
