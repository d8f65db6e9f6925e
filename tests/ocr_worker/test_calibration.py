"""The confidence model: fitted probabilities follow the evidence, keep the ranking, and the shipped
file holds a model per ppocr recogniser."""

import json
import math

import numpy as np
import pytest

from common.errors import ConfigError
from common.types import PlateCandidate
from ocr_worker.calibration import (
    FEATURES,
    FORMAT_WEIGHTS,
    Calibration,
    calibration_for,
    features,
    load_calibrations,
)
from ocr_worker.formats import NO_LOOK_ALIKE_MARGIN, Reading


def test_a_fit_recovers_the_probability_behind_the_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, len(FEATURES)))
    truth = np.array([1.0, 0.5, 0.0, -0.7, 0.6, 0.4, 0.3])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ truth - 0.3)))).astype(float)
    model = Calibration.fit(x, y)
    assert np.allclose(model.weights, truth, atol=0.2) and abs(model.bias + 0.3) < 0.2
    assert (
        0 < model.probability([-30, 0, 0, 30, 0, 0, 0]) < 0.01 and 0.99 < model.probability([30, 0, 0, 0, 0, 0, 0]) < 1
    )


def test_calibrated_candidates_keep_their_order_and_texts():
    candidates = [
        Reading(PlateCandidate("ABC1234", 0.97, "LLLDDDD"), 0.9),
        Reading(PlateCandidate("ABC1Z34", 0.80, None), 0.3),
    ]
    assert features(candidates, 0, 7.0, 60.0)[1] > 0 > features(candidates, 1, 7.0, 60.0)[1]  # margin over the other
    model = Calibration((1.0, 0.5, 0.5, -0.5, 0.5, 1.0, 0.2), -1.0)
    calibrated = model.apply(candidates, 7.0, 60.0)
    assert [c.text for c in calibrated] == ["ABC1234", "ABC1Z34"]
    assert calibrated[0].confidence > calibrated[1].confidence and calibrated[0].format_name == "LLLDDDD"


@pytest.mark.parametrize("key", ["ppocr-plate", "ppocr-v4", "ppocr-v6", "tesseract"])
def test_the_shipped_file_has_a_model_per_recogniser(key):
    model = load_calibrations()[key]
    assert len(model.weights) == len(model.names) and set(model.names) <= set(FEATURES)
    assert model.weights[0] > 0  # more confident, more often right
    assert model.format_weight in FORMAT_WEIGHTS


def test_a_file_without_format_weights_counts_formats_in_full(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"models": {"ppocr-v4": {"weights": [1, 0, 0, 0, 0], "bias": 0.0}}}))
    assert load_calibrations(path)["ppocr-v4"].format_weight == 1.0


def test_a_weak_character_lowers_the_probability_of_a_sure_looking_reading():
    """The shipped model of the default recogniser: the same mean confidence and the same rival
    reading, one character in doubt - across the default threshold. (Fitted on reads of images the
    recogniser never trained on, a mean of 0.95 is no longer sure enough on its own: 0.99 is.)"""
    model = load_calibrations()["ppocr-plate"]
    rival = Reading(PlateCandidate("KPX4Z21", 0.90, None), 0.5)
    plain = model.apply([Reading(PlateCandidate("KPX4721", 0.99, "LLLDDDD"), 0.95), rival], 7.0, 60.0)[0]
    doubtful = model.apply([Reading(PlateCandidate("KPX4721", 0.99, "LLLDDDD"), 0.55), rival], 7.0, 60.0)[0]
    assert model.weights[FEATURES.index("logit_weakest_character")] > 0
    assert doubtful.confidence < 0.85 <= plain.confidence


