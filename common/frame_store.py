"""The frame store: JPEG bytes of sampled frames in Redis under `alpr:frame:<frame_id>`, each with a
TTL so raw frames never outlive it. Jobs carry the keys, never the pixels."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import cv2
import numpy as np
import redis
import simplejpeg

from common import defaults
from common.backoff import Backoff
from common.credentials import mask_url
from common.errors import InputError

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "alpr:frame:"
"""Prefix of every frame key in Redis."""


def frame_key(frame_id: str) -> str:
    return KEY_PREFIX + frame_id


STORED_DIGEST_CHARS = 16
"""Hex characters of a frame's JPEG digest its store key ends with (`stored_frame_key`)."""


def stored_frame_key(frame_id: str, digest: str) -> str:
    """The key an ingest node stores a frame's JPEG under: its id and the start of its bytes' SHA-256. Footage
    read again while its frames were still in the chain (a restarted node, another node taking the camera
    over) numbers them alike, and where the bytes differ (another JPEG quality, another build of the codec)
    the new ones had replaced the first under the same key: each first job's frames were then logged
    `corrupt` (NOT_AS_STORED, the sign of tampering), 120 of 120 in a review. Each set now stays its own."""
    return frame_key(f"{frame_id}:{digest[:STORED_DIGEST_CHARS]}")


STORE_KEY_CHARS = 200
"""Most characters of a frame-store key after KEY_PREFIX (common/jobs.py's STORE_KEY_PATTERN)."""

CROP_VERSION_DIGITS = 16
"""Most digits of the number a crop key carries for its frame's stored key (`crop_key`)."""


def crop_key(frame_id: str, frame_store_key: str, plate_index: int) -> str:
    """The key a detector stores a frame's plate crop under: `<frame_key(frame_id)>:plate<digits>`, the form
    the OCR and redaction workers of every release accept (common/jobs.py's DetectedFrame; the release before
    the frame's key carried its digest accepts nothing else). Of a frame stored under its id alone (by an
    ingest node of that release) the digits are the plate's index; of one stored under its id and digest
    (`stored_frame_key`), a number made of that key (its SHA-256 in decimal, CROP_VERSION_DIGITS at most,
    fewer where a long frame id leaves less room: 9 at the longest such a key allows), then the plate's
    index, so that two versions of one frame (read again with other bytes) crop apart. Keyed
    `<stored key>:plate<N>`, a detector's crops were refused by every OCR and redaction worker of the
    release before: after a rollback, or with detectors upgraded first, every job (31 + 31, a review) and
    every frame's reads (120 of 120) were lost."""
    prefix = frame_key(f"{frame_id}:plate")
    if frame_store_key == frame_key(frame_id):
        return f"{prefix}{plate_index}"
    index_chars = len(str(defaults.DETECTOR_MAX_PLATES_PER_FRAME - 1))
    digits = max(1, min(CROP_VERSION_DIGITS, STORE_KEY_CHARS - (len(prefix) - len(KEY_PREFIX)) - index_chars))
    number = int.from_bytes(hashlib.sha256(frame_store_key.encode()).digest(), "big") % 10**digits
    return f"{prefix}{number:0{digits}d}{plate_index}"


NOT_AS_STORED = "not the frame stored at sampling"
"""A frame's record detail when the bytes under its key are not those its ingest node stored."""

CROP_NOT_AS_STORED = "not the crop stored at detection"
"""Why a plate crop is not read when the bytes under its key are not those its detector stored."""


def jpeg_digest(data: bytes) -> str:
    """The SHA-256 a frame's JPEG is stored with (FrameRef.digest)."""
    return hashlib.sha256(data).hexdigest()


