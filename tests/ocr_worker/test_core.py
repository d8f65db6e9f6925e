import csv
import itertools
import math

import cv2
import numpy as np
import pytest

from alpr.democlip import draw_plate
from alpr.wiring import build_reader
from common import geometry
from common.config import Settings
from common.errors import ConfigError, InputError
from common.regions import region_formats
from common.types import PlateCandidate, PlateDetections
from ocr_worker.calibration import FEATURES, Calibration, load_calibrations
from ocr_worker.core import SIDE_EDGE_MAX_CONFIDENCE, TOO_SHORT_MAX_CONFIDENCE, OcrSettings, PlateReader
from ocr_worker.formats import Reading

PLATES = ("KPX4721", "7ABC284", "GHT2093")


@pytest.fixture(scope="module")
def tesseract_reader() -> PlateReader:
    return PlateReader(OcrSettings(engine="tesseract", region="us"))


def real_crops(datasets_dir, count):
    folder = datasets_dir / "openalpr-plates"
    with (folder / "groundtruth.csv").open() as handle:
        rows = [r for r in csv.reader(handle) if len(r) >= 3][:count]
    return [(cv2.imread(str(folder / r[0])), r[2]) for r in rows]


def test_ppocr_reads_real_plate_crops(reader_us, datasets_dir):
    crops = real_crops(datasets_dir, 60)
    exact = sum(reader_us.read(image)[0].text == plate for image, plate in crops if reader_us.read(image))
    assert exact >= 0.5 * len(crops), f"{exact} of {len(crops)} read exactly"


def test_tesseract_reads_real_plate_crops(tesseract_reader, datasets_dir):
    crops = real_crops(datasets_dir, 60)
    exact = sum(
        bool(c) and c[0].text == plate for c, (_, plate) in ((tesseract_reader.read(i), (i, p)) for i, p in crops)
    )
    assert exact >= 0.1 * len(crops), f"{exact} of {len(crops)} read exactly"


@pytest.mark.parametrize(
    ("engine", "plate"),
    [(engine, plate) for engine in ("ppocr", "tesseract") for plate in PLATES],
)
def test_both_engines_read_a_clean_plate(engine, plate, reader_us, tesseract_reader):
    reader = reader_us if engine == "ppocr" else tesseract_reader
    image = cv2.resize(draw_plate(plate), (208, 104), interpolation=cv2.INTER_AREA)
    candidates = reader.read(image)
    if engine == "ppocr":  # the default engine reads it outright; Tesseract has it among its candidates
        assert candidates[0].text == plate and candidates[0].matches_format
        assert candidates[0].confidence > 0.5
    else:
        assert plate in [c.text for c in candidates]


def best_first(candidates) -> bool:
    """Whether uncalibrated candidates are in rank_candidates' order: by score (log-probability less
    the format penalties), which their confidence exp(score / length), rounded to 4 places, encodes."""

    def score(c, slack):  # the score's bound from a confidence known to +-0.00005
        return len(c.text) * math.log(min(1.0, max(c.confidence + slack, 1e-9)))

    return all(score(a, 5e-5) >= score(b, -5e-5) for a, b in itertools.pairwise(candidates))


def test_candidates_are_ranked_and_limited(reader_us):
    crop = cv2.resize(draw_plate("KPX4721"), (160, 80))
    raw = PlateReader(OcrSettings(region="us", calibrated=False)).read(crop)
    assert 2 <= len(raw) <= reader_us.settings.max_candidates  # more than one: the order is a real check
    assert raw[0].text == "KPX4721" and raw[0].matches_format
    assert best_first(raw), raw
    assert not best_first(raw[::-1])  # positive control: the check sees a wrong order
    assert len({c.text for c in raw}) == len(raw)  # each reading once
    calibrated = reader_us.read(crop)  # calibration changes the confidences, never the order
    assert reader_us.calibration is not None
    assert [c.text for c in calibrated] == [c.text for c in raw]
    assert [c.format_name for c in calibrated] == [c.format_name for c in raw]
    assert [c.confidence for c in calibrated] != [c.confidence for c in raw]
    assert calibrated[0].confidence == max(c.confidence for c in calibrated)  # the sure reading stays on top


