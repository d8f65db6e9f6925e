"""A fragmented-MP4 writer for tests: MJPEG frames (sample entry `jpeg`) in an init segment with no
samples (`empty_moov`, `mvex`) and one fragment (moof + mdat) per frame, each dated by its `tfdt`: what
go2rtc's /api/stream.mp4 and NVRs' restreams send, a live camera's stream that never ends, made without an
encoder. FFmpeg states a frame count for such a stream (a review: 30), though it is live."""

from __future__ import annotations

import struct

import cv2
import numpy as np

TIMESCALE = 1000
"""The track's time units per second (milliseconds)."""

MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
"""The identity transformation matrix of mvhd and tkhd."""


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def init_segment(width: int, height: int) -> bytes:
    """ftyp and a moov of one MJPEG video track with no samples, its fragments announced (mvex/trex)."""
    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso5mp41")
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">4I", 0, 0, TIMESCALE, 0) + struct.pack(">IH10x", 0x10000, 0x100)
                    + MATRIX + bytes(24) + struct.pack(">I", 2))  # fmt: skip
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">5I", 0, 0, 1, 0, 0) + bytes(8) + struct.pack(">4H", 0, 0, 0, 0)
                    + MATRIX + struct.pack(">2I", width << 16, height << 16))  # fmt: skip
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">4I2H", 0, 0, TIMESCALE, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, bytes(4) + b"vide" + bytes(12) + b"VideoHandler\x00")
    jpeg = box(b"jpeg", bytes(6) + struct.pack(">H", 1) + bytes(16) + struct.pack(">2H2I", width, height, 0x480000,
               0x480000) + bytes(4) + struct.pack(">H", 1) + bytes(32) + struct.pack(">Hh", 0x18, -1))  # fmt: skip
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1) + jpeg) + full_box(b"stts", 0, 0, bytes(4))
               + full_box(b"stsc", 0, 0, bytes(4)) + full_box(b"stsz", 0, 0, bytes(8))
               + full_box(b"stco", 0, 0, bytes(4)))  # fmt: skip
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1) + full_box(b"url ", 0, 1, b"")))
    minf = box(b"minf", full_box(b"vmhd", 0, 1, bytes(8)) + dinf + stbl)
    trak = box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + minf))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">5I", 1, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd + trak + mvex)


def fragment(sequence: int, decode_ms: int, duration_ms: int, image: np.ndarray) -> bytes:
    """One frame (BGR, JPEG-encoded) as a fragment: moof (its time, `decode_ms`) and its mdat."""
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()

    def moof(data_offset: int) -> bytes:
        tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1))  # default-base-is-moof
        tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_ms))
        trun = full_box(b"trun", 0, 0x301, struct.pack(">Ii2I", 1, data_offset, duration_ms, len(jpeg)))
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)) + box(b"traf", tfhd + tfdt + trun))

    return moof(len(moof(0)) + 8) + box(b"mdat", jpeg)


def frame_image(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A frame that differs from the one before (its number on a changing grey)."""
    image = np.full((height, width, 3), (40 + 9 * index) % 220, np.uint8)
    cv2.putText(image, str(index), (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return image
