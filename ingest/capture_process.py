"""A video's or a camera stream's capture in a process of its own (`IsolatedCapture`): what FFmpeg does
with a source's bytes stays with that source.

FFmpeg, which decodes every camera, bounds neither the length of a stream part a camera declares nor
the size of a frame decoded mid-stream: one hostile camera took an ingest node to 2 GB, three to
3.1 GB, and a decoder's crash on a malformed stream ended the whole node with every camera on it. Each
capture now runs in a child process (ingest/capture_child.py) that opens the source with the node's
FFmpeg options and answers the reader's calls (open, grab, retrieve, get, release) over a socket, one
JSON value a line, leaving each retrieved frame's pixels in a memory both map
(ingest/capture_channel.py):

- its memory is bounded: past `memory_mb` of resident memory (ALPR_CAPTURE_MEMORY_MB) the reader stops
  it, and the child caps its own address space at start, so that no single allocation of gigabytes (a
  declared part's length) succeeds; its decoder runs CAPTURE_DECODER_THREADS threads, not one a core
  (an 8K H.264 stream took 532 MB with 2, past 1 GB with 8);
- a crash (a signal), an exhausted bound, an answer no child of ours gives, or a call left unanswered
  for `wait_s` (FFmpeg hung past its own timeouts; half a message counts as none) ends that capture
  alone: `grab()` returns False, as at a stream's end, and `ended_because` says why; a stream is then
  reopened by its keeper (ingest/reconnect.py) after its backoff;
- each child sets FFmpeg's options in its own environment, so no open waits for another's;
- what a child prints (FFmpeg's, OpenCV's and Python's lines, on its stdout or stderr) comes to its
  reader through a pipe that a thread of the reader's reads to its end, and reaches the node's stderr a
  line at a time scrubbed of the source's credentials (ingest/capture_output.py): a child's last lines
  (an assertion's before an abort, a traceback) reach it however the child ends, and a node whose
  stderr is closed still opens its cameras, the lines dropped.

Each child is a fresh interpreter (about 0.1 s to start with cv2) started with `-P` and this package's
own folder first on its path: a folder the node was started in that holds an `ingest.py` runs nothing
in it. It is told its source over the socket, never on its command line (which `ps` shows every local
user, a camera's password with it)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common import defaults
from ingest.capture_channel import Channel, FrameBuffer, MalformedMessageError
from ingest.capture_child import MAX_ERROR_CHARS, OPEN_PROPERTIES
from ingest.capture_output import FFMPEG_LOG_LEVEL_VARIABLE, child_levels, node_stderr, relay_output

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
"""Signals that stop a reader rather than crash it: systemd's stop (KillMode=control-group), Docker's and a
terminal's Ctrl-C reach every process of the node's group, the readers with it: each camera's end said
"FFmpeg crashed?" on an ordinary stop (a review)."""

POLL_S = 0.25
"""How often a reader waiting for its child's answer looks at the child's memory."""

CHILD_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2"}
"""Set for each child: glibc reserves 64 MB of address space per arena, up to one per decoding thread (8
per core), which would spend the child's capped address space on nothing."""

OUTPUT_JOIN_S = 1.0
"""How long a capture ending waits for its child's last lines to reach the node's stderr (the child is
gone by then: its pipe ends at once)."""

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
"""The folder holding this package: first on a child's path, so it runs the node's own code."""


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (bytes), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def child_environment() -> dict[str, str]:
    """The node's environment, CHILD_ENVIRONMENT, this package first on the path and FFmpeg's log level
    held to its info lines, at least its warnings (a camera refusing the credentials: the lines past the
    operator's level are read, not shown; ingest/capture_output.py)."""
    path = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    environment = {**os.environ, **CHILD_ENVIRONMENT, "PYTHONPATH": path}
    environment[FFMPEG_LOG_LEVEL_VARIABLE] = child_levels(environment)[0]
    return environment


def is_frame_shape(shape: object) -> bool:
    """Whether `shape` is one OpenCV gives a frame: rows, columns (and 1, 3 or 4 channels), within the
    pixel limit."""
    return (
        isinstance(shape, list) and len(shape) in (2, 3) and all(type(n) is int and n > 0 for n in shape)
        and shape[0] * shape[1] <= defaults.MAX_FRAME_PIXELS and (len(shape) == 2 or shape[2] in (1, 3, 4))
    )  # fmt: skip


def is_number(value: object) -> bool:
    return type(value) in (int, float)


