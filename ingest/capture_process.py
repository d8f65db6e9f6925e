"""A video's or a camera stream's capture in a process of its own (`IsolatedCapture`): what FFmpeg does
with a source's bytes stays with that source.

FFmpeg, which decodes every camera, bounds neither the length of a stream part a camera declares nor
the size of a frame decoded mid-stream: one hostile camera took an ingest node to 2 GB, three to
3.1 GB, and a decoder's crash on a malformed stream ended the whole node with every camera on it. Each
capture now runs in a child process (`serve`) that opens the source with the node's FFmpeg options
(ingest/ffmpeg_open.py) and answers the reader's calls (open, grab, retrieve, get, release) over a pipe,
in JSON, leaving each retrieved frame's pixels in a memory both map (`FrameBuffer`):

- its memory is bounded: past `memory_mb` of resident memory (defaults.CAPTURE_MEMORY_MB) the reader
  stops it, and its address space is capped at start so that no single allocation of gigabytes (a
  declared part's length) succeeds;
- a crash (a signal), an exhausted bound, or a child that stops answering (FFmpeg hung past its own
  read timeout) ends that capture alone: `grab()` returns False, as at a stream's end, and `ended_because`
  says why; a stream is then reopened by its keeper (ingest/reconnect.py) after its backoff;
- each child sets FFmpeg's options in its own environment, so no open waits for another's.

Each child is a fresh interpreter (`python -m ingest.capture_process`, about 0.1 s to start with cv2):
it is told its source over its pipe, never on its command line (which `ps` shows every local user, a
camera's password with it); it ignores SIGINT (a terminal's Ctrl-C is the reader's to handle) and ends
when the reader's pipe closes, the reader gone or killed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import cv2
import numpy as np

from common import defaults

OPEN_PROPERTIES = (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_COUNT)
"""What a reader asks of an opened capture: sent once with the open's answer, not asked each time."""

MAX_ANSWER_BYTES = 4096
"""Longest answer a child gives but a frame's pixels (a JSON list of a few numbers)."""

POLL_S = 0.25
"""How often a reader waiting for its child's answer looks at the child's memory."""

CHILD_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2"}
"""Set for each child: glibc reserves 64 MB of address space per arena, up to one per decoding thread (8
per core), which on a many-core host would spend the child's capped address space on nothing."""

ADDRESS_SPACE_FACTOR = 3
"""A child's address space may grow by this many times its memory bound from its start: room for thread
stacks and allocators' reserved (unused) space, none for an allocation of gigabytes."""


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (bytes), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def virtual_bytes() -> int:
    """This process's address space (bytes)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def serve(connection: Connection, frames: FrameBuffer) -> None:
    """The child: open the source the reader names first and answer its calls until it releases the
    capture or goes. Every message is JSON, a frame's pixels left in `frames`: a child that a hostile
    stream took over gets no say in what the reader runs (a pickle would give it that)."""
    from ingest.ffmpeg_open import open_capture  # sets FFmpeg's options in the child's own environment

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        uri, params, memory_bytes = json.loads(connection.recv_bytes())
    except (EOFError, OSError):
        return
    limit = virtual_bytes() + ADDRESS_SPACE_FACTOR * memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    capture = open_capture(uri, params)
    try:
        opened = capture.isOpened()
        send(connection, [opened, [capture.get(prop) for prop in OPEN_PROPERTIES] if opened else []])
        while answer_call(connection, capture, frames):
            pass
    except (EOFError, OSError, ValueError):  # the reader is gone (or sent what no reader of ours sends)
        pass
    finally:
        capture.release()


def send(connection: Connection, message: object) -> None:
    connection.send_bytes(json.dumps(message).encode())


def answer_call(connection: Connection, capture: cv2.VideoCapture, frames: FrameBuffer) -> bool:
    """Answer the reader's next call; False once it releases the capture."""
    call, argument = json.loads(connection.recv_bytes())
    if call == "grab":
        grabbed = capture.grab()
        send(connection, [grabbed, capture.get(cv2.CAP_PROP_POS_MSEC) if grabbed else -1.0])
    elif call == "retrieve":
        retrieved, image = capture.retrieve()
        if not retrieved or image is None or image.dtype != np.uint8:
            send(connection, None)
        else:
            frames.write(np.ascontiguousarray(image))
            send(connection, list(image.shape))
    elif call == "get":
        send(connection, capture.get(int(argument)))
    else:
        return False
    return True


