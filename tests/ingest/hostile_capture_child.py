"""A capture child gone wrong, for tests/ingest/test_capture_process.py: started in place of
ingest/capture_child.py with the same arguments, it answers its reader as a child a hostile stream took
over might (HOSTILE_MODE in its environment): half a line and silence, JSON nested without end, answers
of the wrong types, a line without end, or a frame larger than it left. In the PRINTING modes it runs
the real child (its output set up as the real one's), whose FFmpeg open prints, each with the camera's
URL or password: an assertion's line, then abort() (FFmpeg's av_assert0); an exception, its traceback; a
line of 16 KiB, its password across the 16 KiB mark, another, another camera's URL across it, one of a
megabyte, then a short one."""

from __future__ import annotations

import os
import socket
import sys
import time
from urllib.parse import urlsplit

PRINTING = ("print-and-abort", "traceback", "long-lines")
"""The modes that run the real child with an FFmpeg open that prints."""


def main(socket_fd: int) -> None:
    sock = socket.socket(fileno=socket_fd)
    reader = sock.makefile("rb")
    reader.readline()  # the open call
    mode = os.environ["HOSTILE_MODE"]
    if mode == "half-line":
        sock.sendall(b"[tr")
    elif mode == "deep":
        sock.sendall(b"[" * 100_000 + b"\n")
    elif mode == "wrong-types":
        sock.sendall(b'["yes", {"a": 1}]\n')
    elif mode == "failed":
        sock.sendall(b'{"error": "MemoryError: \\u001b[31mred"}\n')
    elif mode == "endless-line":
        sock.sendall(b"1" * 1_000_000)
    elif mode == "bigger-frame":
        sock.sendall(b"[true, [1280.0, 720.0, 25.0, 0.0]]\n")
        reader.readline()  # grab
        sock.sendall(b"[true, 0.0]\n")
        reader.readline()  # retrieve
        sock.sendall(b"[720, 1280, 3]\n")  # and no pixels left
    time.sleep(60)


def printing_open(uri: str, params: list[int], rtsp_transport: str) -> object:
    """In place of ingest.ffmpeg_open.open_capture: print as HOSTILE_MODE says; a capture never opened."""
    import cv2

    mode = os.environ["HOSTILE_MODE"]
    if mode == "print-and-abort":
        os.write(2, f"Assertion n >= 0 failed at libavcodec/h264_slice.c:123 opening {uri}\n".encode())
        os.abort()
    if mode == "traceback":
        raise RuntimeError(f"could not open {uri}")
    password = (urlsplit(uri).password or "").encode()
    os.write(2, b"x" * (16 * 1024 - 11) + b" tried " + password + b": 401\n")
    os.write(2, b"z" * (16 * 1024 - 12) + b" rtsp://root:otherpass@10.0.0.6/s1\n")  # another camera's
    os.write(1, b"y" * 1_000_000 + b"\n")
    os.write(2, b"after the long lines\n")
    return cv2.VideoCapture()


def real_child_printing(arguments: list[str]) -> None:
    import ingest.ffmpeg_open
    from ingest import capture_child

    ingest.ffmpeg_open.open_capture = printing_open  # type: ignore[assignment]
    capture_child.main(arguments)


if __name__ == "__main__":
    if os.environ["HOSTILE_MODE"] in PRINTING:
        real_child_printing(sys.argv[1:])
    else:
        main(int(sys.argv[1]))