def test_the_reader_weighs_formats_as_its_recogniser_was_fitted(reader_us, monkeypatch):
    shipped = load_calibrations()[reader_us.settings.engine_key].format_weight
    us, eu = region_formats("us"), region_formats("eu")
    assert reader_us.formats.unmatched_log_penalty == pytest.approx(shipped * us.unmatched_log_penalty)
    fit = Calibration((1.0,) + (0.0,) * (len(FEATURES) - 1), 0.0, format_weight=0.3)
    monkeypatch.setattr("ocr_worker.core.calibration_for", lambda key: fit)
    for calibrated in (True, False):  # raw confidences, the same formats
        reader = PlateReader(OcrSettings(region="eu", calibrated=calibrated))
        assert reader.formats.unmatched_log_penalty == pytest.approx(0.3 * eu.unmatched_log_penalty)
        assert reader.formats.length_log_penalty == eu.length_log_penalty  # length limits are facts
    chosen = PlateReader(OcrSettings(region="eu", calibrated=False, format_weight=0.5))  # as calibrate tries
    assert chosen.formats.unmatched_log_penalty == pytest.approx(0.5 * eu.unmatched_log_penalty)
    monkeypatch.setattr("ocr_worker.core.calibration_for", lambda key: None)
    assert PlateReader(OcrSettings(region="eu")).formats == eu  # no fit: templates count in full
    with pytest.raises(ConfigError, match="format weight"):
        PlateReader(OcrSettings(region="eu", format_weight=2.0))


def test_read_plates_reads_each_box_and_a_plate_without_crop_has_no_candidates(reader_us):
    frame = np.full((400, 900, 3), 90, np.uint8)
    frame[100:204, 50:258] = cv2.resize(draw_plate("GHT2093"), (208, 104), interpolation=cv2.INTER_AREA)
    frame[250:354, 600:808] = cv2.resize(draw_plate("7ABC284"), (208, 104), interpolation=cv2.INTER_AREA)
    detections = PlateDetections(
        np.array([[50, 100, 258, 204], [600, 250, 808, 354], [0, 0, 40, 20]], np.float32),
        np.array([0.9, 0.8, 0.3], np.float32),
    )
    boxes = list(detections.boxes())
    crops = [geometry.crop(frame, box, 0.08) for box, _ in boxes[:2]] + [None]  # the third: expired, say
    reads = reader_us.read_plates(crops, boxes)
    assert [r.text for r in reads] == ["GHT2093", "7ABC284", ""] and reads[2].candidates == ()
    assert reads[1].detection_confidence == pytest.approx(0.8) and reads[1].box_xyxy == boxes[1][0]
    with pytest.raises(InputError, match=r"one crop \(and edge flag\) per box"):
        reader_us.read_plates(crops[:2], boxes)
    with pytest.raises(InputError, match="2 flags for 3 boxes"):
        reader_us.read_plates(crops, boxes, [True, False])


@pytest.mark.parametrize("region", ["eu", "any"])
def test_a_country_sticker_is_read_but_not_trusted_as_a_plate(settings, region):
    """The oval sticker of a car's country (SK, CZ, PL) is found by the detector now and then, and read
    clearly: at 0.84-0.96 on the eu formats, whose plates are 4 to 8 long, it was a sure plate (and a
    sighting of its own); under `any` (no country's formats) at 0.98-1.00 while its plates could be 1 long
    (a review). A reading shorter than any of the region's plates is capped; a plate beside it keeps its
    confidence."""
    reader = build_reader(settings, region)
    crops = []
    for text in ("SK", "CZ", "PL"):
        sticker = np.full((60, 110, 3), 235, np.uint8)
        cv2.putText(sticker, text, (12, 45), cv2.FONT_HERSHEY_DUPLEX, 1.6, (20, 20, 20), 3)
        crops.append(sticker)
    crops.append(cv2.resize(draw_plate("RK896AO"), (208, 104), interpolation=cv2.INTER_AREA))
    *stickers, plate = reader.read_batch(crops)
    assert [candidates[0].text for candidates in stickers] == ["SK", "CZ", "PL"]
    assert all(c.confidence <= TOO_SHORT_MAX_CONFIDENCE for candidates in stickers for c in candidates)
    assert plate[0].text == "RK896AO" and plate[0].confidence > 0.85


