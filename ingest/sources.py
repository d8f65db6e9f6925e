"""Frame sources: a video file, a folder of images or a stream URL, opened with OpenCV and sampled
at a set rate. Bad input (missing path, corrupt video, empty folder, unreachable URL) raises
InputError with a one-line message; an unreadable image inside a folder is reported, not fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common import defaults
from common.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its index in the source, its time from the source's start, its pixels (BGR)."""

    index: int
    time_s: float
    image: np.ndarray


class FrameSource:
    """A source of sampled frames. `failures` lists what could not be read, one message each."""

    is_stream = False

    def __init__(self, uri: str, sample_fps: float) -> None:
        if sample_fps <= 0:
            raise InputError(f"sample rate must be positive, got {sample_fps}")
        self.uri = uri
        self.sample_fps = sample_fps
        self.failures: list[str] = []

    def frames(self) -> Iterator[SampledFrame]:
        raise NotImplementedError

    @property
    def expected_frames(self) -> int | None:
        """How many frames sampling will give, when known in advance."""
        return None


class ImageFolderSource(FrameSource):
    """Every image of a folder, in name order, as consecutive samples."""

    def __init__(self, uri: str, sample_fps: float) -> None:
        super().__init__(uri, sample_fps)
        self.paths = sorted(p for p in Path(uri).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise InputError(f"image folder {uri} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    @property
    def expected_frames(self) -> int:
        return len(self.paths)

    def frames(self) -> Iterator[SampledFrame]:
        for index, path in enumerate(self.paths):
            image = cv2.imread(str(path))
            if image is None:
                message = f"cannot decode image {path}"
                log.warning(message)
                self.failures.append(message)
                continue
            yield SampledFrame(index, index / self.sample_fps, image)


class VideoSource(FrameSource):
    """A video file or stream URL, sampled at `sample_fps` (every frame when the source is slower)."""

    def __init__(self, uri: str, sample_fps: float, timeout_ms: int = defaults.STREAM_OPEN_TIMEOUT_MS) -> None:
        super().__init__(uri, sample_fps)
        self.is_stream = uri.lower().startswith(STREAM_SCHEMES)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        self.capture = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        if not self.capture.isOpened():
            what = "cannot connect to stream" if self.is_stream else "cannot open video (corrupt or unsupported)"
            raise InputError(f"{what}: {uri}")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.source_fps = fps if 0 < fps <= 1000 else 0.0
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.is_stream else 0

    @property
    def expected_frames(self) -> int | None:
        if self.is_stream or not self.source_fps or self.frame_count <= 0:
            return None
        return int(np.ceil(self.frame_count * min(1.0, self.sample_fps / self.source_fps)))

    def frames(self) -> Iterator[SampledFrame]:
        started = time.monotonic()
        next_sample_s = 0.0
        index = 0
        produced = 0
        try:
            while self.capture.grab():
                time_s = (
                    index / self.source_fps if self.source_fps and not self.is_stream else time.monotonic() - started
                )
                if time_s + 1e-6 >= next_sample_s:
                    ok, image = self.capture.retrieve()
                    if ok and image is not None:
                        produced += 1
                        yield SampledFrame(index, time_s, image)
                    else:
                        self.failures.append(f"cannot decode frame {index} of {self.uri}")
                    next_sample_s += 1.0 / self.sample_fps
                    next_sample_s = max(next_sample_s, time_s)
                index += 1
        finally:
            self.capture.release()
        if produced == 0:
            raise InputError(f"no frame could be decoded from {self.uri} (corrupt or empty video)")
        if self.frame_count and index < self.frame_count - 1:
            message = f"video {self.uri} ended early at frame {index} of {self.frame_count} (truncated?)"
            log.warning(message)
            self.failures.append(message)


def open_source(uri: str, sample_fps: float = defaults.SAMPLE_FPS) -> FrameSource:
    """The right source for `uri`: a stream URL, an image folder or a video file."""
    if uri.lower().startswith(STREAM_SCHEMES):
        return VideoSource(uri, sample_fps)
    path = Path(uri)
    if not path.exists():
        raise InputError(f"source {uri} does not exist")
    if path.is_dir():
        return ImageFolderSource(uri, sample_fps)
    if path.stat().st_size == 0:
        raise InputError(f"video {uri} is empty")
    return VideoSource(uri, sample_fps)
