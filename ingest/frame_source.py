"""A frame source's common ground: what a source yields (SampledFrame, UnreadFrame), a file's own fingerprint
(`file_tag`), footage's key (FootageKey) and the FrameSource every source is (its failures kept and counted, its
pass and sample rate). The sources themselves: a folder of images and `open_source` (ingest/sources.py), a video
file or stream (ingest/video_source.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import defaults
from common.errors import InputError
from ingest.image_files import FrameProblem, UnreadableFrameError


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its index in the source, its time from the source's start, its pixels (BGR)."""

    index: int
    source_time_s: float
    image: np.ndarray
    file_tag: str | None = field(default=None, compare=False)
    """An image file's own fingerprint (file_tag): its frame id, whatever else the folder holds."""
    lag_s: float = field(default=0.0, compare=False)
    """A stream's frame: how long before it was read it was captured (ingest/stream_lag.py)."""


@dataclass(frozen=True)
class UnreadFrame:
    """A sampled frame without pixels: undecodable, or over the pixel limit; `detail` names no path."""

    index: int
    source_time_s: float
    problem: FrameProblem
    detail: str
    file_tag: str | None = field(default=None, compare=False)
    lag_s: float = field(default=0.0, compare=False)


def file_tag(path: Path) -> str:
    """A short fingerprint of one file (path, size, modification time): the same image read again gives
    the same frame id, one replaced in place a new one, files added or removed around it change neither.
    A link is named by its own path too: two entries linking to one image are two sampled frames (they
    shared a frame id, and the second went unrecorded)."""
    try:
        status = path.stat()
        identity = f"{path.resolve()}|{status.st_size}|{status.st_mtime_ns}"
        if path.is_symlink():  # the entry itself (a folder reached through a link keeps its files' ids)
            identity += f"|{path.absolute()}"
    except OSError:  # gone or unreachable: it will be an unread frame, named by its path alone
        identity = str(path.absolute())
    return hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()[:12]  # any file name's bytes


FootageKey = tuple[int, float | None, str, str]
"""Footage's stated frame count, first frame's timestamp and pixels' digest ("": none), and a file's own
fingerprint (`file_tag`; "": served over http://): VideoSource.footage_key."""


MAX_FAILURES_KEPT = 20
"""Messages a source keeps of what it could not read in one pass; the rest are counted (a stream that
fails a frame now and then runs for months)."""