class FrameBuffer:
    """The memory a child leaves each retrieved frame's pixels in for its reader (a memfd both map): a
    frame handed over a socket cost 2.9 ms at 1280x720 against 0.5 to decode it in the node's process.
    The reader seals it against shrinking, so a child cannot pull pages from under a copy (a SIGBUS
    in the node); it only grows, by the child, to the largest frame yet."""

    def __init__(self, fd: int) -> None:
        self.fd, self.mapped = fd, 0
        self.mapping: mmap.mmap | None = None

    def write(self, image: np.ndarray) -> None:
        """The child: leave `image`'s bytes at the buffer's start, growing it as needed."""
        if image.nbytes > os.fstat(self.fd).st_size:
            os.ftruncate(self.fd, image.nbytes)
        self._map(image.nbytes, mmap.PROT_READ | mmap.PROT_WRITE)
        assert self.mapping is not None
        self.mapping[: image.nbytes] = image.reshape(-1).data

    def read(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The reader: a copy of the frame of `shape` the child left, or None when the buffer is smaller."""
        nbytes = int(np.prod(shape))
        if os.fstat(self.fd).st_size < nbytes:
            return None
        self._map(nbytes, mmap.PROT_READ)
        return np.frombuffer(self.mapping, np.uint8, count=nbytes).reshape(shape).copy()  # type: ignore[arg-type]

    def _map(self, nbytes: int, prot: int) -> None:
        if self.mapped < nbytes:
            if self.mapping is not None:
                self.mapping.close()
            self.mapped = os.fstat(self.fd).st_size
            self.mapping = mmap.mmap(self.fd, self.mapped, prot=prot)

    def close(self) -> None:
        if self.mapping is not None:
            self.mapping.close()
            self.mapping = None
        os.close(self.fd)


def frame_buffer_fd() -> int:
    """A new, empty memfd for a child's frames, sealed against shrinking (`FrameBuffer`)."""
    fd = os.memfd_create("alpr-capture-frames", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd


class IsolatedCapture:
    """cv2.VideoCapture's calls that ingest makes (isOpened, get, grab, retrieve, read, release), answered
    by a child process that holds the capture (the module's docstring). A call the child does not answer
    within `wait_s` (FFmpeg hung past its timeouts), a child gone (a crash) or grown past `memory_mb`
    ends the capture: it is released and reads as closed from then on, `ended_because` saying why."""

    def __init__(
        self, uri: str, params: Sequence[int] = (), memory_mb: int = defaults.CAPTURE_MEMORY_MB,
        wait_s: float = defaults.CAPTURE_WAIT_S,
    ) -> None:  # fmt: skip
        self.memory_bytes, self.wait_s = memory_mb * 1024 * 1024, wait_s
        self.memory_mb = memory_mb
        self.ended_because: str | None = None
        """Why the capture ended before its source did (a crash, the memory bound, no answer), or None."""
        self._position_ms = -1.0
        ours, theirs = socket.socketpair()
        self._frames = FrameBuffer(frame_buffer_fd())
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(self._frames.fd)],
                pass_fds=[theirs.fileno(), self._frames.fd], stdin=subprocess.DEVNULL,
                env={**os.environ, **CHILD_ENVIRONMENT},
            )  # fmt: skip
        self._connection = Connection(ours.detach())
        self._call_unopened(uri, list(params))
        answer = self._answer()
        opened, values = answer if answer is not None else (False, [])
        self._properties = dict(zip(OPEN_PROPERTIES, map(float, values), strict=False))
        self._open = bool(opened)
        if not self._open:
            self.release()

    def __del__(self) -> None:  # a capture dropped unreleased (its reader's error): its child ends with it
        with contextlib.suppress(Exception):
            self.release()

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoCapture's name)
        return self._open

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self._position_ms
        if prop in self._properties or not self._open:
            return float(self._properties.get(prop, 0.0))
        value = self._call("get", prop)
        return float(value) if value is not None else 0.0

    def grab(self) -> bool:
        answer = self._call("grab")
        if answer is None:
            return False
        grabbed, position_ms = answer
        self._position_ms = float(position_ms)
        return bool(grabbed)

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        shape = self._call("retrieve")
        if shape is None:
            return False, None
        if not (
            isinstance(shape, list) and len(shape) in (2, 3) and all(isinstance(n, int) and n > 0 for n in shape)
            and shape[0] * shape[1] <= defaults.MAX_FRAME_PIXELS * 4 and (len(shape) == 2 or shape[2] in (1, 3, 4))
        ):  # fmt: skip
            self._end("its reader sent a frame no capture gives and was stopped")
            return False, None
        image = self._frames.read(tuple(shape))
        if image is None:
            self._end("its reader sent a frame larger than it left and was stopped")
            return False, None
        return True, image

    def read(self) -> tuple[bool, np.ndarray | None]:
        return self.retrieve() if self.grab() else (False, None)

    def release(self) -> None:
        """Close the capture and end its child (a child stuck in FFmpeg is killed after a second)."""
        self._open = False
        if self._process.poll() is None:
            try:
                self._connection.send_bytes(json.dumps(["release", None]).encode())
                self._process.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop_child()
        self._connection.close()
        if self._frames.fd >= 0:
            self._frames.close()
            self._frames.fd = -1

    def _call_unopened(self, uri: str, params: list[int]) -> None:
        try:
            self._connection.send_bytes(json.dumps([uri, params, self.memory_bytes]).encode())
        except OSError:
            self._end(self._death())

    def _call(self, call: str, argument: Any = None) -> Any:
        """Send a call and return the child's answer; None where the capture is closed or has ended."""
        if not self._open:
            return None
        try:
            self._connection.send_bytes(json.dumps([call, argument]).encode())
        except OSError:
            self._end(self._death())
            return None
        return self._answer()

    def _answer(self) -> Any:
        if self._wait() is None:
            return None
        try:
            return json.loads(self._connection.recv_bytes(MAX_ANSWER_BYTES))
        except (EOFError, OSError, ValueError):  # gone, or an answer no child of ours gives
            self._end(self._death())
            return None

    def _wait(self) -> bool | None:
        """Wait for the child's next message, minding its memory and `wait_s`: True once one is there,
        None when the capture was ended meanwhile."""
        deadline = time.monotonic() + self.wait_s
        while True:
            ready = self._connection.poll(POLL_S)
            resident = resident_bytes(self._process.pid)
            if resident is not None and resident > self.memory_bytes:
                self._end(f"its reader went past its memory bound of {self.memory_mb} MB and was stopped")
                return None
            if ready:
                return True
            if self._process.poll() is not None:
                self._end(self._death())
                return None
            if time.monotonic() > deadline:
                self._end(f"its reader did not answer within {self.wait_s:.0f} s and was stopped")
                return None

    def _death(self) -> str:
        try:
            code: int | None = self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"its reader process ended on signal {name} (FFmpeg crashed?)"
        return f"its reader process ended (exit code {code})"

    def _end(self, reason: str) -> None:
        """End the capture for `reason` (the first reason is kept)."""
        if self.ended_because is None:
            self.ended_because = reason
        self._open = False
        self._stop_child()

    def _stop_child(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])), FrameBuffer(int(sys.argv[2])))
