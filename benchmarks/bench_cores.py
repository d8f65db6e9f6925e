"""Speed of each core on this machine, measured side by side in one run: detector ms per frame
(ONNX Runtime in float and int8 vs torch, single and batched, on every core and on one; a 4K frame whole
and tiled), video decoding in the node's process against a process of its own (ingest/capture_process.py),
OCR ms per plate (PP-OCRv4, v6, the plate recogniser, Tesseract through its C API, and pytesseract, which
starts a process per call; the plate recogniser also on real photos' plates, ../shared/datasets), redactor
ms per frame, and frames/s of `alpr run` on the synthetic clip.

    .venv/bin/python benchmarks/bench_cores.py [--frames N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alpr.cli import quiet_opencv
from alpr.democlip import calibration_frames, make_clip
from alpr.standalone import Pipeline
from alpr.wiring import build_detector, build_reader
from common import geometry
from common.config import Settings
from common.errors import ConfigError
from common.plate_log import SqlitePlateLog
from common.sighting_log import SqliteSightingLog
from detector_worker.core import DetectorSettings, PlateDetector
from detector_worker.weights import install_int8, install_models
from ingest.capture_process import IsolatedCapture
from ingest.sources import open_source
from ocr_worker.core import OcrSettings, PlateReader
from ocr_worker.ppocr_engine import bundled_model_path, input_batch
from ocr_worker.tesseract_engine import binarized_line
from ocr_worker.text_lines import character_rows
from redactor_worker.core import redact

OCR_REPEAT = 10
"""Runs of each OCR measurement (a fraction of a second each): on a shared VM the best of three
varied by 40% between bench runs minutes apart (5.9-8.5 ms/plate), the best of ten by 9% (5.8-6.3)."""


def best_ms(work: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of `repeat` runs, in ms (the least disturbed by the rest of the machine)."""
    work()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "openalpr-endtoend"
"""The real photos (us, eu, br) whose plates the reader is also timed on, when present."""


def real_photo_crops(detector: PlateDetector, photos: int) -> None:
    """The plate reader on real photos' plates at the detector's boxes, batched as a job's crops: the
    clip's synthetic plates stand free, where a third of real ones go to the text detector as well."""
    for region in ("us", "eu", "br"):
        paths = sorted((DATASETS / region).glob("*.jpg"))[:photos]
        if not paths:
            print(f"  {region} photos: not measured (no photos in {DATASETS / region})")
            continue
        images = [image for image in (cv2.imread(str(p)) for p in paths) if image is not None]
        crops = [
            geometry.crop(image, box, 0.08)
            for image, found in zip(images, detector.detect(images), strict=True)
            for box, _ in found.boxes()
        ]
        reader = PlateReader(OcrSettings(engine="ppocr", region=region, model="plate"))
        ms = best_ms(lambda r=reader, c=crops: [r.read_batch(c[i : i + 8]) for i in range(0, len(c), 8)], 3)
        searched = sum(character_rows(crop)[1] is None for crop in crops)
        print(
            f"  ppocr plate on {len(crops)} plates of {len(images)} {region} photos: {ms / len(crops):5.2f} in batches"
            f" of 8 ({searched} of {len(crops)} through the text detector)"
        )


DETECTOR_ROUNDS = 5
"""Rounds of the side-by-side detector measurement: each round runs every backend, batch size and thread
count once, in turn, so a busy minute on a shared machine slows them all alike."""


def gelu_forms(lines: list[np.ndarray], rounds: int = 40) -> None:
    """The plate recogniser alone (batches of 8, one thread) with its Gelus in uint8, as shipped
    (alpr/ocr_int8.integer_gelu), against the same model with them in float (`float_gelu`), run in turn."""
    import onnx

    from alpr.ocr_int8 import float_gelu

    shipped = onnx.load(str(bundled_model_path("plate")))
    in_float = onnx.load(str(bundled_model_path("plate")))
    float_gelu(in_float)
    sessions = [cpu_session_of(model) for model in (shipped, in_float)]
    batches = [input_batch(lines[i : i + 8], 160) for i in range(0, len(lines), 8)]
    times: list[list[float]] = [[], []]
    for _ in range(rounds):
        for session, spent in zip(sessions, times, strict=True):
            start = time.perf_counter()
            for batch in batches:
                session.run(None, {"x": batch})
            spent.append(1000 * (time.perf_counter() - start) / len(lines))
    ratio = float(np.median(np.array(times[0]) / np.array(times[1])))
    print(f"  the recogniser alone, batches of 8: Gelus in uint8 {min(times[0]):5.2f}, in float {min(times[1]):5.2f}"
          f" ({ratio:.2f} of the time, the rounds' median)")  # fmt: skip


