"""The detector on a CUDA device, measured side by side in one run: frames/s and the p99 latency of one
`detect` call per batch size, FP32 and FP16 (torch backend; the ONNX backend too where ONNX Runtime has
its CUDA provider), against the ONNX backend on 2 CPU threads, how far FP16's boxes lie from FP32's, and
(--processes) what N detector processes sharing the device do together. The frames are the demo clip's
(1280x720, no data needed; and scaled to 4K, which the detector also searches in tiles) and, with
--photos DIR, real photos. Without a CUDA device it says so and measures nothing."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alpr.democlip import make_clip
from alpr.eval_scoring import iou
from common.config import Settings
from detector_worker.core import DetectorSettings, PlateDetector
from detector_worker.weights import install_models

SURE = 0.25
"""Boxes at or above this confidence are compared between FP16 and FP32 (the reader's boxes)."""


def clip_frames(count: int) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        make_clip(path)
        capture, frames = cv2.VideoCapture(str(path)), list[np.ndarray]()
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    return frames


def timed(detector: PlateDetector, frames: list[np.ndarray], batch: int, rounds: int) -> dict[str, float]:
    """frames/s over `rounds` passes of `frames` in calls of `batch`, and the p50/p99 ms of one call."""
    calls = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    for chunk in calls[:3]:
        detector.detect(chunk)  # warm-up: CUDA kernels chosen, memory taken
    latencies, started = [], time.perf_counter()
    for _ in range(rounds):
        for chunk in calls:
            begun = time.perf_counter()
            detector.detect(chunk)
            latencies.append((time.perf_counter() - begun) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "frames_per_s": round(rounds * len(calls) * batch / elapsed, 1),
        "ms_per_frame": round(elapsed * 1000 / (rounds * len(calls) * batch), 2),
        "p50_ms_per_call": round(statistics.median(latencies), 2),
        "p99_ms_per_call": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
    }


def agreement(reference: PlateDetector, other: PlateDetector, frames: list[np.ndarray]) -> dict[str, float]:
    """Sure boxes of `reference` that `other` finds (IoU >= 0.9), the worst IoU, and boxes only one has."""
    matched = total = extra = 0
    worst = 1.0
    for ref, oth in zip(reference.detect(frames), other.detect(frames), strict=True):
        a, b = ref.xyxy[ref.confidence >= SURE], oth.xyxy[oth.confidence >= SURE]
        total += len(a)
        for box in a:  # each sure box's best overlap among the other's
            best = float(max((iou(tuple(box), tuple(found)) for found in b), default=0.0))
            matched += best >= 0.9
            worst = min(worst, best)
        extra += max(0, len(b) - len(a))
    return {"sure_boxes": total, "matched_iou_0_9": matched, "worst_iou": round(worst, 4), "extra_boxes": extra}


def detect_for(
    frames: list[np.ndarray], device: str, batch: int, threads: int, seconds: float, start: Any, results: Any
) -> None:
    """One detector process of `shared_device`: warm, say so, wait for the start, then detect for `seconds`."""
    settings = Settings.load()
    chosen = DetectorSettings(model_dir=settings.model_dir, backend="torch", device=device,
                              imgsz=settings.detector_imgsz, batch_size=batch, threads=threads)  # fmt: skip
    detector = PlateDetector(chosen)
    for first in range(0, 3 * batch, batch):
        detector.detect(frames[first % len(frames) :][:batch])
    results.put("ready")
    start.wait()
    done, ends, first = 0, time.perf_counter() + seconds, 0
    while time.perf_counter() < ends:
        chunk = [frames[(first + k) % len(frames)] for k in range(batch)]
        detector.detect(chunk)
        done, first = done + batch, first + batch
    results.put(done)


def shared_device(frames: list[np.ndarray], device: str, batch: int, counts: list[int], seconds: float) -> None:
    """Frames/s of N detector processes (as N detect workers) running on one device together, the
    machine's cores shared out among them (ALPR_DETECTOR_THREADS)."""
    import multiprocessing
    import os

    context = multiprocessing.get_context("spawn")
    for count in counts:
        start, results = context.Event(), context.Queue()
        threads = max(1, (os.cpu_count() or 1) // count)
        processes = [context.Process(target=detect_for, args=(frames, device, batch, threads, seconds, start, results))
                     for _ in range(count)]  # fmt: skip
        for process in processes:
            process.start()
        assert all(results.get(timeout=300) == "ready" for _ in processes)
        start.set()
        done = [int(results.get(timeout=seconds + 300)) for _ in processes]
        for process in processes:
            process.join()
        print(json.dumps({"processes": count, "threads_each": threads, "device": device, "batch": batch,
                          "seconds": seconds, "frames_per_s": round(sum(done) / seconds, 1),
                          "per_process": [round(d / seconds, 1) for d in done]}), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=64, help="frames per measurement (a multiple of the batches)")
    parser.add_argument("--batches", default="1,8,32,64", help="batch sizes to measure")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the frames per measurement")
    parser.add_argument("--device", default="cuda:0", help="cuda:N; cpu runs the script's steps as a dry run")
    parser.add_argument("--processes", default="", help="also: N detector processes sharing the device, e.g. 1,2,4")
    parser.add_argument("--shared-only", action="store_true", help="measure only the processes sharing the device")
    parser.add_argument("--photos", type=Path, help="also measure on these photos (a folder of .jpg)")
    args = parser.parse_args()
    import onnxruntime as ort
    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run this where `torch.cuda.is_available()`)")
        return
    settings = Settings.load()
    install_models(settings.model_dir)
    sets = {"clip 1280x720": clip_frames(args.frames)}
    sets["clip at 3840x2160 (whole frame and 6 tiles)"] = [
        cv2.resize(f, (3840, 2160)) for f in sets["clip 1280x720"][:16]
    ]
    if args.photos:
        photos = [cv2.imread(str(p)) for p in sorted(args.photos.glob("*.jpg"))[: args.frames]]
        sets["photos"] = [p for p in photos if p is not None]
    gpu = torch.cuda.get_device_name(args.device) if args.device != "cpu" else "none (a dry run on the CPU)"
    print(json.dumps({"gpu": gpu, "torch": torch.__version__, "onnxruntime": ort.__version__,
                      "providers": ort.get_available_providers(), "imgsz": settings.detector_imgsz}))  # fmt: skip
    batches = [int(b) for b in args.batches.split(",")]
    if args.processes:
        counts = [int(n) for n in args.processes.split(",")]
        shared_device(sets["clip 1280x720"][:16], args.device, max(batches), counts, 10.0)
    if args.shared_only:
        return
    runs = [("torch", args.device, False), ("torch", args.device, True)]
    if args.device == "cpu":
        runs = [("torch", "cpu", False)]
    elif "CUDAExecutionProvider" in ort.get_available_providers():
        runs.append(("onnx", args.device, False))
    for name, frames in sets.items():
        shape = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
        cpu = PlateDetector(DetectorSettings(model_dir=settings.model_dir, imgsz=settings.detector_imgsz, threads=2))
        baseline = timed(cpu, frames[:16], 1, 1)
        print(json.dumps({"set": name, "frames": shape, "backend": "onnx", "device": "cpu (2 threads)", "batch": 1,
                          **baseline}))  # fmt: skip
        detectors = {}
        for backend, device, half in runs:
            for batch in (b for b in batches if b <= len(frames)):
                detector = PlateDetector(
                    DetectorSettings(model_dir=settings.model_dir, backend=backend, device=device, half=half,
                                     imgsz=settings.detector_imgsz, batch_size=batch)
                )  # fmt: skip
                detectors[(backend, half)] = detector
                result = timed(detector, frames, batch, args.rounds)
                ratio = round(result["frames_per_s"] / baseline["frames_per_s"], 1)
                print(json.dumps({"set": name, "frames": shape, "backend": backend, "device": device,
                                  "fp16": half, "batch": batch, **result, "x_cpu": ratio}), flush=True)  # fmt: skip
        if ("torch", True) in detectors:
            fp16 = agreement(detectors[("torch", False)], detectors[("torch", True)], frames)
            print(json.dumps({"set": name, "fp16_against_fp32": fp16}))
        print(
            json.dumps(
                {"set": name, "torch_fp32_against_onnx_cpu": agreement(cpu, detectors[("torch", False)], frames)}
            )
        )


if __name__ == "__main__":
    main()
