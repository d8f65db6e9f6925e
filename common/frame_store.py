"""The frame store: JPEG bytes of sampled frames in Redis under `alpr:frame:<frame_id>`, each with a
TTL so raw frames never outlive it. Jobs carry the keys, never the pixels."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import redis
import simplejpeg

from common import defaults
from common.errors import InputError

KEY_PREFIX = "alpr:frame:"
"""Prefix of every frame key in Redis."""


def frame_key(frame_id: str) -> str:
    return KEY_PREFIX + frame_id


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("frame could not be JPEG-encoded")
    return data.tobytes()


def pixels_problem(width: int, height: int, max_pixels: int) -> str | None:
    """Why a `width` x `height` frame is refused (more than `max_pixels`), or None: the one rule that
    ingest applies before a frame is sampled and the workers before a stored frame is decoded."""
    if width * height <= max_pixels:
        return None
    return f"{width}x{height} pixels, more than the limit of {max_pixels}"


class PixelBudgetError(InputError):
    """A job's frames or crops together declare more pixels than it may decode (MAX_JOB_PIXELS)."""


class PixelBudget:
    """The pixels one job may still decode (MAX_JOB_PIXELS), taken by each frame's header before it is
    decoded: many frames each within MAX_FRAME_PIXELS could together still exhaust a worker's memory."""

    def __init__(self, pixels: int = defaults.MAX_JOB_PIXELS) -> None:
        self.left = pixels

    def take(self, pixels: int, key: str) -> None:
        if pixels > self.left:
            raise PixelBudgetError(f"frame {key}: the job's frames exceed {defaults.MAX_JOB_PIXELS} pixels together")
        self.left -= pixels


def decode_jpeg(data: bytes, key: str, budget: PixelBudget | None = None) -> np.ndarray:
    """BGR pixels of stored JPEG bytes, through libjpeg-turbo's SIMD decoder (simplejpeg), several
    times faster than OpenCV's imdecode — it runs twice per frame in the chain. The header's size is
    checked first (against MAX_FRAME_PIXELS, then taken from the job's `budget`): a few kilobytes of
    JPEG can declare gigabytes of pixels, and a worker decodes a whole job's frames at once."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        if problem := pixels_problem(width, height, defaults.MAX_FRAME_PIXELS):
            raise InputError(f"frame {key} is {problem}")
        if budget is not None:
            budget.take(width * height, key)
        image: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="BGR")
    except ValueError:
        raise InputError(f"frame {key} is not a decodable JPEG") from None
    return image


class FrameStore:
    """Puts and gets frames in one round trip per batch."""

    def __init__(self, connection: redis.Redis, ttl_s: int) -> None:
        self.redis = connection
        self.ttl_s = ttl_s

    def put_many(self, frames: Sequence[tuple[str, bytes]]) -> None:
        """Store (key, JPEG bytes) pairs, each expiring after the TTL."""
        pipe = self.redis.pipeline(transaction=False)
        for key, data in frames:
            pipe.set(key, data, ex=self.ttl_s)
        pipe.execute()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray | None]:
        """Decoded frames by key; None where the frame has expired or was never stored."""
        return {key: None if data is None else decode_jpeg(data, key) for key, data in self.get_jpegs(keys).items()}

    def get_jpegs(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """The stored JPEG bytes by key, undecoded; None where the frame has expired."""
        values: list[bytes | None] = self.redis.mget(list(keys)) if keys else []  # type: ignore[assignment]
        return dict(zip(keys, values, strict=True))

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self.redis.delete(*keys)
