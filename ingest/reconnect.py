"""A camera's source kept open: opened, read pass after pass, and reopened with backoff when a stream
drops. One loop for an ingest node's camera threads (ingest/camera_sampling.py) and `alpr run` on a live stream
(alpr/standalone.py): `alpr run` ended when its camera dropped the stream (a network blip, a camera
rebooting), where the node reconnected."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from common import defaults
from common.backoff import Backoff, stretched
from common.credentials import mask_url, shown_source
from common.errors import InputError
from ingest.frame_source import FootageKey, FrameSource
from ingest.source_checks import is_stream_uri, uri_syntax_problem
from ingest.sources import EntryKey, open_source
from ingest.video_source import CredentialsRefusedError, VideoSource

log = logging.getLogger(__name__)

CLOSED_WITHIN_S = defaults.STREAM_OPEN_TIMEOUT_MS / 2000
"""The longest a live connection's end may be waited for after its last frame and be the camera's own close
(a snapshot URL's after its one JPEG, a camera ending its streams: at once), not a drop: a stream gone silent
ends only at FFmpeg's read timeout (defaults.STREAM_OPEN_TIMEOUT_MS, 10 s)."""

SourceState = Literal["connected", "reconnecting", "failed", "ended"]
"""A camera's state as `alpr status` shows it: "reconnecting" and "failed" each follow a source error."""


class Stop(Protocol):
    """What asks the loop to stop: a threading.Event (an ingest node's), or `alpr run`'s signals."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds, less once a stop is asked; whether one was."""
        ...


class ReaderError(Exception):
    """An error a pass's reader met of its own (writing its output or its log), not the source's: the
    keeper lets the error it carries out as it is, neither retried nor counted as a source error (an
    encoder refusing the frames is no dropped stream)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class FootageCutShortError(OSError):
    """A pass of footage ended before its end: its reader stopped (a crash, the memory bound, a hang), or
    over http:// its connection dropped: read on from the frame reached (SourceKeeper.cut_short)."""


def no_state(state: SourceState, errors: int) -> None:
    """The default `on_state`: nothing."""


def no_error() -> None:
    """The default `on_error` and `on_reopen`: nothing."""


@dataclass
class SourceKeeper:
    """Opens `uri` and hands each pass of it to a reader (`run`) until it ends: footage (a file, a folder,
    a video served over http://, which states its length) at its end, unless `loop`; a live stream only
    when `stop` is set. A live connection the camera closed after serving frames (a snapshot URL's one
    JPEG, a camera ending its streams: `closed_by_camera`) is reopened without a source error, "connected"
    still, a sample interval after the last open at the soonest (`reopen`: counted in `reopens`; as a
    source error, a healthy snapshot camera paged AlprCameraFailing, read "reconnecting", and was sampled
    at its growing backoff, 7 frames a minute at 2 frames/s). A stream that drops (silent past the read
    timeout, no frame, its reader stopped), or cannot be opened, is reopened with backoff
    (defaults.RECONNECT_BACKOFF_S), which starts afresh only after defaults.STABLE_STREAM_S connected (across
    such reopens): one WARNING when lost, DEBUG while still away, one INFO when back.
    Footage whose pass is cut short (its reader killed or hung, a connection over http:// dropped) is opened
    again after the backoff's wait and read on from the frame reached where it is the same footage
    (`read_on`; `resume_from`: the same frame ids and dates, nothing read twice); its backoff starts afresh
    only after a pass read to its end (or STABLE_STREAM_S reading), and after
    defaults.FOOTAGE_STALLED_PASSES passes in a row that got no further it is given up, at ERROR, "failed"
    (a review: reopened at once and read again from its start as new footage, a transfer that always dropped
    halfway was queued for ever, and a file whose reader was killed "ended", its rest unread). A file's
    failure, a malformed URL's, or anything but I/O, is logged at ERROR and not retried. A camera that
    refuses the credentials (401, 403) is said so at ERROR, "failed" meanwhile, and opened again only after
    defaults.CREDENTIALS_RETRY_S or longer (`credentials_jitter`): at the backoff a wrong password logged in
    120 times an hour, enough for a camera to lock the account, and the log said only "cannot connect" (a
    review)."""

    uri: str
    sample_fps: float
    name: str
    """The camera's id, as the log lines name it ("camera gate: ...")."""
    stop: Stop
    loop: bool = False
    on_state: Callable[[SourceState, int], None] = no_state
    """Told each state (and the source errors so far) as it is entered."""
    on_error: Callable[[], None] = no_error
    """Told each source error as it happens (an ingest node's metric)."""
    on_reopen: Callable[[], None] = no_error
    """Told each live connection the camera closed after its frames, reopened (an ingest node's metric)."""
    logger: logging.Logger = log
    """Where its lines go: the caller's logger (an ingest node's lines are still ingest.node's)."""
    passes: int = 0
    """Passes of footage read to its end before the one being read (looped)."""
    errors: int = 0
    """Source errors so far: a drop, an open that failed, a pass cut short."""
    reopens: int = 0
    """Live connections the camera closed after serving frames, reopened (`reopen`): no source errors."""
    resume_from: int = 0
    """Footage: the frame its next pass reads on from (where the last was cut short; 0: its start)."""
    stalled: int = 0
    """Footage: passes in a row cut short that got no further than the one before."""
    footage: FootageKey | None = None
    """Footage: what tells the footage last opened from other (`read_on`)."""
    backoff: Backoff = field(default_factory=lambda: Backoff(*defaults.RECONNECT_BACKOFF_S))
    live: bool = False
    """A live camera (an ingest node's stream-URL camera not declared `footage: true`): an open that states
    a frame count (a fragmented MP4 restream, a snapshot, a camera's boot clip) is read as a live stream
    (`take_live`), its end reopened (`reopen`), never footage: taken for footage, a boot
    clip's end ended the camera's thread for good, its claim kept, the live stream never read again,
    nothing counted (a review). False: the source tells (a file, or `alpr run` of a video served over
    http://, is footage)."""
    tell_recording: bool = True
    """Whether `take_live` warns of a URL stating frames as recorded video does: not where the cameras file says
    `footage: false` (a fragmented-MP4 restream states them too, and was warned of at every start: a review)."""
    told_live: bool = False
    """Whether the WARNING that its URL states frames as recorded video does was given (`take_live`: once): an
    http:// recording left at the cameras file's defaults, footage before, is read as a live camera since
    `footage: true` came, reconnected from at its end, and nothing said so above DEBUG (a review)."""
    credentials_jitter: float = 0.0
    """The most of each wait after refused credentials (defaults.CREDENTIALS_RETRY_S) lengthened by at random
    (an ingest node's cameras: defaults.RECONNECT_JITTER, 300 to 450 s; 0: exact): never shortened, the
    wait guards against the camera locking the account (cut by up to half, a review: 150 s)."""
    rng: random.Random = field(default_factory=random.Random, repr=False)
    """Where that jitter comes from (seeded in tests)."""
    memory_mb: int = defaults.CAPTURE_MEMORY_MB
    """Most memory (MB) the source's decoding may hold (ALPR_CAPTURE_MEMORY_MB)."""
    rtsp_transport: str = "tcp"
    """How an RTSP camera's packets come: over its RTSP connection, or "udp" where the operator chose it."""
    refused: bool = False
    """Whether the last open was refused its credentials (said at ERROR once until one succeeds)."""
    said: set[EntryKey] = field(default_factory=set)
    """An image folder's entries not read that a WARNING named already: once for all its passes (ImageFolderSource)."""

    def open(self) -> FrameSource:
        return open_source(self.uri, self.sample_fps, memory_mb=self.memory_mb, rtsp_transport=self.rtsp_transport,
                           label=self.name, said=self.said)  # fmt: skip

    def run(self, read_pass: Callable[[FrameSource], None], first: FrameSource | None = None) -> SourceState:
        """Open the source (or take `first`, opened already), hand it to `read_pass` to read one pass,
        and so on until it ends ("ended") or fails for good ("failed"). A ReaderError out of `read_pass`
        lets its error out; any other error is the source's."""
        connected_at: float | None = None
        reopening = False  # the camera closed the last connection after its frames: still "connected"
        while not self.stop.is_set():
            opened_at = time.monotonic()
            try:
                source, first = first or self.open(), None
                if self.live and not source.is_live:
                    self.take_live(source)
                self.say_connected(reopening)
                if not source.is_live:  # (its backoff starts afresh once a pass reaches its end: below)
                    self.read_on(source)
                if not reopening:
                    connected_at = time.monotonic()
                    self.on_state("connected", self.errors)
                reopening = False
                read_pass(source)
                if self.reopen(source, opened_at):  # closed by the camera after its frames: no error
                    reopening = True
                    continue
                self.pass_ended(source)
                if self.stop.is_set() or (not self.loop and not source.is_live):  # footage: a file, or served
                    self.on_state("ended", self.errors)  # over http:// (reopened for ever, it was logged and
                    return "ended"  # alerted on again each pass: a review)
                self.passes += 1
            except ReaderError as own:
                raise own.error from own.error.__cause__
            except Exception as error:  # InputError, OSError, or a camera setting no frame can carry
                reopening = False
                if connected_at is not None and time.monotonic() - connected_at >= defaults.STABLE_STREAM_S:
                    self.backoff.reset()  # a drop after a good run starts the backoff afresh; a short one keeps it
                connected_at = None
                self.errors += 1
                self.on_error()
                if self.fails_for_good(error):
                    self.on_state("failed", self.errors)
                    return "failed"
                if isinstance(error, CredentialsRefusedError):
                    self.credentials_refused(error)
                else:
                    self.reconnect_after(error)
        return "ended"  # stopped while away: no state told (it stays "reconnecting", as it was)

    def reconnect_after(self, error: Exception) -> None:
        """A source error to retry: said at WARNING once an outage, at DEBUG while still away; "reconnecting"
        through the backoff's wait."""
        delay = self.backoff.next_delay()
        if self.backoff.failures == 1:
            self.logger.warning("camera %s: %s; %s with backoff", self.name, mask_url(str(error)),
                                "read on from there" if isinstance(error, FootageCutShortError)
                                else "reconnecting")  # fmt: skip
        else:
            self.logger.debug("camera %s: still unavailable; next attempt in %.0f s", self.name, delay)
        self.on_state("reconnecting", self.errors)
        self.stop.wait(delay)

    def take_live(self, source: FrameSource) -> None:
        """A live camera's URL answered stating a frame count: read as the live stream it is (FrameSource.
        read_live). FFmpeg states one for a fragmented MP4 restream (go2rtc's /api/stream.mp4, an NVR's),
        AVI through a pipe (0x40000000) and a snapshot URL's one JPEG: refused at every open, such cameras
        gave no frame, for ever (a review). A camera's boot clip is read so too, and reopened at its end:
        never footage that ends (its thread ended for good: a review)."""
        stated = source.frame_count if isinstance(source, VideoSource) else 0
        if stated > 1 and self.tell_recording and not self.told_live:  # a snapshot's one frame is no recording
            self.told_live = True
            self.logger.warning("camera %s: its URL states %d frames, as recorded video does (or a fragmented-MP4"
                                " restream): read as a live camera, reopened at its end; if it is"
                                " recorded video, declare `footage: true` in its cameras-file entry (a live"
                                " restream: `footage: false` says so, and this is not said)", self.name,
                                stated)  # fmt: skip
        else:
            self.logger.debug("camera %s: its URL states %d frames: read as a live stream", self.name, stated)
        source.read_live()

    def read_on(self, source: FrameSource) -> None:
        """Footage opened: read on from the frame the last pass reached (`resume_from`) where it is the
        same footage (FrameSource.footage_key: its stated length, its first frame and a file's fingerprint);
        else read from its start as a new pass, nothing passed over and no stall counted: a live camera
        served over http:// with a stated size, taken for footage, serves new frames at each connection
        (read on, its first frames were dropped unrecorded, and it was failed after 3 connections: a
        review), a file replaced (by one of the same length and first frame too: its earlier frames were
        never read, a review)."""
        key = source.footage_key()
        if self.resume_from and self.other_footage(key):
            self.logger.debug("camera %s: reopened, other footage than the pass cut short at frame %d: read from"
                              " its start as a new pass", self.name, self.resume_from)  # fmt: skip
            self.passes += 1
            self.resume_from = self.stalled = 0
        self.footage = key
        source.resume_from = self.resume_from

    def other_footage(self, key: FootageKey | None) -> bool:
        """Whether footage reopened is other than the pass cut short: a file whose fingerprint (path, size,
        modification time) changed is; else its key differs, by the first frame where both first frames
        were read, else by the stated length alone. A first frame that did not grab or decode tells
        nothing: taken for other footage, such a file was read from its start under new frame ids at every
        reopening, for ever (a review), and one whose reader died at that first grab failed for good, the
        rest unread."""
        if key is None or self.footage is None or key[3] != self.footage[3]:
            return True
        told = all(k[1] is not None and k[2] for k in (key, self.footage))
        return key != self.footage if told else key[0] != self.footage[0]

    @staticmethod
    def closed_by_camera(source: FrameSource, lasted_s: float) -> bool:
        """Whether a live connection read to its end was closed by the camera after serving what it is, its
        end found at once (CLOSED_WITHIN_S): the frames its answer stated, all of them (a snapshot URL's one
        JPEG, a boot clip), or a stream of STABLE_STREAM_S or longer (a camera or NVR ending its sessions).
        Not so a stream stating no count that ends within seconds (an MJPEG camera failing after each frame,
        one reset as it crashes: as reopenings they read "connected", 0 errors and no alert while it gave 8%
        of its frames, a review), nor one dropped (no frame, its reader stopped, silent past the read
        timeout): source errors, reconnected from with backoff."""
        stated = source.stated_live
        served = (stated > 0 and source.reached >= stated) or lasted_s >= defaults.STABLE_STREAM_S
        return (source.is_live and source.reached > 0 and served and source.ended_because is None
                and source.end_wait_s is not None and source.end_wait_s < CLOSED_WITHIN_S)  # fmt: skip

    def reopen(self, source: FrameSource, opened_at: float) -> bool:
        """Whether a pass read is a live connection the camera closed after its frames (`closed_by_camera`),
        to reopen: counted (`on_reopen`), neither a source error nor a backoff step; said at INFO the first
        time and after a connection of STABLE_STREAM_S or longer (a long stream's end), at DEBUG else (each
        snapshot's); reopened a sample interval (REOPEN_INTERVAL_S at least) after the last open at the soonest:
        a snapshot camera is not polled flat out. False: not so closed, or stopped (meanwhile too)."""
        lasted_s = time.monotonic() - opened_at
        if self.stop.is_set() or not self.closed_by_camera(source, lasted_s):
            return False
        self.reopens += 1
        self.on_reopen()
        self.logger.log(
            logging.INFO if self.reopens == 1 or lasted_s >= defaults.STABLE_STREAM_S else logging.DEBUG,
            "camera %s: the camera closed the connection after %d frames (%.1f s): reopened, no error (a snapshot"
            " URL serves a frame a connection)", self.name, source.reached, lasted_s,
        )  # fmt: skip
        return not self.stop.wait(
            max(0.0, opened_at + max(1.0 / self.sample_fps, defaults.REOPEN_INTERVAL_S) - time.monotonic())
        )

    def pass_ended(self, source: FrameSource) -> None:
        """A pass read, unless stopped: a live stream's end is a drop (OSError); footage cut short is
        read on from where it stopped (FootageCutShortError); footage read to its end starts its backoff
        and its next pass afresh."""
        if self.stop.is_set():
            return
        if source.is_live:  # not closed by the camera after what it is (`closed_by_camera`)
            raise OSError(
                f"the stream ended ({source.ended_because})" if source.ended_because
                else "the stream ended (closed by the camera, or no frame within the read timeout)"
            )  # fmt: skip
        if source.ended_because or (source.is_stream and source.ended_early):
            raise self.cut_short(source)  # read on from the frame reached, after the backoff
        self.backoff.reset()
        self.resume_from = self.stalled = 0

    def fails_for_good(self, error: Exception) -> bool:
        """Whether the source error is not retried (said at ERROR): footage cut short
        defaults.FOOTAGE_STALLED_PASSES passes in a row at the same frame; a file that fails now fails
        again; so do a malformed URL and anything but a stream's I/O."""
        if isinstance(error, FootageCutShortError):
            if self.stalled < defaults.FOOTAGE_STALLED_PASSES:
                return False
            self.logger.error("camera %s: %s, %d passes in a row without getting past frame %d; not retried",
                              self.name, mask_url(str(error)), self.stalled, self.resume_from)  # fmt: skip
            return True
        if isinstance(error, InputError | OSError) and is_stream_uri(self.uri) and not uri_syntax_problem(self.uri):
            return False
        self.logger.error("camera %s: %s; not retried", self.name, mask_url(str(error)))
        return True

    def cut_short(self, source: FrameSource) -> FootageCutShortError:
        """A pass of footage cut short: the next reads on from the frame this one reached (`resume_from`),
        or, where it got no further than the one before, counts as stalled. Its reader stopped (killed,
        over its memory bound, hung), the file is not blamed: it was taken for truncated, and ended."""
        if source.reached > self.resume_from:
            self.resume_from, self.stalled = source.reached, 0
        else:
            self.stalled += 1
        why = (
            f"its reader stopped ({source.ended_because})" if source.ended_because
            else "the video ended before its stated length (the connection dropped?)"
        )  # fmt: skip
        return FootageCutShortError(f"{why} at frame {source.reached}")

    def say_connected(self, reopening: bool = False) -> None:
        """Opened: INFO after failed attempts (or refused credentials), or the first pass; DEBUG else (a
        connection the camera closed, `reopening`: each snapshot's)."""
        if self.refused:
            self.logger.info("camera %s: reconnected: its credentials accepted", self.name)
            self.refused = False
        elif reopening:
            self.logger.debug("camera %s: reopened", self.name)
        elif self.backoff.failures:
            self.logger.info("camera %s: reconnected after %d failed attempts", self.name,
                             self.backoff.failures)  # fmt: skip
        else:  # a looping file's later passes at DEBUG: it said so every pass, every 5 s for a short one
            self.logger.log(logging.DEBUG if self.passes else logging.INFO, "camera %s: connected to %s",
                            self.name, shown_source(self.uri))  # fmt: skip

    def credentials_refused(self, error: CredentialsRefusedError) -> None:
        """The camera refused the credentials: said at ERROR (once until it is back), "failed" meanwhile,
        tried again after defaults.CREDENTIALS_RETRY_S at least (lengthened at random: `credentials_jitter`)."""
        retry_s = stretched(defaults.CREDENTIALS_RETRY_S, self.credentials_jitter, self.rng)
        if not self.refused:
            self.logger.error("camera %s: %s: check the user and password in its URL; tried again in %.0f s",
                              self.name, mask_url(str(error)), retry_s)  # fmt: skip
        else:
            self.logger.debug("camera %s: credentials still refused; next attempt in %.0f s", self.name, retry_s)
        self.refused = True
        self.on_state("failed", self.errors)
        self.stop.wait(retry_s)
