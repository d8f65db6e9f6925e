"""A camera's run: what an ingest node's camera thread numbers and dates its frames by (`CameraRun`:
the run, the video file and its pass, or each image of a folder; the camera's capture clock, recorded
footage's pass start, a resumed pass's logged dates, what stops the thread), what a camera's footage is
named by in its frame ids (`footage_tag`, `source_tag`), and whether a restarted node may resume it
(`may_resume`). The node (ingest/camera_sampling.py) makes one CameraRun per camera thread."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from common import defaults
from common.jobs import make_frame_id
from ingest.cameras import CameraConfig
from ingest.clock import CameraClock, CaptureClock
from ingest.frame_source import FrameSource, SampledFrame, UnreadFrame
from ingest.source_checks import is_stream_uri


def source_tag(uri: str) -> str:
    """A short fingerprint of a file or folder source (path, size, modification time): the same file
    read again gives the same frame ids; a replaced file gives new ones."""
    path = Path(uri).resolve()
    status = path.stat()
    return hashlib.sha1(f"{path}|{status.st_size}|{status.st_mtime_ns}".encode()).hexdigest()[:10]


def footage_tag(run: CameraRun, source: FrameSource) -> str | None:
    """What a camera's footage is named by in its frame ids (CameraRun.frame_id_at): a file or folder
    by its fingerprint (`source_tag`); a video served over http:// by the node's run (`u` and the run's
    start), as nothing the node can read tells that URL's file from another put there since (the same
    length, rate and size): named by the URL alone, a new recording would have taken the ids of the last
    and its reads been dropped as repeats; a restarted node reads it again whole. None for a live stream
    (numbered within the run), also where the URL served footage at an earlier open."""
    if source.is_live:
        return None
    return f"u{run.run_ms}" if source.is_stream else source_tag(source.uri)


def may_resume(camera: CameraConfig) -> bool:
    """Whether a restarted node may resume the camera's footage, dated as it was first read, before now
    (IngestNode.resume): recorded footage of a file or folder, read once."""
    return not camera.realtime and not camera.loop and not is_stream_uri(camera.source)


@dataclass
class CameraRun:
    """What a camera thread numbers its frames by: the run (streams), the video file and its pass, or
    each image file of a folder and the pass (a folder's fingerprint and an image's place in it changed
    whenever a file was added, and stayed when one was overwritten: reads logged twice, or dropped)."""

    camera: CameraConfig
    run_ms: int
    clock: CaptureClock | CameraClock = field(default_factory=CaptureClock)
    seq: int = 0
    passes: int = 0
    tag: str | None = None
    last_captured_s: float = 0.0
    """The camera's last frame's date: this run's, or at its start the camera's last frame logged by the
    nodes before (IngestNode.dated_until); each frame is dated after it."""
    stamped_at: float = 0.0
    """When (time.monotonic()) the camera's last frame was dated."""
    next_pass_s: float = 0.0
    """When a looping file played in real time starts its next pass (time.monotonic())."""
    footage_start_s: float | None = None
    """Recorded footage (`realtime: false`): the date of its pass's start (start_footage_pass)."""
    logged_dates: dict[str, float] = field(default_factory=dict)
    """A resumed pass of recorded footage: its frames the frames log holds, not finished, by id -> the
    date they were logged with (`date`)."""
    finished: set[str] = field(default_factory=set)
    """Recorded footage resumed by a restarted node: the ids of its frames the frames log holds as finished
    (FootageResume.resume), passed over again by a pass read on where the one before was cut short."""
    stop: threading.Event = field(default_factory=threading.Event)
    """What ends the camera's thread: its node's stop, or the camera lost to another node
    (ingest/node_stop.py)."""

    def start_footage_pass(self, started_s: float | None = None) -> None:
        """A pass of recorded footage begins: dated from now, or from `started_s` (a pass resumed: its
        first start), never before the camera's last frame (capture_time); each frame by its time in the
        footage, however long it waits for the chain."""
        self.footage_start_s = self.clock.now() if started_s is None else started_s

    def date(self, frame_id: str, source_time_s: float, lag_s: float = 0.0) -> float:
        """A frame's capture time: a frame of a resumed pass that the frames log holds keeps the date it
        was logged with (`logged_dates`: its row has it, and the rest of the pass is dated after it), any
        other is dated now (capture_time)."""
        logged_s = self.logged_dates.pop(frame_id, None)
        if logged_s is None:
            return self.capture_time(source_time_s, lag_s)
        self.last_captured_s = max(self.last_captured_s, logged_s)
        return logged_s

    def capture_time(self, source_time_s: float, lag_s: float = 0.0) -> float:
        """Now by the camera's capture clock (ingest/clock.py: a step of the host's clock neither crowds
        nor spreads frames) less `lag_s` (a stream's frame read late: held back by a stall), or for
        recorded footage its pass's start plus `source_time_s` (dated when
        handed on, frames 0.2 s apart in a video landed 1 ms or 3 s apart, and a clip of three cars gave
        11 sightings); never before the camera's previous frame (by defaults.CAPTURE_STEP_S at least): the
        sighting pool groups each camera's reads forward in capture time, so frames dated before the
        last were never grouped: their cars had no sighting. Footage that would be dated at or before
        it moves its pass's dates on, keeping its pace (the pass of a new recording begun after the last
        was dated ahead of the clock: dated from now, the two recordings' cars merged)."""
        if self.footage_start_s is None:
            dated = self.clock.now() - lag_s
        else:
            dated = self.footage_start_s + source_time_s
            if dated <= self.last_captured_s:
                self.footage_start_s += self.last_captured_s + defaults.CAPTURE_STEP_S - dated
                dated = self.last_captured_s + defaults.CAPTURE_STEP_S
        self.last_captured_s = max(dated, self.last_captured_s + defaults.CAPTURE_STEP_S)
        return self.last_captured_s

    def finished_at(self, index: int, file_tag: str | None) -> bool:
        """Whether the frame at `index` (or the image `file_tag`) is one the frames log held as finished."""
        return bool(self.finished) and self.frame_id_at(index, file_tag) in self.finished

    def frame_id(self, frame: SampledFrame | UnreadFrame) -> str:
        return self.frame_id_at(frame.index, frame.file_tag)

    def frame_id_at(self, index: int, file_tag: str | None) -> str:
        """A file read again gives the same ids (nothing logged twice); a looping file's passes are new
        traffic, named by the run too (a restarted node's passes took the ids of the last run's, and
        none of them reached the log)."""
        passes = f"{self.run_ms}.{self.passes}" if self.camera.loop else str(self.passes)
        if file_tag is not None:  # an image of a folder: its own file, and the pass
            return make_frame_id(self.camera.id, f"i{file_tag}", passes)
        if self.tag is None:  # a stream: sampled frames numbered within this run
            return make_frame_id(self.camera.id, str(self.run_ms), self.seq)
        return make_frame_id(self.camera.id, f"f{self.tag}:{passes}", index)
