"""The OCR engines' table (ocr_worker/engines.py): each engine is found by the config key that selects it,
and what differs between engines (how calibration.json keys its fit, the recogniser file it reads, whether
it reads one given in its place, whether its recogniser trained on the benchmark) is the engine's to say."""

from __future__ import annotations

from typing import get_args

import pytest

from common.config import Settings
from common.setting_choices import OCR_ENGINES
from ocr_worker.core import OcrSettings
from ocr_worker.engines import ENGINES
from ocr_worker.ppocr_engine import bundled_model_path


def test_every_configurable_engine_is_in_the_table_under_its_own_key():
    """common/setting_choices.py's OcrEngineName names the engines a setting may select (common cannot import this
    table): the two lists agree, and the setting and `--engine` take that one."""
    assert get_args(Settings.model_fields["ocr_engine"].annotation) == OCR_ENGINES
    assert sorted(ENGINES) == sorted(OCR_ENGINES)
    assert all(engine.type_key == key for key, engine in ENGINES.items())


@pytest.mark.parametrize(
    ("engine", "model", "calibration_key", "has_file", "reads_files", "trained_on_benchmark"),
    [
        ("ppocr", "plate", "ppocr-plate", True, True, True),
        ("ppocr", "v4", "ppocr-v4", True, True, False),
        ("tesseract", "plate", "tesseract", False, False, False),  # the recogniser setting is ppocr's alone
        ("tesseract", "v4", "tesseract", False, False, False),
    ],
)
def test_what_differs_between_engines_is_the_engines_to_say(
    engine, model, calibration_key, has_file, reads_files, trained_on_benchmark
):
    kind = ENGINES[engine]
    assert kind.calibration_key(model) == calibration_key
    assert OcrSettings(engine=engine, model=model).engine_key == calibration_key
    assert (kind.recogniser_file(model) is not None) == has_file
    if has_file:
        assert kind.recogniser_file(model) == bundled_model_path(model)
    assert kind.reads_recogniser_files == reads_files
    assert kind.trained_on_benchmark(model) == trained_on_benchmark
