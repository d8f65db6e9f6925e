import pytest

from common.config import Settings
from common.errors import ConfigError


def test_environment_and_overrides():
    settings = Settings.load({"ALPR_OCR_ENGINE": "tesseract", "ALPR_DETECTOR_IMGSZ": "640"}, ocr_region="eu")
    assert (settings.ocr_engine, settings.detector_imgsz, settings.ocr_region) == ("tesseract", 640, "eu")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ALPR_OCR_ENGIN": "ppocr"}, "unknown setting ALPR_OCR_ENGIN"),
        ({"ALPR_OCR_ENGINE": "easyocr"}, "ALPR_OCR_ENGINE"),
        ({"ALPR_DETECTOR_IMGSZ": "641"}, "ALPR_DETECTOR_IMGSZ"),
        ({"ALPR_DETECTOR_DEVICE": "gpu"}, "ALPR_DETECTOR_DEVICE"),
        ({"ALPR_SAMPLE_FPS": "-1"}, "ALPR_SAMPLE_FPS"),
        ({"ALPR_JOB_TIMEOUT_S": "30"}, "ALPR_DB_PATIENCE_S .90. must be below ALPR_JOB_TIMEOUT_S .30."),
    ],
)
def test_bad_settings_name_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.load(environ)
