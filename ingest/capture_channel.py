"""What a capture's child process (ingest/capture_child.py) and its reader (ingest/capture_process.py)
share: their messages, one JSON value a line over a socket (`Channel`), and the memory a frame's pixels
are left in (`FrameBuffer`). Nothing the child sends is unpickled or read without a bound: a child a
hostile stream took over can neither run code in the node nor make it allocate or wait without end."""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import socket
from typing import Any

import numpy as np

MAX_LINE_BYTES = 65_536
"""Longest message either side sends (a camera's URL; a child's answers are a few numbers)."""


class MalformedMessageError(ValueError):
    """A message no side of ours sends: too long, not JSON, or nested without end."""


class Channel:
    """JSON values, one a line, over a connected socket. `receive` takes what the socket has (call it
    when it is readable) and `next_message` gives a whole line's value once one is in: the reader waits
    between them with its own deadline, so a child that sends half a line holds no thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def send(self, message: object) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> None:
        """Take what the socket has (it is readable); EOFError when its other end closed."""
        data = self.sock.recv(MAX_LINE_BYTES)
        if not data:
            raise EOFError("the other end closed")
        self.buffer += data

    def next_message(self) -> tuple[bool, Any]:
        """(True, the next whole line's value), or (False, None) while no whole line is in."""
        end = self.buffer.find(b"\n")
        if end < 0:
            if len(self.buffer) > MAX_LINE_BYTES:
                raise MalformedMessageError(f"a message longer than {MAX_LINE_BYTES} bytes")
            return False, None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        try:
            return True, json.loads(line)
        except (ValueError, RecursionError) as error:
            raise MalformedMessageError(f"not a message of ours ({type(error).__name__})") from None

    def wait_message(self) -> Any:
        """The next message, blocking (the child's side: its reader's calls)."""
        while True:
            whole, message = self.next_message()
            if whole:
                return message
            self.receive()


class FrameBuffer:
    """The memory a child leaves each retrieved frame's pixels in for its reader (a memfd both map): a
    frame handed over a socket cost 2.9 ms at 1280x720 against 0.5 to decode it in the node's process.
    The reader seals it against shrinking before the child starts, so a child cannot pull pages from
    under a copy (a SIGBUS in the node); it only grows, by the child, to the largest frame yet."""

    def __init__(self, fd: int) -> None:
        self.fd, self.mapped = fd, 0
        self.mapping: mmap.mmap | None = None

    @classmethod
    def new(cls) -> FrameBuffer:
        """An empty buffer, sealed against shrinking."""
        fd = os.memfd_create("alpr-capture-frames", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        return cls(fd)

    def write(self, image: np.ndarray) -> None:
        """The child: leave `image`'s bytes at the buffer's start, growing it as needed."""
        if image.nbytes > os.fstat(self.fd).st_size:
            os.ftruncate(self.fd, image.nbytes)
        mapping = self._map(image.nbytes, mmap.PROT_READ | mmap.PROT_WRITE)
        mapping[: image.nbytes] = image.reshape(-1).data

    def read(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The reader: a copy of the frame of `shape` (uint8) the child left; None when the buffer holds
        fewer bytes."""
        nbytes = int(np.prod(shape))
        if os.fstat(self.fd).st_size < nbytes:
            return None
        mapping = self._map(nbytes, mmap.PROT_READ)
        return np.frombuffer(mapping, np.uint8, count=nbytes).reshape(shape).copy()  # type: ignore[arg-type]

    def _map(self, nbytes: int, prot: int) -> mmap.mmap:
        if self.mapping is None or self.mapped < nbytes:
            if self.mapping is not None:
                self.mapping.close()
            self.mapped = os.fstat(self.fd).st_size
            self.mapping = mmap.mmap(self.fd, self.mapped, prot=prot)
        return self.mapping

    def close(self) -> None:
        if self.mapping is not None:
            self.mapping.close()
            self.mapping = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