def test_a_reading_too_short_to_be_the_plate_ranks_after_one_that_may_be(settings):
    """Capped to 0.2, B12 (at 0.88, eu plates are 4 to 8 long) stayed the best read before AB123 at 0.6."""
    reader = build_reader(settings, "eu", calibrated=False)
    readings = [Reading(PlateCandidate("B12", 0.88), 0.9), Reading(PlateCandidate("AB123", 0.6), 0.6),
                Reading(PlateCandidate("B1", 0.5), 0.5), Reading(PlateCandidate("AB128", 0.3), 0.3)]  # fmt: skip
    ranked = [(c.text, c.confidence) for c in reader.finish(readings, 60.0)]
    assert ranked == [("AB123", 0.6), ("AB128", 0.3), ("B12", TOO_SHORT_MAX_CONFIDENCE), ("B1", 0.2)]


def test_a_plate_at_the_frames_side_edge_is_read_but_not_trusted(reader_us):
    """The frame's right edge cuts a plate: what is inside may read as a whole plate (7AB), so its
    candidates keep their texts and order, their confidence capped; a whole plate beside it keeps its."""
    frame = np.full((300, 700, 3), 90, np.uint8)
    plate = cv2.resize(draw_plate("7ABC284"), (208, 104), interpolation=cv2.INTER_AREA)
    frame[100:204, 50:258] = plate
    frame[100:204, 600:700] = plate[:, :100]
    boxes = [((50.0, 100.0, 258.0, 204.0), 0.9), ((600.0, 100.0, 700.0, 204.0), 0.9)]
    edges = [geometry.at_side_edge(box, frame.shape[1]) for box, _ in boxes]
    assert edges == [False, True]
    crops = [geometry.crop(frame, box, 0.08) for box, _ in boxes]
    trusted, cut = reader_us.read_plates(crops, boxes, edges)
    plain = reader_us.read_plates(crops, boxes)
    assert trusted == plain[0] and trusted.text == "7ABC284" and trusted.confidence > SIDE_EDGE_MAX_CONFIDENCE
    assert plain[1].confidence > SIDE_EDGE_MAX_CONFIDENCE  # the part inside the frame, read sure of itself
    assert cut.candidates and [c.text for c in cut.candidates] == [c.text for c in plain[1].candidates]
    assert [c.confidence for c in cut.candidates] == [
        min(c.confidence, SIDE_EDGE_MAX_CONFIDENCE) for c in plain[1].candidates
    ]


@pytest.mark.parametrize(
    "crop",
    [
        np.zeros((0, 0, 3), np.uint8), None, np.zeros((5,), np.uint8),
        np.zeros((30, 90, 3), np.float32), np.zeros((30, 90, 3), np.uint16), np.zeros((30, 90, 2), np.uint8),
    ],
)  # fmt: skip
def test_bad_crops_are_input_errors(reader_us, crop):
    """A float or 16-bit crop failed deep in OpenCV with its own error (and took the batch's other plates
    with it): it is refused first, naming the crop."""
    with pytest.raises(InputError, match="plate crop 0 must be a non-empty 8-bit image"):
        reader_us.read(crop)