def as_stored(digest: str | None, data: bytes) -> bool:
    """Whether `data` is the JPEG stored under a key with `digest`: a frame's by its ingest node, a plate
    crop's by its detector (no digest: one of an earlier version, taken as it is). A frame swapped in
    the store between detection and redaction (one with plates in place of one without) was kept with
    its plates sharp; a crop swapped before OCR was logged as the frame's plate."""
    return digest is None or hmac.compare_digest(jpeg_digest(data), digest)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("frame could not be JPEG-encoded")
    return data.tobytes()


def pixels_problem(width: int, height: int, max_pixels: int) -> str | None:
    """Why a `width` x `height` frame is refused (more than `max_pixels`, or a side longer than a JPEG
    holds: MAX_FRAME_SIDE), or None: the one rule that ingest applies before a frame is sampled (`alpr
    run` too) and the workers before a stored frame is decoded."""
    if width * height > max_pixels:
        return f"{width}x{height} pixels, more than the limit of {max_pixels}"
    if max(width, height) > defaults.MAX_FRAME_SIDE:
        return f"{width}x{height} pixels, a side longer than a JPEG holds ({defaults.MAX_FRAME_SIDE})"
    return None


JPEG_START, JPEG_SCAN = b"\xff\xd8", b"\xff\xda"
"""A JPEG's first two bytes (SOI), and the marker that starts each of its scans (SOS)."""


def jpeg_scans_problem(data: bytes) -> str | None:
    """Why JPEG `data` is refused before it is decoded (more than MAX_JPEG_SCANS scans), or None; None for
    data that is no JPEG. Its SOS markers are counted: byte stuffing keeps 0xFF 0xDA out of the entropy-coded
    data, and the few it may find in metadata (an EXIF thumbnail's own scans) are far below the limit."""
    if not data.startswith(JPEG_START):
        return None
    scans = data.count(JPEG_SCAN)
    if scans <= defaults.MAX_JPEG_SCANS:
        return None
    return f"JPEG with {scans} scans, more than the limit of {defaults.MAX_JPEG_SCANS}"


class PixelBudgetError(InputError):
    """A job's frames or crops together declare more pixels than it may decode (MAX_JOB_PIXELS)."""


class PixelBudget:
    """The pixels one job may still decode (MAX_JOB_PIXELS), taken by each frame's header before it is
    decoded: many frames each within MAX_FRAME_PIXELS could together still exhaust a worker's memory."""

    def __init__(self, pixels: int = defaults.MAX_JOB_PIXELS) -> None:
        self.budget = self.left = pixels

    def take(self, pixels: int, key: str) -> None:
        """Take a frame's `pixels` from what is left, or raise PixelBudgetError (nothing taken)."""
        if pixels > self.left:
            raise PixelBudgetError(f"frame {key}: the job's frames exceed {self.budget} pixels together")
        self.left -= pixels


def decode_jpeg(data: bytes, key: str, budget: PixelBudget | None = None) -> np.ndarray:
    """BGR pixels of stored JPEG bytes, through libjpeg-turbo's SIMD decoder (simplejpeg), several
    times faster than OpenCV's imdecode — it runs twice per frame in the chain. The header's size is
    checked first (against MAX_FRAME_PIXELS, then taken from the job's `budget`): a few kilobytes of
    JPEG can declare gigabytes of pixels, and a worker decodes a whole job's frames at once; and its
    scans are counted (`jpeg_scans_problem`): a few hundred kilobytes of them took a worker 20 s."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        if problem := pixels_problem(width, height, defaults.MAX_FRAME_PIXELS):
            raise InputError(f"frame {key} is {problem}")
        if problem := jpeg_scans_problem(data):  # each scan is a pass over every pixel: a scan bomb
            raise InputError(f"frame {key} is a {problem}")
        if budget is not None:
            budget.take(width * height, key)
        image: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="BGR")
    except ValueError:
        raise InputError(f"frame {key} is not a decodable JPEG") from None
    return image


UnreadReason = Literal["too_large", "over_job_byte_budget"]
"""Why FrameStore.get_within_bounds left a key's bytes unread: more than MAX_FRAME_BYTES, or past the job's
MAX_JOB_FRAME_BYTES (a skip reason: common/jobs.py, StageSkipReason)."""


EMPTY_VALUE = "an empty value under its key, no JPEG"
"""Why a frame or crop present in the store is not read: its key holds an empty string."""

OTHER_TYPE = "a value of another Redis type than a string under its key, no JPEG"
"""Why a frame or crop present in the store is not read: its key holds a list, a hash, a set..."""


@dataclass(frozen=True)
class BoundedRead:
    """What FrameStore.get_within_bounds read: the bytes by key (a key missing: expired, or left unread),
    the keys over MAX_FRAME_BYTES, those past the job's MAX_JOB_FRAME_BYTES, each key's TTL left, and the
    keys present but holding no JPEG with why (EMPTY_VALUE, OTHER_TYPE: corrupt, not expired)."""

    jpegs: dict[str, bytes | None]
    too_large: set[str]
    over_budget: set[str]
    ttls: dict[str, float | None]
    corrupt: dict[str, str] = field(default_factory=dict)

    def unread_reason(self, key: str) -> UnreadReason | None:
        """Why the key's bytes were not read, None when they were."""
        return "too_large" if key in self.too_large else "over_job_byte_budget" if key in self.over_budget else None


