"""A video file or a stream URL as a frame source (VideoSource): opened with OpenCV in a process of its own
(ingest/capture_process.py), sampled at a set rate by its frames' time (SampleSchedule), dated by its own
timestamps where they can be trusted (FootageClock), keyed as footage so that a pass cut short is read on only
where it is the same footage (`footage_key`). A frame that cannot be had is yielded as an UnreadFrame."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from common import defaults
from common.credentials import shown_source
from common.errors import InputError
from common.frame_store import pixels_problem
from ingest.capture_process import IsolatedCapture
from ingest.frame_source import FootageKey, FrameSource, SampledFrame, UnreadFrame, file_tag
from ingest.image_files import UnreadableFrameError
from ingest.redirect_probe import redirect_origin
from ingest.source_checks import is_stream_uri, stated_size_problem
from ingest.stream_lag import StreamLag

log = logging.getLogger(__name__)

MAX_SOURCE_FPS = 1000.0
"""A video's stated frame rate is used from defaults.MIN_SAMPLE_FPS up to this; outside it, the video
states no usable rate (its frames are timed at the sample rate)."""


@dataclass
class SampleSchedule:
    """Which frames of a video or stream are sampled, by their time: one every `interval_s`; after a
    stall no catching up, and no frame of the burst that follows at once (a stream whose own timestamps
    date the burst's frames is sampled through it, by capture time)."""

    interval_s: float
    next_s: float = 0.0

    def due(self, time_s: float) -> bool:
        """Whether the frame at `time_s` is sampled (then the next is due an interval on)."""
        if time_s + 1e-6 < self.next_s:
            return False
        self.next_s = max(self.next_s + self.interval_s, time_s + 0.5 * self.interval_s)
        return True


MAX_RESUMED_FRAMES = 2_600_000
"""A video stating more frames than this (a day at 30 frames/s) is read again whole after a restart: a
restarted node asks the frames log about each (10 s for this many; a day at a stated 1000 frames/s,
86 million, took minutes)."""

MAX_FOOTAGE_GAP_S = 86_400.0
"""The longest gap between two frames of a video file taken as the recording's (a camera recording on
motion, overnight); a longer one is taken for a broken timestamp, the frame dated a frame's time on."""


@dataclass
class FootageClock:
    """A video file's frames' times: each frame's own timestamp (its PTS from the stream's start), not its
    index over the stated rate, which spread a recording's 10-minute gap over the whole file (182
    sightings for 6 cars, a car dated 300 s off), dated a variable-rate file's frames by its average and
    sampled its fast part 2x, its slow part half (a review). A frame without a timestamp, or whose
    timestamp repeats or goes back (recordings joined end to end), is dated a stated frame's time
    after the last, and the frames after it keep that offset."""

    rate_fps: float
    """The stated rate (frames/s): a frame without a usable timestamp is dated a frame's time on."""
    trusted: bool = True
    """False where the stated rate is unusable (ingest/video_source.VideoSource): a container's timestamps
    come from the same time base (an AVI stating 1e-9 frames/s stamped frame 1 at 31 years)."""
    offset_s: float = 0.0
    last_s: float | None = None

    def time_s(self, stamp_s: float | None, index: int) -> float:
        """Frame `index`'s time, given its timestamp (None: it has none)."""
        after = 0.0 if self.last_s is None else self.last_s + 1.0 / self.rate_fps
        if not self.trusted:
            dated = index / self.rate_fps  # as the stated rate would, had it one
        elif stamp_s is None:
            dated = after
        else:
            dated = stamp_s + self.offset_s
            since = -1e-9 if self.last_s is None else self.last_s  # the first frame: from the stream's start
            if not since < dated <= since + MAX_FOOTAGE_GAP_S:
                self.offset_s += after - dated  # back, repeated, or a gap no recording has: carried on
                dated = after
        self.last_s = dated
        return dated


class CredentialsRefusedError(InputError):
    """The camera refused the user and password its URL gives (HTTP or RTSP 401, 403): reopened only
    after defaults.CREDENTIALS_RETRY_S or longer (ingest/reconnect.py), never at the reconnect backoff."""


class VideoSource(FrameSource):
    """A video file or stream URL, sampled at `sample_fps` (every frame when the source is slower): a
    live stream by its frames' capture time, footage (a file, or a URL stating its frame count) by its
    own timestamps."""

    def __init__(
        self, uri: str, sample_fps: float, timeout_ms: int = defaults.STREAM_OPEN_TIMEOUT_MS,
        max_pixels: int = defaults.MAX_FRAME_PIXELS, memory_mb: int = defaults.CAPTURE_MEMORY_MB,
        rtsp_transport: str = "tcp", label: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(uri, sample_fps, max_pixels)
        self.memory_mb, self.rtsp_transport = memory_mb, rtsp_transport
        self.is_stream = is_stream_uri(uri)
        self.fingerprint = "" if self.is_stream else file_tag(Path(uri))
        """A file's `file_tag`, taken before it is opened (one put in its place then is other footage)."""
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        # FFmpeg in a process of its own
        self.capture = IsolatedCapture(uri, params, memory_mb, rtsp_transport=rtsp_transport, label=label)
        if not self.capture.isOpened():
            if self.is_stream and self.capture.refused:  # told by FFmpeg's line (its output read to its end)
                raise CredentialsRefusedError(f"credentials refused ({self.capture.refused}): {shown_source(uri)}")
            if self.is_stream and (elsewhere := redirect_origin(uri)):  # FFmpeg says nothing of a redirect
                raise InputError(f"the camera {shown_source(uri)} redirects to {elsewhere}: put the URL it redirects"
                                 " to in the cameras file (redirects are not followed)")  # fmt: skip
            what = "cannot connect to stream" if self.is_stream else "cannot open video (corrupt or unsupported)"
            why = f" ({self.capture.ended_because})" if self.capture.ended_because else ""
            raise InputError(f"{what}: {shown_source(uri)}{why}")
        if problem := stated_size_problem(self.capture, max_pixels):
            self.capture.release()
            raise InputError(f"{'stream' if self.is_stream else 'video'} {shown_source(uri)} has frames of {problem}")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        # a rate under one frame an hour is no rate: a header stating 1e-9 frames/s dated the second frame
        # 31 years on (real time: the camera waited for it; recorded footage: dates past the year 9999)
        self.source_fps = fps if defaults.MIN_SAMPLE_FPS <= fps <= MAX_SOURCE_FPS else 0.0
        stated_frames = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.is_live = self.is_stream and stated_frames <= 0
        """A camera's live stream, which ends only when the camera ends it. A video served over http://
        states its frames: it is footage, dated and sampled by its own timestamps as a file is, and it ends
        where it ends. Taken for a live stream, it was sampled by how fast it was read (a review: at 2
        frames/s, `alpr run` over http:// gave 1 frame and 1 of 3 cars; the same file on disk 24 frames and
        3 cars), and an ingest node reopened it for ever as a stream that dropped, logging and alerting
        on the same footage again each pass under new frame ids."""
        self.frame_count = stated_frames if not self.is_live else 0
        self.stream_lag = StreamLag()
        self.key: FootageKey | None = None
        self.read_ahead = False
        """Whether the first frame is grabbed ahead (`footage_key`): `samples()` takes it as its first grab."""

    def read_live(self) -> None:
        """A live camera's URL answered stating frames (a fragmented MP4 restream, AVI through a pipe,
        a snapshot's one JPEG, a boot clip): read as a live stream, its stated count dropped (no footage
        key, no resume, no "ended early"), its frames dated by arrival, its end a drop reconnected from."""
        super().read_live()
        self.stated_live, self.frame_count = self.frame_count, 0

    def close(self) -> None:
        self.capture.release()  # its reader process ended (a refusal after the open left it running: a review)

    @property
    def dates_back(self) -> bool:
        return self.is_live and self.stream_lag.trusted

    @property
    def sampled_fps(self) -> float:  # a 5 frames/s video sampled at --fps 25 played five times too fast (a review)
        return min(self.sample_fps, self.source_fps or self.sample_fps)

    @property
    def expected_frames(self) -> int | None:
        if self.is_live or not self.source_fps or self.frame_count <= 0:
            return None
        return int(np.ceil(self.frame_count * min(1.0, self.sample_fps / self.source_fps)))

    def positions(self) -> Iterator[tuple[int, str | None]]:
        if (
            self.is_stream  # footage served over http:// is named by the node's run: never resumed
            or self.frame_count > MAX_RESUMED_FRAMES
            or self.time_of(self.frame_count) > defaults.MAX_RESUMED_FOOTAGE_S
        ):
            return  # a header stating 400 million frames took minutes and gigabytes at every start
        yield from ((index, None) for index in range(self.frame_count))

    def footage_key(self) -> FootageKey | None:
        """Footage: its stated frame count, its first frame's timestamp and a digest of its pixels (the
        first frame grabbed ahead, at the latest as `samples()` begins), and a file's own fingerprint
        (`file_tag`). A pass cut short is read on from the frame reached only where the footage reopened
        has the same key (ingest/reconnect.py): a live camera served over http:// with a stated size, taken
        for footage, serves new frames at each connection, and its frames up to there were skipped, never
        read (a review); so were a file's replaced in place by footage of the same length and first frame
        (a re-encode, a clip starting black, as cameras' clips often do: a review). Over http:// nothing
        tells a file put at the URL since from the last where those agree. None: a live stream."""
        if self.key is None and not self.is_live:
            self.read_ahead = self.capture.grab()
            ok, image = self.capture.retrieve() if self.read_ahead else (False, None)
            pixels = np.ascontiguousarray(image).data if ok and image is not None else None  # (`tobytes()` copied)
            digest = hashlib.sha1(pixels).hexdigest() + str(pixels.shape) if pixels is not None else ""
            fingerprint = self.fingerprint
            if not self.is_stream and (now := file_tag(Path(self.uri))) != fingerprint:
                # replaced between the fingerprint and the reader's open: which file was read is not known, so
                # the key matches no other pass's (read from its start: frames read twice, never left unread)
                fingerprint = f"{fingerprint}>{now}"
            self.key = (self.frame_count, self.stamp_s() if self.read_ahead else None, digest, fingerprint)
        return self.key

    def time_of(self, index: int) -> float:
        """A frame's time by its index at the stated rate: what a frame without a timestamp is dated by,
        and the footage's stated length (its frame count's time)."""
        return index / (self.source_fps or self.sample_fps)

    def samples(self) -> Iterator[SampledFrame | UnreadFrame]:
        started = time.monotonic()
        schedule = SampleSchedule(1.0 / self.sample_fps)
        footage = FootageClock(self.source_fps or self.sample_fps, trusted=bool(self.source_fps))
        index = 0
        decoded = passed = skipped = 0
        if not self.is_live and not self.source_fps:  # not by the wall clock, as before: what was
            log.warning(  # sampled then depended on the machine's speed
                "video %s states no usable frame rate: every frame sampled, timed as %g frames/s",
                shown_source(self.uri), self.sample_fps,
            )  # fmt: skip
        try:
            self.footage_key()  # (footage: its first frame grabbed ahead, if not yet: taken as the first grab)
            while self.read_ahead or self.grabbed():
                self.read_ahead = False
                lag_s = 0.0
                if self.is_live:  # sampled by capture time: the frames a stall held back are footage as any
                    read_s = time.monotonic() - started
                    lag_s = self.stream_lag.lag_s(read_s, self.stamp_s())  # every frame's: the stream's pace
                    time_s = read_s - lag_s
                else:  # by its own timestamp (a file's, or one served over http://): a recording's gaps, held
                    # frames and changes of rate kept, however fast it is read
                    time_s = footage.time_s(self.stamp_s(), index)
                if schedule.due(time_s):  # (a resumed pass's frames before it too: the same frames sampled)
                    if index < self.resume_from:
                        skipped += 1
                    elif self.pass_over(index, None, time_s):
                        passed += 1
                    else:
                        sample = replace(self.retrieve(index, time_s), lag_s=lag_s)
                        if isinstance(sample, SampledFrame) or sample.problem == "too_large":
                            decoded += 1
                        yield sample
                index += 1
                self.reached = index
        finally:
            self.capture.release()
        if self.capture.ended_because:  # its reader stopped: a crash, the memory bound, hung; the file is whole
            self.ended_because = self.capture.ended_because  # for all it says (resumed: ingest/reconnect.py)
            self.note_failure(f"{shown_source(self.uri)}: {self.ended_because} at frame {index}")
            if decoded or passed or skipped or self.resume_from:
                return
        if decoded == passed == skipped == 0:
            why = self.ended_because or "corrupt or empty video"
            raise InputError(f"no frame could be decoded from {shown_source(self.uri)} ({why})")
        # the frames an MKV states are its duration x rate (6,010 for a recorder's 240 frames with a gap):
        # a file whose last frame is stamped at its stated end is whole, however many frames it held
        reached_end = footage.trusted and (footage.last_s or 0.0) >= self.time_of(self.frame_count - 2)
        if self.frame_count and index < self.frame_count - 1 and not reached_end:
            self.ended_early = True
            self.note_failure(
                f"video {shown_source(self.uri)} ended early at frame {index} of {self.frame_count} (truncated?)"
            )

    def grabbed(self) -> bool:
        """The next frame grabbed; at the source's end, how long the grab that found it waited (`end_wait_s`)."""
        began = time.monotonic()
        if self.capture.grab():
            return True
        self.end_wait_s = time.monotonic() - began
        return False

    def stamp_s(self) -> float | None:
        """The stream's own time of the frame just grabbed (its PTS, seconds), or None."""
        stamp_ms = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        return stamp_ms / 1000 if math.isfinite(stamp_ms) and stamp_ms >= 0 else None

    def retrieve(self, index: int, time_s: float) -> SampledFrame | UnreadFrame:
        """The frame just grabbed, decoded; unread when it does not decode or has too many pixels (the
        video stated frames within the limit when opened, but this one is larger)."""
        what = f"frame {index} of {shown_source(self.uri)}"
        ok, image = self.capture.retrieve()
        if not ok or image is None:
            return self.unread(index, time_s, UnreadableFrameError("undecodable", "undecodable video frame"), what)
        if problem := pixels_problem(image.shape[1], image.shape[0], self.max_pixels):
            return self.unread(index, time_s, UnreadableFrameError("too_large", problem), what)
        return SampledFrame(index, time_s, image)