def test_a_crop_with_an_alpha_channel_reads_as_its_colours(reader_us):
    plate = cv2.resize(draw_plate("7ABC284"), (208, 104), interpolation=cv2.INTER_AREA)
    with_alpha = cv2.cvtColor(plate, cv2.COLOR_BGR2BGRA)
    assert reader_us.read(with_alpha) == reader_us.read(plate) and reader_us.read(plate)[0].text == "7ABC284"


def test_tiny_or_blank_crops_give_no_candidates(reader_us):
    assert reader_us.read(np.zeros((2, 2, 3), np.uint8)) == []
    assert reader_us.read(np.full((40, 80, 3), 255, np.uint8)) == []


def test_a_sliver_either_way_is_not_read():
    """A 65,000 x 4 crop was framed for the text detector to 84,500 x 19,504 pixels: 10 s and 5 GB. Read in
    a process of its own, whose peak memory no earlier test has raised."""
    import subprocess
    import sys

    script = """
import resource
import cv2
import numpy as np
from alpr.democlip import draw_plate
from ocr_worker.core import OcrSettings, PlateReader

reader = PlateReader(OcrSettings(region="us"))
plate = cv2.resize(draw_plate("7ABC284"), (208, 104), interpolation=cv2.INTER_AREA)
reader.read(plate)
before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tall, wide = np.full((65_000, 4, 3), 128, np.uint8), np.full((4, 7680, 3), 128, np.uint8)
reads = reader.read_batch([tall, wide, plate])
print([len(r) for r in reads], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    counts, grown_kb = run.stdout.strip().rsplit(" ", 1)
    assert counts.startswith("[0, 0, ") and not counts.startswith("[0, 0, 0]"), counts  # the plate is read
    assert int(grown_kb) < 500_000  # the peak grew < 500 MB (5 GB before)


def test_unknown_engine_or_region_is_a_config_error():
    with pytest.raises(ConfigError, match="OCR engine must be one of"):
        PlateReader(OcrSettings(engine="easyocr"))
    with pytest.raises(ConfigError, match="unknown plate region"):
        PlateReader(OcrSettings(region="mars"))


def test_default_engine_is_ppocr():
    assert Settings.load({}).ocr_engine == "ppocr"


def test_keeping_one_candidate_does_not_make_the_best_surer(datasets_dir):
    """The confidence weighs the best reading's margin over the next: cut to one candidate before the
    calibration, the best had no rival, and misreads rose over 0.85 (an audit's 8801824 for 8BOJ824:
    0.69 -> 0.977). The candidates are cut after it."""
    crops = [crop for crop, _ in real_crops(datasets_dir, 12)]
    one = PlateReader(OcrSettings(region="us", max_candidates=1)).read_batch(crops)
    five = PlateReader(OcrSettings(region="us", max_candidates=5)).read_batch(crops)
    assert all(len(a) <= 1 for a in one) and any(len(b) > 1 for b in five)
    assert [a[:1] for a in one] == [b[:1] for b in five]


@pytest.mark.parametrize("version", ["v4", "v6"])
def test_pp_ocr_reads_a_line_alike_alone_and_beside_a_wider_one(datasets_dir, version):
    """PP-OCR's recognisers read each line at its own width: padded to the widest of the batch, a line
    read differently beside a wider one (its read hung on which other plates shared the job)."""
    from ocr_worker.ppocr_engine import PpocrEngine

    engine = PpocrEngine(version=version)
    crops = [crop for crop, _ in real_crops(datasets_dir, 12)]
    wide = cv2.resize(crops[0], (crops[0].shape[1] * 4, crops[0].shape[0]))
    alone = [engine.recognize(crop) for crop in crops]
    beside = engine.recognize_batch([*crops, wide])[:-1]
    text = lambda reads: ["".join(c[0][0] for c in read) for read in reads]  # noqa: E731
    assert text(beside) == text(alone)
    top = [c[0][1] for read in beside for c in read]  # the same to the last bits a batch size may move
    assert top == pytest.approx([c[0][1] for read in alone for c in read], abs=1e-4)