def store_reserve_bytes(maxmemory: int) -> int:
    """The room an ingest node leaves free in a frame store of `maxmemory` bytes for the detectors' plate
    crops (FRAME_STORE_RESERVE_SHARE of it, FRAME_STORE_RESERVE_MIN_BYTES at least, half of it at most);
    0 where it has no maxmemory (0): nothing is held back."""
    if maxmemory <= 0:
        return 0
    share = int(maxmemory * defaults.FRAME_STORE_RESERVE_SHARE)
    return min(maxmemory // 2, max(share, defaults.FRAME_STORE_RESERVE_MIN_BYTES))


@dataclass(frozen=True)
class StoreMemory:
    """A frame store's memory as its Redis reports it (INFO memory): bytes used, its maxmemory (0: none)."""

    used_bytes: int
    max_bytes: int

    @property
    def reserve_bytes(self) -> int:
        return store_reserve_bytes(self.max_bytes)

    def within_reserve(self, added_bytes: int = 0) -> bool:
        """Whether the store, `added_bytes` fuller, is within the crops' reserve (no maxmemory: never)."""
        return self.max_bytes > 0 and self.used_bytes + added_bytes > self.max_bytes - self.reserve_bytes


def store_memory(connection: redis.Redis) -> StoreMemory:
    """The frame store's memory, read from its Redis in one INFO round trip (RedisError where it refuses)."""
    info = connection.info("memory")
    return StoreMemory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))


