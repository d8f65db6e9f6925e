"""Crafted images the tests share: a PNG whose header alone tells its size, an ordinary progressive JPEG,
and a scan bomb made of one (one of its scans repeated many times: each is a pass of the decoder over
every pixel, as a review's was)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces `width` x `height` but whose pixel data is a few bytes: only its
    header can tell its size (a decoder fails on it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def progressive_jpeg(image: np.ndarray) -> bytes:
    """`image` as OpenCV writes a progressive JPEG (10 scans in colour)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    return data.tobytes()


def scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan of a JPEG: its SOS segment and the entropy-coded data after it."""
    found, at = [], 2
    while at < len(data) and data[at + 1] != 0xD9:
        end = at + 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
        if data[at + 1] == 0xDA:  # entropy-coded data runs to the next marker that is no stuffing nor RST
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            found.append((at, end))
        at = end
    return found


def scan_bomb(image: np.ndarray, copies: int) -> bytes:
    """A progressive JPEG of `image` with its smallest scan after the first repeated `copies` more times
    (as a review's was): OpenCV decodes it, every scan over every pixel; libjpeg-turbo in simplejpeg's
    strict mode does so too, then refuses it (an inconsistent progression)."""
    data = progressive_jpeg(image)
    start, end = min(scans(data)[1:], key=lambda scan: scan[1] - scan[0])
    return data[:end] + data[start:end] * copies + data[end:]