def test_a_look_alike_the_formats_allow_lowers_the_probability_of_a_sure_looking_reading():
    """The shipped model of the default recogniser: the same reading, as sure on the whole and of its
    least sure character, across the default threshold by whether that character's look-alike of the
    other kind would fit a format too (a Slovak digit group's 0 against O: RK026AJ and RKO26AJ both fit
    an eu format) - then only the recogniser's odds between the two tell them apart."""
    model = load_calibrations()["ppocr-plate"]
    assert model.weights[FEATURES.index("look_alike_margin")] > 0
    rival = Reading(PlateCandidate("RKO26AJ", 0.90, "LLLDDLL"), 0.47, -math.log(9))

    def confidence(look_alike_margin: float) -> float:
        reading = Reading(PlateCandidate("RK026AJ", 0.99, "LLDDDLL"), 0.9, look_alike_margin)
        return model.apply([reading, rival], 6.7, 60.0)[0].confidence

    assert confidence(math.log(0.9 / 0.1)) < 0.85 <= confidence(NO_LOOK_ALIKE_MARGIN)


def test_a_model_fitted_on_other_features_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"models": {"ppocr-v4": {"weights": [1, 0, 0, 0], "bias": 0.0}}}))
    with pytest.raises(ConfigError, match=r"ppocr-v4 was fitted on .*\(4 weights\).*alpr calibrate"):
        load_calibrations(path)
    mixed = tmp_path / "mixed.json"  # one engine refitted, another's model from an older version
    renamed = [*FEATURES[:-1], "something_else"]
    mixed.write_text(json.dumps({"models": {
        "ppocr-plate": {"features": list(FEATURES), "weights": [1, 0, 0, 0, 0, 0, 0], "bias": 0.0},
        "tesseract": {"features": renamed, "weights": [1, 0, 0, 0, 0], "bias": 0.0},
    }}))  # fmt: skip
    assert calibration_for("ppocr-plate", mixed) == Calibration((1, 0, 0, 0, 0, 0, 0), 0.0)
    with pytest.raises(ConfigError, match="tesseract was fitted on .*something_else"):
        calibration_for("tesseract", mixed)


def test_a_model_fitted_before_a_feature_was_added_weighs_the_ones_it_knows(tmp_path):
    # calibration.json names each model's features: one fitted on the first five (tesseract's, say) goes
    # on as it was, the plate's size unweighed; a file of an earlier version, naming none, had those five
    path = tmp_path / "calibration.json"
    five = list(FEATURES[:5])
    path.write_text(json.dumps({"models": {
        "tesseract": {"features": five, "weights": [1, 0, 0, 0, 0], "bias": 0.0},
        "ppocr-v4": {"weights": [1, 0, 0, 0, 0], "bias": 0.0},
    }}))  # fmt: skip
    for key in ("tesseract", "ppocr-v4"):
        model = load_calibrations(path)[key]
        assert model.names == tuple(five)
        small, large = (model.probability([2.0, 0, 0, 0, 0, height, -3.0]) for height in (-2.0, 0.0))
        assert small == large == pytest.approx(1 / (1 + np.exp(-2.0)))
    with pytest.raises(ValueError, match="7 features"):
        model.probability([2.0, 0, 0, 0, 0, 0])


def test_the_plate_crops_height_short_of_the_recognisers_counts_and_a_taller_one_does_not():
    candidates = [Reading(PlateCandidate("ABC1234", 0.97, "LLLDDDD"), 0.9)]
    height = FEATURES.index("log_short_height")
    short, full, tall = (features(candidates, 0, 7.0, px)[height] for px in (12.0, 48.0, 300.0))
    assert short == pytest.approx(np.log(12 / 48)) and full == tall == 0.0
    assert features(candidates, 0, 7.0, 0.0)[height] == pytest.approx(np.log(1 / 48))  # never log(0)


def test_the_default_recognisers_model_trusts_the_same_reading_less_on_a_smaller_plate():
    """Fitted on unseen reads of the photos at their size and shrunk (alpr calibrate --scales): a sure
    reading of a crop 16 pixels tall is less likely right than the same of one 48 or more."""
    model = load_calibrations()["ppocr-plate"]
    assert model.names == FEATURES and model.weights[FEATURES.index("log_short_height")] > 0
    readings = [Reading(PlateCandidate("KPX4721", 0.97, "LLLDDDD"), 0.9), Reading(PlateCandidate("KPX4Z21", 0.5), 0.3)]
    small, full, large = (model.apply(readings, 7.0, px)[0].confidence for px in (16.0, 48.0, 200.0))
    assert small < full == large