class FrameStore:
    """Puts and gets frames in one round trip per batch. With `patience_s`, as the workers have it, an
    unreachable Redis (restarting, failing over) is tried again with backoff for that long, as the
    Postgres writes are, before the call raises (every call is idempotent); without, it raises at once
    (ingest counts such frames unread)."""

    def __init__(self, connection: redis.Redis, ttl_s: int, patience_s: float = 0.0) -> None:
        self.redis = connection
        self.ttl_s = ttl_s
        self.patience_s = patience_s

    def put_many(self, frames: Sequence[tuple[str, bytes]]) -> None:
        """Store (key, JPEG bytes) pairs, each expiring after the TTL."""

        def put() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for key, data in frames:
                pipe.set(key, data, ex=self.ttl_s)
            pipe.execute()

        self._through_outage(put)

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray | None]:
        """Decoded frames by key; None where the frame has expired or was never stored."""
        return {key: None if data is None else decode_jpeg(data, key) for key, data in self.get_jpegs(keys).items()}

    def get_jpegs(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """The stored JPEG bytes by key, undecoded; None where the frame has expired."""
        if not keys:
            return {}
        values: list[bytes | None] = self._through_outage(lambda: self.redis.mget(list(keys)))  # type: ignore[arg-type, return-value]
        return dict(zip(keys, values, strict=True))

    def sizes_and_ttls(self, keys: Sequence[str]) -> tuple[dict[str, int], dict[str, float | None]]:
        """The bytes each key holds (0 where expired) and, in the same round trip, the seconds each has
        left to live (None where expired or without a TTL): a frame's age on Redis's own clock. Read
        before the bytes themselves, so that a job does not make a worker read more than it may."""
        sizes, ttls, _ = self.probe(keys)
        return sizes, ttls

    def probe(self, keys: Sequence[str]) -> tuple[dict[str, int], dict[str, float | None], dict[str, str]]:
        """`sizes_and_ttls`, and the keys present that hold no JPEG, with why (EMPTY_VALUE, OTHER_TYPE):
        counted 0 bytes, they were recorded `expired`, hiding a planted or truncated value."""
        if not keys:
            return {}, {}, {}

        def fetch() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.strlen(key)
                pipe.pttl(key)
            return pipe.execute(raise_on_error=False)  # a key of another type: that frame alone

        replies = self._through_outage(fetch)
        if errors := [r for r in replies if isinstance(r, Exception) and not str(r).startswith("WRONGTYPE")]:
            raise errors[0]  # Redis loading, or away: not the frames' doing
        sizes = [int(n) if isinstance(n, int) else 0 for n in replies[0::2]]
        ttls = [ms / 1000 if isinstance(ms, int) and ms >= 0 else None for ms in replies[1::2]]
        corrupt = {
            key: OTHER_TYPE if isinstance(length, Exception) else EMPTY_VALUE  # WRONGTYPE: the others raised
            for key, length, size, ms in zip(keys, replies[0::2], sizes, replies[1::2], strict=True)
            if size == 0 and ms != -2  # PTTL -2: no such key (expired); -1: one without a TTL
        }
        return dict(zip(keys, sizes, strict=True)), dict(zip(keys, ttls, strict=True)), corrupt

    def get_within_bounds(self, keys: Sequence[str]) -> BoundedRead:
        """The stored bytes of each key (once, however often named) that fits the bounds — at most
        MAX_FRAME_BYTES each, MAX_JOB_FRAME_BYTES together, in the order given — with what was left
        unread and why, and each key's remaining TTL. Sizes are read first: a job naming padded values,
        or one key many times, had a worker read gigabytes (and Redis build the reply)."""
        sizes, ttls, corrupt = self.probe(list(dict.fromkeys(keys)))
        within, too_large, over_budget, left = [], set(), set(), defaults.MAX_JOB_FRAME_BYTES
        for key, size in sizes.items():
            if size > defaults.MAX_FRAME_BYTES:
                too_large.add(key)
            elif size > left:
                over_budget.add(key)
            elif size:
                within.append(key)
                left -= size
        return BoundedRead(self.get_jpegs(within), too_large, over_budget, ttls, corrupt)

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._through_outage(lambda: self.redis.delete(*keys))

    def _through_outage(self, call: Callable[[], T]) -> T:
        """`call`, tried again with backoff while Redis cannot be reached, is a read-only replica (a
        failover under way) or is full (maxmemory with noeviction), for up to `patience_s`; then its error
        is raised. Ingest nodes stop storing frames short of the maxmemory (`store_reserve_bytes`), so the
        detectors' crops have room and the redactors, deleting the frames they are done with, make more;
        a store full all the same (another writer, a reserve too small) frees room only as frames expire."""
        deadline = time.monotonic() + self.patience_s
        backoff = Backoff(*defaults.DB_OUTAGE_BACKOFF_S)
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
                    redis.exceptions.OutOfMemoryError) as error:  # fmt: skip
                wait = backoff.next_delay()
                if time.monotonic() + wait > deadline:
                    raise
                log.warning("frame store unavailable (%s); retrying in %.1f s", mask_url(str(error)), wait)
                time.sleep(wait)