class IsolatedCapture:
    """cv2.VideoCapture's calls that ingest makes (isOpened, get, grab, retrieve, read, release), answered
    by a child process that holds the capture (the module's docstring). A call the child does not answer
    within `wait_s`, an answer no child of ours gives, a child gone (a crash) or grown past `memory_mb`
    ends the capture: it is released and reads as closed from then on, `ended_because` saying why. An RTSP
    camera's packets come over its RTSP connection, or as RTP over UDP where `rtsp_transport` is "udp" (the
    operator's choice: ingest/ffmpeg_open.py)."""

    child_module = "ingest.capture_child"
    """What the child runs (a test runs a hostile one in its place)."""

    def __init__(
        self, uri: str, params: Sequence[int] = (), memory_mb: int = defaults.CAPTURE_MEMORY_MB,
        wait_s: float = defaults.CAPTURE_WAIT_S, rtsp_transport: str = "tcp", label: str | None = None,
    ) -> None:  # fmt: skip
        self.memory_mb, self.memory_bytes, self.wait_s = memory_mb, memory_mb * 1024 * 1024, wait_s
        self.ended_because: str | None = None
        """Why the capture ended before its source did (a crash, the memory bound, no answer), or None."""
        self.refused: str | None = None
        """How the source refused the credentials, as FFmpeg said ("401 Unauthorized"), or None."""
        self._open, self._position_ms, self._properties = False, -1.0, dict[int, float]()
        params = list(params)
        if cv2.CAP_PROP_N_THREADS not in params[::2]:
            params += [cv2.CAP_PROP_N_THREADS, defaults.CAPTURE_DECODER_THREADS]
        ours, theirs = socket.socketpair()
        self._frames = FrameBuffer.new()
        output = None
        try:
            with theirs:
                output = os.pipe()  # the child's stdout and stderr, read here
                self._process = subprocess.Popen(
                    [sys.executable, "-P", "-m", self.child_module, str(theirs.fileno()), str(self._frames.fd),
                     str(os.getpid())],
                    pass_fds=[theirs.fileno(), self._frames.fd], stdin=subprocess.DEVNULL, stdout=output[1],
                    stderr=output[1], env=child_environment(),
                )  # fmt: skip
        except BaseException:  # no child (out of processes or descriptors): nothing of it left open
            ours.close()
            self._frames.close()
            for fd in output or ():
                os.close(fd)
            raise
        os.close(output[1])
        self._output = threading.Thread(
            target=relay_output, args=(output[0], uri, node_stderr(), child_levels(dict(os.environ))[1],
                                       self._refused, label), name=f"capture output {self._process.pid}",
            daemon=True,
        )  # fmt: skip
        try:
            self._output.start()
        except BaseException:  # no thread to read it (out of threads): the child ended, nothing left open
            self._process.kill()
            self._process.wait()
            os.close(output[0])
            ours.close()
            self._frames.close()
            raise
        self._channel = Channel(ours)
        self._poller = select.poll()  # not select(): a node of many cameras holds descriptors past 1024
        self._poller.register(ours, select.POLLIN)
        self._open = True
        answer = self._call_with(
            [uri, params, self.memory_bytes, rtsp_transport],
            lambda a: isinstance(a, list) and len(a) == 2 and type(a[0]) is bool and isinstance(a[1], list)
            and (not a[0] or (len(a[1]) == len(OPEN_PROPERTIES) and all(map(is_number, a[1])))),
        )  # fmt: skip
        if answer is not None and answer[0]:
            self._properties = dict(zip(OPEN_PROPERTIES, map(float, answer[1]), strict=True))
        else:
            self.release()

    def _refused(self, how: str) -> None:
        """FFmpeg said the source refused the credentials (the output's thread tells it)."""
        self.refused = how

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
        value = self._call_with(["get", int(prop)], is_number)
        return float(value) if value is not None else 0.0

    def grab(self) -> bool:
        answer = self._call_with(
            ["grab", None], lambda a: isinstance(a, list) and len(a) == 2 and type(a[0]) is bool and is_number(a[1])
        )
        if answer is None:
            return False
        self._position_ms = float(answer[1])
        return bool(answer[0])

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        shape = self._call_with(["retrieve", None], lambda a: a is None or is_frame_shape(a), none_is_answer=True)
        if shape is None:
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
        was_open, self._open = self._open, False
        if was_open and self._process.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._channel.send(["release", None])
                self._process.wait(timeout=1.0)
        self._stop_child()
        self._channel.sock.close()
        self._frames.close()

    def _call_with(self, message: list[Any], valid: Callable[[Any], bool], none_is_answer: bool = False) -> Any:
        """Send `message` and return the child's answer if `valid`; None where the capture is closed or
        has ended (an answer not `valid` ends it). A None answer is valid only with `none_is_answer`."""
        if not self._open:
            return None
        try:
            self._channel.send(message)
        except OSError:
            self._end(self._death())
            return None
        received, answer = self._answer()
        if not received:
            return None
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):  # the child's own failure, told
            self._end(f"its reader failed ({ascii(answer['error'][:MAX_ERROR_CHARS])[1:-1]})")
            return None
        if (answer is None and not none_is_answer) or not valid(answer):
            self._end("its reader sent an answer no reader of ours gives and was stopped")
            return None
        return answer

    def _answer(self) -> tuple[bool, Any]:
        """(True, the child's next answer), minding its memory and `wait_s`; (False, None) when the
        capture was ended meanwhile."""
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                whole, answer = self._channel.next_message()
                if whole:
                    return True, answer
                readable = self._poller.poll(POLL_S * 1000)
                resident = resident_bytes(self._process.pid)
                if resident is not None and resident > self.memory_bytes:
                    self._end(f"its reader went past its memory bound of {self.memory_mb} MB and was stopped")
                    return False, None
                if readable:
                    self._channel.receive()
                elif self._process.poll() is not None:
                    self._end(self._death())
                    return False, None
                elif time.monotonic() > deadline:
                    self._end(f"its reader did not answer within {self.wait_s:.0f} s and was stopped")
                    return False, None
            except (EOFError, OSError):
                self._end(self._death())
                return False, None
            except MalformedMessageError as error:
                self._end(f"its reader sent {error} and was stopped")
                return False, None

    def _death(self) -> str:
        try:
            code = self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "its reader closed its end of the pipe and was stopped"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            if -code in STOP_SIGNALS:  # a stop sent to the node's whole process group: no crash
                return (f"its reader process was stopped by {name} (a stop of the node's process group, as a service"
                        " manager or a terminal's Ctrl-C sends, or of the reader alone, as a memory guard such as"
                        " earlyoom or systemd-oomd sends)")  # fmt: skip
            if -code == signal.SIGKILL:
                return "its reader process was killed (SIGKILL: by the kernel's out-of-memory killer, or by hand)"
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
        self._output.join(OUTPUT_JOIN_S)  # its last lines written before its end is told
