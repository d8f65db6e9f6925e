from dataclasses import replace

import pytest

from common.errors import ConfigError
from common.regions import load_regions, region_formats
from ocr_worker.formats import constrained_best, k_best
from ocr_worker.formats import rank_candidates as rank_readings


def rank_candidates(choices, region, limit):
    return [reading.candidate for reading in rank_readings(choices, region, limit)]


def sure(text, p=0.99):
    """Choices where each character is read with probability p and nothing else is likely."""
    return [[(c, p)] for c in text]


@pytest.mark.parametrize(
    ("choices", "template", "expected"),
    [
        (sure("ABC1234"), "LLLDDDD", "ABC1234"),
        (sure("A8C1234"), "LLLDDDD", "ABC1234"),  # 8 where a letter must be: B
        (sure("ABCI23O"), "LLLDDDD", "ABC1230"),  # I and O where digits must be
        (sure("ABC123"), "LLLDDDD", None),  # wrong length
        (sure("ABC12X4"), "LLLDDDD", None),  # X has no digit look-alike
        ([[("0", 0.6), ("O", 0.3)], *sure("BC1234")], "LLLDDDD", "OBC1234"),  # the engine's own alternative
    ],
)
def test_constrained_best(choices, template, expected):
    found = constrained_best(choices, template)
    assert (found[0] if found else None) == expected


def test_k_best_orders_by_probability():
    choices = [[("A", 0.9), ("4", 0.1)], [("B", 0.6), ("8", 0.4)]]
    assert [t for t, _, _ in k_best(choices, 4)] == ["AB", "A8", "4B", "48"]
    assert [weakest for _, _, weakest in k_best(choices, 4)] == [0.6, 0.4, 0.1, 0.1]
    assert k_best([], 3) == []


def test_format_correction_beats_a_raw_reading_that_fits_no_format():
    ranked = rank_candidates(sure("PP587A0"), region_formats("eu"), 5)
    assert ranked[0].text == "PP587AO" and ranked[0].format_name == "LLDDDLL"


def test_a_light_format_weight_keeps_a_fair_reading_outside_the_templates():
    """Europe's templates leave out most countries (Germany's among them) and vanity plates. In full they
    force a fairly sure GWAGEN into GW46EN through look-alikes; at the weight fitted for a recogniser
    trained on plates, its own reading stands."""
    choices = [*sure("GW"), [("A", 0.6), ("4", 0.4)], [("G", 0.6), ("6", 0.4)], *sure("EN")]
    eu = region_formats("eu")
    assert rank_candidates(choices, eu, 5)[0].text == "GW46EN"
    light = rank_candidates(choices, eu.weighted(0.2), 5)
    assert light[0].text == "GWAGEN" and not light[0].matches_format
    assert eu.weighted(0.2).unmatched_log_penalty == pytest.approx(0.2 * eu.unmatched_log_penalty)
    assert eu.weighted(0.2).templates == eu.templates
    for weight in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="format weight"):
            eu.weighted(weight)


def test_a_region_whose_templates_are_complete_keeps_its_penalty_at_any_weight():
    """Every Brazilian plate is one of two national formats: a reading that fits neither is a misread,
    however well the recogniser knows plates (N2J6581 for NZJ6581, measured on a held-out photo)."""
    choices = [*sure("N"), [("2", 0.8), ("Z", 0.2)], *sure("J6581")]
    br = region_formats("br")
    assert br.complete and not region_formats("eu").complete and not region_formats("us").complete
    assert br.weighted(0.2) == br
    assert rank_candidates(choices, br.weighted(0.2), 5)[0].text == "NZJ6581"
    incomplete = replace(br, complete=False)
    assert rank_candidates(choices, incomplete.weighted(0.2), 5)[0].text == "N2J6581"  # the control


def test_an_unsure_extra_character_is_dropped():
    choices = [*sure("1T4"), [("8", 0.75), ("3", 0.02)], *sure("3213")]  # a sticker between the groups
    ranked = rank_candidates(choices, region_formats("eu"), 5)
    assert ranked[0].text == "1T43213"


def test_a_sure_reading_is_kept_and_confidences_are_ordered():
    ranked = rank_candidates(sure("KPX4721", 0.995), region_formats("us"), 5)
    assert ranked[0].text == "KPX4721" and ranked[0].matches_format
    assert all(0 <= c.confidence <= 1 for c in ranked)
    assert len(ranked) <= 5


def test_brazil_accepts_both_formats():
    br = region_formats("br")
    assert br.match("ABC1234") == "LLLDDDD" and br.match("ABC1D23") == "LLLDLDD" and br.match("AB12345") is None


def test_regions_are_loaded_and_unknown_ones_rejected():
    assert {"us", "eu", "br"} <= set(load_regions())
    with pytest.raises(ConfigError, match="unknown plate region 'xx'"):
        region_formats("xx")


def test_each_reading_keeps_its_least_sure_character():
    """One doubtful character in an otherwise sure plate: the mean hides it, the reading keeps it."""
    us = region_formats("us")
    doubtful = [*sure("KPX47"), [("2", 0.55), ("Z", 0.4)], *sure("1")]
    top = rank_readings(doubtful, us, 5)[0]
    assert top.candidate.text == "KPX4721" and top.weakest_character == 0.55
    assert top.candidate.confidence > 0.9  # what the mean alone would say
    swapped = rank_readings(sure("PP587A0"), region_formats("eu"), 5)[0]  # 0 where a letter must be: O, halved
    assert swapped.candidate.text == "PP587AO" and swapped.weakest_character == pytest.approx(0.495)
    dropped = rank_readings([*sure("1T4"), [("8", 0.75), ("3", 0.02)], *sure("3213")], region_formats("eu"), 5)[0]
    assert dropped.candidate.text == "1T43213"  # the 8 called spurious, which it is with probability 1 - 0.77
    assert dropped.weakest_character == pytest.approx(0.23)