def cpu_session_of(model: Any) -> Any:
    """An ONNX Runtime session of an in-memory model on one thread, as the OCR pool runs it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def detector_ms(settings: Settings, frames: list[np.ndarray]) -> None:
    """Each backend at batch 1 and 4, on every core, and the ONNX ones on one core too (torch's thread count
    is the process's), interleaved (DETECTOR_ROUNDS), the best round of each; and the int8 model's speed-up
    over the float one, the median of the rounds' ratios."""
    runs = {
        (backend, batch, threads): PlateDetector(DetectorSettings(
            model_dir=settings.model_dir, backend=backend, imgsz=settings.detector_imgsz, batch_size=batch,
            threads=threads,
        ))
        for threads in (0, 1) for backend in ("onnx", "onnx-int8", "torch") for batch in (1, 4)
        if threads == 0 or backend != "torch"
    }  # fmt: skip
    for detector in runs.values():
        detector.detect(frames[:4])  # warm-up
    times: dict[tuple[str, int, int], list[float]] = {key: [] for key in runs}
    for _ in range(DETECTOR_ROUNDS):
        for key, detector in runs.items():
            start = time.perf_counter()
            detector.detect(frames)
            times[key].append(1000 * (time.perf_counter() - start) / len(frames))
    for (backend, batch, threads), ms in times.items():
        cores = "all cores" if threads == 0 else "1 core"
        line = f"  {backend:<9} batch {batch}, {cores:<9}: {min(ms):7.1f}"
        if backend == "onnx-int8":
            ratios = sorted(f / i for f, i in zip(times[("onnx", batch, threads)], ms, strict=True))
            line += f"  ({ratios[len(ratios) // 2]:.2f} times as fast as onnx, the rounds' median)"
        print(line)


def read_video(capture: cv2.VideoCapture | IsolatedCapture) -> int:
    """Grab every frame of an opened video and retrieve every other one, as a sampling reader does;
    the frames grabbed."""
    grabbed = 0
    while capture.grab():
        if grabbed % 2 == 0:
            capture.retrieve()
        grabbed += 1
    capture.release()
    return grabbed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=16, help="frames per detector measurement")
    parser.add_argument("--photos", type=int, default=40, help="real photos per region whose plates are read")
    args = parser.parse_args()
    quiet_opencv("ERROR")  # as `alpr` does: OpenCV's thread-safety WARN at every open said nothing measured
    settings = Settings.load()
    install_models(settings.model_dir)
    install_int8(settings.model_dir, calibration_frames)
    work = Path(tempfile.mkdtemp(prefix="alpr-bench-"))
    clip = work / "clip.mp4"
    truth = make_clip(clip)
    frames = [f.image for f in open_source(str(clip), 5.0).frames()][: args.frames]
    print(
        f"{len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, detector imgsz {settings.detector_imgsz}\n"
    )

    print("detector, ms per frame")
    detector_ms(settings, frames)
    four_k = [cv2.resize(frame, (3840, 2160)) for frame in frames[:4]]  # the clip's frames, upscaled
    for downscale, what in ((0.0, "whole frame only"), (settings.detector_max_downscale, "whole frame and tiles")):
        detector = PlateDetector(
            DetectorSettings(model_dir=settings.model_dir, imgsz=settings.detector_imgsz, max_downscale=downscale)
        )
        ms = best_ms(lambda d=detector: d.detect(four_k)) / len(four_k)
        print(f"  onnx   3840x2160, {what}: {ms:7.1f}")

    detector = build_detector(settings)
    crops = []
    for frame, found in zip(frames, detector.detect(frames), strict=False):
        crops += [geometry.crop(frame, box, 0.08) for box, _ in found.boxes()]
    print(f"\nOCR, ms per plate ({len(crops)} plate crops from the clip)")
    for engine, model in (("ppocr", "v4"), ("ppocr", "v6"), ("ppocr", "plate"), ("tesseract", "v4")):
        try:
            reader = PlateReader(OcrSettings(engine=engine, region="us", model=model))
        except ConfigError as error:
            print(f"  {engine} {model}: not measured ({error})")
            continue
        name = f"{engine} {model}" if engine == "ppocr" else engine
        one_by_one = best_ms(lambda r=reader: [r.read(c) for c in crops], OCR_REPEAT) / len(crops)
        batched = best_ms(
            lambda r=reader: [r.read_batch(crops[i : i + 8]) for i in range(0, len(crops), 8)], OCR_REPEAT
        )
        print(
            f"  {name:<11}: {one_by_one:7.2f} one by one, {batched / len(crops):7.2f} in batches of 8 (a job's crops)"
        )
    finder = reader.locator.finder  # the clip's plates stand free; a plate in a frame takes this path too
    ms = best_ms(lambda: [finder.plate_text(crops[i : i + 8]) for i in range(0, len(crops), 8)], OCR_REPEAT)
    ms /= len(crops)
    print(f"  + text detector, where no free-standing row is found: {ms:5.2f} more")
    gelu_forms(reader.locator.locate(crops))
    real_photo_crops(detector, args.photos)
    sliver = np.random.default_rng(0).integers(0, 255, (4, 7680, 3), dtype=np.uint8)
    ms = best_ms(lambda: reader.read(sliver), 1)
    print(f"  a 4 x 7680 sliver, no plate's shape (any engine: not read): {ms:.2f} ms (read: 1.7 s, an audit's)")
    try:
        import pytesseract

        binaries = [binarized_line(line) for line in reader.locator.locate(crops)]
        ms = best_ms(lambda: [pytesseract.image_to_string(b, config="--psm 7") for b in binaries], 1) / len(crops)
        print(f"  pytesseract: {ms:7.2f}  (a tesseract process per call: the original design)")
    except Exception as error:  # noqa: BLE001 - the comparison is optional
        print(f"  pytesseract: not measured ({error})")

    boxes = [[box for box, _ in d.boxes()] for d in detector.detect(frames)]
    ms = best_ms(lambda: [redact(f, b) for f, b in zip(frames, boxes, strict=False)]) / len(frames)
    print(f"\nredactor (blur), ms per frame: {ms:.2f}")
    huge = np.random.default_rng(0).integers(0, 255, (2160, 3840, 3), dtype=np.uint8)
    ms = best_ms(lambda: redact(huge, [(10.0, 10.0, 3830.0, 2150.0)]), 1)
    print(f"  one box filling a 4K frame (a close-up): {ms:.1f} ms (the old blur: ~20 s, an audit's figure)")

    clip_frames = read_video(cv2.VideoCapture(str(clip)))
    openers: dict[str, Callable[[str], cv2.VideoCapture | IsolatedCapture]] = {
        "in the node's process": cv2.VideoCapture, "in a process of its own": IsolatedCapture,
    }  # fmt: skip
    decode_ms = {name: best_ms(lambda o=opener: read_video(o(str(clip))), 5) / clip_frames  # type: ignore[misc]
                 for name, opener in openers.items()}  # fmt: skip
    print("\nvideo decoding, ms per frame (every frame grabbed, every other handed over: the clip's 1280x720)")
    for name, ms in decode_ms.items():
        print(f"  {name:<24}: {ms:6.2f}")
    ratio = decode_ms["in a process of its own"] / decode_ms["in the node's process"]
    print(f"  ratio: {ratio:.2f} (the bounded reader's cost, opening included)")

    log, sighting_log = SqlitePlateLog(work / "reads.sqlite"), SqliteSightingLog(work / "reads.sqlite")
    pipeline = Pipeline(detector, build_reader(settings, "us"), log, sighting_log)
    summary = pipeline.run(open_source(str(clip), settings.sample_fps), "bench", work / "out")
    log.close()
    sighting_log.close()
    seen = [s.plate for s in summary.trusted_sightings(settings.ocr_min_confidence)]
    found = sum(p in seen for p in truth["plates"])  # type: ignore[union-attr]
    print(
        f"\nalpr run on the synthetic clip: {summary.frames} frames in {summary.seconds:.1f} s = "
        f"{summary.frames_per_second:.1f} frames/s; known plates read: {found} of {len(truth['plates'])}"
    )  # type: ignore[arg-type]


if __name__ == "__main__":
    cv2.setNumThreads(0)
    np.set_printoptions(precision=2)
    main()
