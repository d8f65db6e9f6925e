"""Small helpers the tests share: dataset ground truth, demo-clip frames, free ports, `alpr` processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from alpr.evaluation import Sample, iou, load_samples


def scene_samples(datasets_dir: Path, region: str, count: int) -> list[Sample]:
    samples, _ = load_samples(datasets_dir / "openalpr-endtoend" / region)
    return samples[:count]


def clip_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index = {}, 0
    while len(frames) < len(indices):
        ok, frame = capture.read()
        if not ok:
            break
        if index in indices:
            frames[index] = frame
        index += 1
    capture.release()
    return frames


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alpr_process(env: dict[str, str], args: list[str], log: Path, metrics_port: int | None = None) -> subprocess.Popen:
    env = dict(env)
    if metrics_port:
        env["ALPR_METRICS_PORT"] = str(metrics_port)
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "alpr.cli", *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def write_cameras(path: Path, cameras: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"cameras": cameras}))
    return path


__all__ = ["alpr_process", "clip_frames", "free_port", "iou", "scene_samples", "write_cameras"]