class FrameSource:
    """A source of sampled frames. `failures` lists what could not be read, one message each (the
    first MAX_FAILURES_KEPT; `failure_count` counts them all); the node logs them."""

    is_stream = False
    """Read from a URL: one that cannot be opened (or read) now may be later, so it is retried."""
    is_live = False
    """A camera's live stream: dated and sampled by when its frames are captured, and it ends only when
    the camera ends it. A URL that states its frame count (a video served over http://) is footage, as a
    file is: is_stream, not is_live."""
    memory_mb = defaults.CAPTURE_MEMORY_MB
    """Most memory (MB) its decoding may hold, where a process of its own decodes it (a video or stream)."""
    rtsp_transport = "tcp"
    """How an RTSP camera's packets come (ingest/ffmpeg_open.RTSP_TRANSPORTS): over its RTSP connection, or
    "udp" where the operator chose it; what a reopened stream is opened with again."""
    ended_because: str | None = None
    """Why the pass just read ended before its source did, where its reader was stopped (a decoder's
    crash, the memory bound, a hung read: ingest/capture_process.py), or None."""
    ended_early = False
    """Whether the pass just read ended before the length the source stated: a file cut short, or a URL
    whose connection dropped (or a live stream whose length FFmpeg guessed from its size); not where its
    reader was stopped (`ended_because`): the file was not to blame."""
    end_wait_s: float | None = None
    """A video or stream read to its end: how long the grab that found its end waited (a camera closing the
    connection: at once; a stream gone silent: FFmpeg's read timeout, 10 s); None before (ingest/reconnect.py
    tells a live connection the camera closed after its frames from a drop by it)."""
    stated_live = 0
    """The frame count its answer stated, read live all the same (`read_live`: a snapshot URL's 1); 0: none."""
    resume_from = 0
    """Footage: the frames from its start not sampled again (a pass resumed where the one before was cut
    short: ingest/reconnect.py); they are gone through, unsampled, so the same frames are sampled after."""
    reached = 0
    """Footage: the frames of the pass gone through (each sampled one handed on) when it ended."""

    def __init__(self, uri: str, sample_fps: float, max_pixels: int = defaults.MAX_FRAME_PIXELS) -> None:
        if sample_fps <= 0:
            raise InputError(f"sample rate must be positive, got {sample_fps}")
        self.uri = uri
        self.sample_fps = sample_fps
        self.max_pixels = max_pixels
        self.failures: list[str] = []
        self.failure_count = 0
        self.passed_over: Callable[[int, str | None], bool] = lambda index, tag: False
        """Frames (index, file tag) not to sample: ended for good at an earlier read (ingest/footage_resume.py)."""
        self.passed: dict[tuple[int, str | None], float] = {}
        """The frames passed over so far: (index, file tag) -> time in the file (a resume dates the rest by them)."""

    def read_live(self) -> None:
        """Read as a live camera's stream whatever the source stated (an ingest node's stream-URL camera not
        declared `footage: true`): dated and sampled by arrival, and its end a drop (VideoSource: its stated
        frame count dropped too)."""
        self.is_live = True

    def note_failure(self, message: str) -> None:
        self.failure_count += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(message)

    def samples(self) -> Iterator[SampledFrame | UnreadFrame]:
        """Every sampled frame in order, with its pixels or why it has none (noted in `failures` too)."""
        raise NotImplementedError

    def frames(self) -> Iterator[SampledFrame]:
        """The sampled frames that have pixels (the others are noted in `failures`)."""
        for sample in self.samples():
            if isinstance(sample, SampledFrame):
                yield sample

    def unread(self, index: int, time_s: float, error: UnreadableFrameError, what: str) -> UnreadFrame:
        """The frame `what` could not be had: noted, and returned to be recorded."""
        self.note_failure(f"{what}: {error.detail}")
        return UnreadFrame(index, time_s, error.problem, error.detail)

    @property
    def expected_frames(self) -> int | None:
        """How many frames sampling will give, when known in advance."""
        return None

    def footage_key(self) -> FootageKey | None:
        """What tells this footage from other at the same URI; None: nothing (a folder is never read on)."""
        return None

    def positions(self) -> Iterator[tuple[int, str | None]]:
        """Every frame a file source may sample (index, file tag), known before it is read: a folder's
        images, a video's frames by its stated count (which of them are sampled hangs on their timestamps,
        known once decoded); none for a stream, a video that states no frame count, or one that states
        more than MAX_RESUMED_FOOTAGE_S."""
        return iter(())

    def close(self) -> None:
        """Release what the source holds open (a video's reader process); nothing where it holds nothing (an
        image folder). Reading it to its end releases it too; closing twice is no error."""

    def pass_over(self, index: int, tag: str | None, time_s: float) -> bool:
        """Whether the frame is passed over (`passed_over`); if so, its time is kept in `passed`."""
        if not self.passed_over(index, tag):
            return False
        self.passed[index, tag] = time_s
        return True

    def time_of(self, index: int) -> float:
        """A file's frame's time from the file's start, by its index."""
        return index / self.sample_fps

    @property
    def dates_back(self) -> bool:
        """Whether its next frame may be dated before it is read (a stream whose timestamps are trusted)."""
        return False

    @property
    def sampled_fps(self) -> float:
        """Frames per second of what is sampled: the sample rate, or the source's own rate where slower
        (what a redacted video of the samples plays at)."""
        return self.sample_fps
