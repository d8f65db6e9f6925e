import math
import re
from dataclasses import replace

import pytest

from common.errors import ConfigError
from common.regions import load_regions, parse_regions, region_formats
from ocr_worker.formats import NO_LOOK_ALIKE_MARGIN, constrained_best, k_best, with_priors
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


def test_each_reading_keeps_its_margin_over_a_look_alike_its_formats_allow_in_its_place():
    """Brazil's formats (LLLDDDD, Mercosul LLLDLDD) pin the fourth character to a digit, so a wavering 1
    there is the ranking's to correct, not the confidence's; the fifth may be a letter, and a 2 read
    against a Z there is as sure as the recogniser's odds between them. A character the reading calls
    spurious does not shift which position's odds count."""
    br = region_formats("br")
    pinned = [*sure("ABC", 1.0), [("1", 0.9), ("I", 0.1)], *sure("234", 1.0)]
    open_kind = [*sure("ABC1", 1.0), [("2", 0.9), ("Z", 0.1)], *sure("34", 1.0)]
    spurious = [[("7", 0.05)], *open_kind]  # one character too many, hardly there: dropped
    assert rank_readings(pinned, br, 5)[0].look_alike_margin == NO_LOOK_ALIKE_MARGIN == pytest.approx(math.log(1000))
    for choices in (open_kind, spurious):
        top = rank_readings(choices, br, 5)[0]
        assert top.candidate.text == "ABC1234" and top.look_alike_margin == pytest.approx(math.log(0.9 / 0.1))
    unlisted = [*sure("ABC1", 1.0), [("2", 0.9), ("7", 0.1)], *sure("34", 1.0)]  # Z not among the alternatives
    assert rank_readings(unlisted, br, 5)[0].look_alike_margin == pytest.approx(math.log(0.9 / 1e-3))


def test_a_region_of_no_formats_leaves_every_look_alike_open():
    """`any` has no templates: a wavering 1 against I anywhere is an ambiguity no format settles. None
    counted (the margin at its most), and the confidence took an O read 0 for a sure read (a review)."""
    pinned = [*sure("ABC", 1.0), [("1", 0.9), ("I", 0.1)], *sure("234", 1.0)]
    top = rank_readings(pinned, region_formats("any"), 5)[0]
    assert top.candidate.text == "ABC1234" and top.look_alike_margin == pytest.approx(math.log(0.9 / 0.1))


def test_a_wavering_o_reads_as_the_zero_where_the_region_says_so_and_a_sure_one_stands():
    """US plates draw O like the zero and seldom hold the letter (the ground truth: 141 plates with 0,
    7 with O): the US prior tips a wavering glyph to 0, leaves a sure O alone, and other regions
    keep the recogniser's own call (measured: 0BX40699 read OBX40699 on an unseen crop)."""
    us, eu = region_formats("us"), region_formats("eu")
    wavering = [[("O", 0.7), ("0", 0.25)], *sure("BX40699")]
    assert us.character_log_priors == {"O": -2.0} and not eu.character_log_priors
    assert rank_candidates(wavering, us, 5)[0].text == "0BX40699"
    assert rank_candidates(wavering, replace(us, character_log_priors={}), 5)[0].text == "OBX40699"  # the control
    sure_o = [*sure("N"), [("O", 0.95), ("0", 0.04)], *sure("X218")]
    assert rank_candidates(sure_o, us, 5)[0].text == "NOX218"
    wavering_eu = [*sure("RK"), [("O", 0.7), ("0", 0.25)], *sure("03AB")]  # both fit a template
    assert rank_candidates(wavering_eu, eu.weighted(0.2), 5)[0].text == "RKO03AB"


def test_priors_follow_bayes_rule_and_keep_the_unlisted_share():
    weighed = with_priors([[("O", 0.6), ("0", 0.3)]], {"O": math.log(0.5)})
    # O: 0.6 * 0.5 = 0.3; 0: 0.3; the 0.1 not listed (blank, others) keeps its weight: total 0.7
    assert dict(weighed[0]) == pytest.approx({"O": 0.3 / 0.7, "0": 0.3 / 0.7})
    assert with_priors(sure("AB"), {}) == sure("AB")


def test_priors_leave_positions_without_their_characters_and_keep_a_position_s_mass():
    """Tesseract's scores may sum over 1 at a position (its top mapped to [0.5, 1], alternatives
    halved): a position without an O is untouched, one with it keeps its total."""
    tesseract_like = [[("A", 0.95), ("4", 0.4)], [("O", 0.8), ("0", 0.45)], []]
    weighed = with_priors(tesseract_like, {"O": -2.0})
    assert weighed[0] == tesseract_like[0] and weighed[2] == []
    assert [c for c, _ in weighed[1]] == ["0", "O"]
    assert sum(p for _, p in weighed[1]) == pytest.approx(1.25)
    assert dict(weighed[1])["0"] / dict(weighed[1])["O"] == pytest.approx(0.45 / (0.8 * math.exp(-2)))


REGION = {"min_length": 2, "max_length": 8, "unmatched_log_penalty": 0.4}


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ({"o": -1}, "'o' is not a plate character"),
        ({"OO": -1}, "'OO' is not a plate character"),
        ({10: 1}, "10 is not a plate character"),
        ({"O": "low"}, "'low' is not a number"),
        ({"O": True}, "True is not a number"),
        ({"O": float("nan")}, "nan is not a number"),
        ({"O": -9}, "beyond"),
        (["O"], "must map characters to numbers"),
        (None, "must map characters to numbers"),  # `character_log_priors:` left empty
    ],
)
def test_bad_character_priors_are_refused_by_name(priors, message):
    with pytest.raises(ConfigError, match=f"region xx: character_log_priors.*{re.escape(message)}"):
        parse_regions({"xx": {**REGION, "character_log_priors": priors}})


def test_character_priors_are_read_and_a_misspelt_key_is_refused():
    fine = parse_regions({"xx": {**REGION, "character_log_priors": {"O": -2, 0: 1}}})["xx"]  # YAML's `0: 1`
    assert fine.character_log_priors == {"O": -2.0, "0": 1.0}
    assert parse_regions({"xx": REGION})["xx"].character_log_priors == {}
    with pytest.raises(ConfigError, match=r"region xx: unknown keys \['character_log_prior'\]"):
        parse_regions({"xx": {**REGION, "character_log_prior": {"O": -2}}})
