"""A Matroska writer for tests: MJPEG frames at the times given, each in a cluster of its own, so a test
can make the videos real recorders write (a 10-minute gap, a frame held for seconds, a change of rate,
timestamps going back where two recordings were joined) without an encoder that would even them out."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def _size(length: int) -> bytes:
    return b"\x01" + length.to_bytes(7, "big")  # an 8-byte EBML size


def element(element_id: int, payload: bytes) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + _size(len(payload)) + payload


def uint(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def write_mjpeg_mkv(path: Path, frames: Sequence[np.ndarray], times_s: Sequence[float], fps: float) -> Path:
    """`frames` (BGR) at `times_s` (from 0, millisecond steps) in an MKV stating `fps` as its rate."""
    height, width = frames[0].shape[:2]
    header = element(0x1A45DFA3, uint(0x4286, 1) + uint(0x42F7, 1) + uint(0x42F2, 4) + uint(0x42F3, 8)
                     + element(0x4282, b"matroska") + uint(0x4287, 4) + uint(0x4285, 2))  # fmt: skip
    apps = element(0x4D80, b"alpr-tests") + element(0x5741, b"alpr-tests")  # muxing and writing application
    duration = element(0x4489, struct.pack(">d", 1000 * (times_s[-1] + 1 / fps)))  # milliseconds
    info = element(0x1549A966, uint(0x2AD7B1, 1_000_000) + apps + duration)  # timestamps in milliseconds
    video = element(0xE0, uint(0xB0, width) + uint(0xBA, height))
    track = element(0xAE, uint(0xD7, 1) + uint(0x73C5, 1) + uint(0x83, 1) + element(0x86, b"V_MJPEG")
                    + uint(0x23E383, round(1e9 / fps)) + video)  # fmt: skip
    clusters = b""
    for frame, time_s in zip(frames, times_s, strict=True):
        ok, jpeg = cv2.imencode(".jpg", frame)
        assert ok
        block = element(0xA3, b"\x81" + struct.pack(">hB", 0, 0x80) + jpeg.tobytes())
        clusters += element(0x1F43B675, uint(0xE7, round(time_s * 1000)) + block)
    path.write_bytes(header + element(0x18538067, info + element(0x1654AE6B, track) + clusters))
    return path
