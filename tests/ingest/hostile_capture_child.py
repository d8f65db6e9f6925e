"""A capture child gone wrong, for tests/ingest/test_capture_process.py: started in place of
ingest/capture_child.py with the same arguments, it answers its reader as a child a hostile stream took
over might (HOSTILE_MODE in its environment): half a line and silence, JSON nested without end, answers
of the wrong types, a line without end, or a frame larger than it left."""

from __future__ import annotations

import os
import socket
import sys
import time


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


if __name__ == "__main__":
    main(int(sys.argv[1]))
