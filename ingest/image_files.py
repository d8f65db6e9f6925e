"""Reading one image of a folder camera: a regular file only (a FIFO named `*.jpg` would block the
camera for ever, a device be acted on), bounded in size, and its width and height read from the
file's header before any pixel is decoded, so that a small file that decodes to gigabytes (a PNG of
one colour 16,000 px square: 250 KB on disk, 732 MiB decoded) is refused rather than decoded."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from common.frame_store import jpeg_scans_problem, pixels_problem
from common.text_files import NotRegularFileError, os_reason, read_regular_bytes

FrameProblem = Literal["undecodable", "too_large"]
"""Why a sampled frame has no pixels: it cannot be read or decoded, or it has more than the limit."""

MAX_BYTES_PER_PIXEL = 4
"""The most an image file holds per pixel (uncompressed 8-bit RGBA): a larger file is no frame within the limit."""

METADATA_BYTES = 1 << 20
"""Room for headers and metadata (EXIF, a thumbnail) on top of the pixels."""


class UnreadableFrameError(Exception):
    """A frame whose pixels cannot be had: its `problem`, and a `detail` that names no path."""

    def __init__(self, problem: FrameProblem, detail: str) -> None:
        super().__init__(detail)
        self.problem, self.detail = problem, detail


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """The image at `path` decoded (BGR), or UnreadableFrameError: `too_large` when its header (or the
    file's size) says it has more than `max_pixels`, before decoding it; `undecodable` when it is not
    a regular file, cannot be read, is a JPEG of more scans than MAX_JPEG_SCANS (`jpeg_scans_problem`)
    or is not an image OpenCV decodes."""
    data = read_regular_file(path, max_pixels * MAX_BYTES_PER_PIXEL + METADATA_BYTES)
    width, height = header_size(data)
    if problem := pixels_problem(width, height, max_pixels):
        raise UnreadableFrameError("too_large", problem)
    if problem := jpeg_scans_problem(data):  # each scan a pass over every pixel: minutes of the camera's thread
        raise UnreadableFrameError("undecodable", problem)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableFrameError("undecodable", "undecodable image")
    if problem := pixels_problem(image.shape[1], image.shape[0], max_pixels):  # a header that lied
        raise UnreadableFrameError("too_large", problem)
    return image


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image file's header, nothing decoded (Pillow opens lazily)."""
    try:
        with warnings.catch_warnings():  # sizes past Pillow's warning are refused by the caller's own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError:  # past twice Pillow's warning size (its warning is silenced above)
        raise UnreadableFrameError("too_large", "more pixels than Pillow's decompression-bomb limit") from None
    except Exception:  # a parser fed arbitrary bytes fails in many ways: not an image we can size
        raise UnreadableFrameError("undecodable", "undecodable image") from None


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path` (links followed); UnreadableFrameError when it is
    something else, cannot be read (`undecodable`), or holds more than `max_bytes` (`too_large`)."""
    try:
        size = os.stat(path).st_size
        if size > max_bytes:  # refused before reading it
            raise UnreadableFrameError("too_large", f"{size} bytes, more than {max_bytes}")
        data = read_regular_bytes(path, max_bytes)
    except NotRegularFileError:
        raise UnreadableFrameError("undecodable", "not a regular file") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        raise UnreadableFrameError("undecodable", f"cannot read: {os_reason(error)}") from None
    if len(data) > max_bytes:  # it grew since
        raise UnreadableFrameError("too_large", f"more than {max_bytes} bytes")
    return data
