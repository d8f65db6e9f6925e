"""A capture's child process (`python -P -m ingest.capture_child SOCKET_FD FRAMES_FD PARENT_PID`): it opens
the one video or stream its reader (ingest/capture_process.py) names over the socket, never on the
command line (with how an RTSP camera's packets come: ingest/ffmpeg_open.RTSP_TRANSPORTS), and answers
its calls (grab, retrieve, get, release) until the reader releases it or goes. Its stdout and stderr are a
pipe its reader reads: what FFmpeg, OpenCV and Python print in it (a traceback, an assertion's line
before an abort) reaches the node's stderr without the source's credentials, however it ends
(ingest/capture_output.py); C's stdout is written a line at a time, not held to its end.

It holds itself to its reader's bounds before it opens anything: its address space capped (no single
allocation of gigabytes succeeds), FFmpeg's options set in its own environment (ingest/ffmpeg_open.py),
SIGINT ignored (a terminal's Ctrl-C is the reader's to handle), and SIGKILL asked for when the thread
that started it ends (PR_SET_PDEATHSIG): a node killed with -9 while FFmpeg waits on a silent camera
left its child running 11 s, and one whose FFmpeg hung, for ever."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import sys

import cv2
import numpy as np

from ingest.capture_channel import Channel, FrameBuffer, MalformedMessageError
from ingest.capture_output import line_buffered_c_stdout

OPEN_PROPERTIES = (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_COUNT)
"""What a reader asks of an opened capture: sent once with the open's answer, not asked each time."""

ADDRESS_SPACE_FACTOR = 3
"""A child's address space may grow by this many times its memory bound from its start: room for thread
stacks and allocators' reserved (unused) space, none for an allocation of gigabytes."""

MAX_ERROR_CHARS = 300
"""The most of a failure's text a child tells its reader."""

PR_SET_PDEATHSIG = 1
"""prctl's option: the signal this process gets when the thread that started it ends."""


def virtual_bytes() -> int:
    """This process's address space (bytes)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def end_with_parent(parent_pid: int) -> None:
    """SIGKILL when the reader's thread ends; gone at once if the reader already has."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it ended before the request was made
        os._exit(0)


def serve(channel: Channel, frames: FrameBuffer) -> None:
    """Open the source the reader names first and answer its calls until it releases the capture or goes."""
    from ingest.ffmpeg_open import RTSP_TRANSPORTS

    try:
        uri, params, memory_bytes, rtsp_transport = channel.wait_message()
    except (EOFError, OSError, MalformedMessageError, TypeError, ValueError):
        return
    if rtsp_transport not in RTSP_TRANSPORTS:
        return
    open_and_answer(channel, frames, str(uri), params, int(memory_bytes), rtsp_transport)


def open_and_answer(
    channel: Channel, frames: FrameBuffer, uri: str, params: list[int], memory_bytes: int, rtsp_transport: str
) -> None:
    """Bound this process, open `uri` and answer the reader's calls until it releases the capture or goes."""
    from ingest.ffmpeg_open import open_capture  # sets FFmpeg's options in the child's own environment

    limit = virtual_bytes() + ADDRESS_SPACE_FACTOR * int(memory_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # its one file is its frame buffer, held to the memory bound: a node's file-size limit (ulimit -f) is
    # for what the node writes (a 320x240 frame's buffer failed under a 150 kB one, the child ending mute)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.getrlimit(resource.RLIMIT_FSIZE)[1],) * 2)
    capture = open_capture(uri, [int(p) for p in params], rtsp_transport)
    try:
        opened = capture.isOpened()
        channel.send([opened, [capture.get(prop) for prop in OPEN_PROPERTIES] if opened else []])
        while answer_call(channel, capture, frames):
            pass
    except (EOFError, ConnectionError, MalformedMessageError):  # the reader is gone
        pass
    except Exception as error:  # the capture's own failure (OpenCV out of memory, a buffer that cannot grow)
        with contextlib.suppress(OSError):  # told, where it ended mute (exit code 0)
            channel.send({"error": f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]})
    finally:
        capture.release()


def answer_call(channel: Channel, capture: cv2.VideoCapture, frames: FrameBuffer) -> bool:
    """Answer the reader's next call; False once it releases the capture."""
    call, argument = channel.wait_message()
    if call == "grab":
        grabbed = capture.grab()
        channel.send([grabbed, capture.get(cv2.CAP_PROP_POS_MSEC) if grabbed else -1.0])
    elif call == "retrieve":
        retrieved, image = capture.retrieve()
        if not retrieved or image is None or image.dtype != np.uint8:
            channel.send(None)
        else:
            frames.write(np.ascontiguousarray(image))
            channel.send(list(image.shape))
    elif call == "get":
        channel.send(capture.get(int(argument)))
    else:
        return False
    return True


def main(arguments: list[str]) -> None:
    socket_fd, frames_fd, parent_pid = (int(argument) for argument in arguments)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end_with_parent(parent_pid)
    line_buffered_c_stdout()  # before FFmpeg is first used
    serve(Channel(socket.socket(fileno=socket_fd)), FrameBuffer(frames_fd))


if __name__ == "__main__":
    main(sys.argv[1:])
