"""An ingest node's frames to pack (`FrameHandOff`, a base of IngestNode in ingest/node.py): a camera
thread numbers and dates a sampled frame and hands it on (`hand_on`) — encoded into the pending frames the
node's main thread packs into jobs, or skipped and recorded with why (the chain full, Redis away, the
node busy or stopping, an undecodable or unencodable image, a JPEG over MAX_FRAME_BYTES: `too_big`); footage's
frame waits for room instead (`wait_for_room`), a file played in real time counting the frames its rate
would have given meanwhile (`unsampled`); a camera taken over has its unsampled span counted at its first
frame (`gap`); at the stop what is still pending is recorded as skipped (`drain_pending`)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from common import defaults
from common.config import Settings
from common.errors import InputError
from common.frame_log import FrameRecord
from common.frame_store import encode_jpeg, frame_key, jpeg_digest, stored_frame_key
from common.jobs import FrameRef, SkipReason
from common.metrics import Metrics
from common.roi import RoiWatch
from ingest.camera_run import CameraRun
from ingest.camera_silence import CameraSilence
from ingest.frame_source import FrameSource, SampledFrame, UnreadFrame
from ingest.job_packer import JobPacker
from ingest.ledger import FrameLedger
from ingest.pending_frames import PendingFrames

if TYPE_CHECKING:
    from ingest.node import NodeSummary

log = logging.getLogger("ingest.node")
"""The node's logger: what a camera thread says of its frames is the node's, as it was before this module."""

PENDING_WAIT_S = 0.5
"""How long the node's stop waits for a camera thread handing a frame on (its encoding, at most)."""

PENDING_POLL_S = 0.05
"""How often a file camera's frame looks for room among the frames to pack."""


class FrameHandOff:
    """The camera threads' side of the frames to pack, and the node's drain of them at its stop."""

    settings: Settings  # (each set by IngestNode.__init__)
    metrics: Metrics
    ledger: FrameLedger | None
    summary: NodeSummary
    pending: PendingFrames
    too_large_said: set[str]
    intake: threading.Condition
    closed: bool
    in_flight: int
    recorded_depth: int
    roi_watch: RoiWatch
    gap_from: dict[str, tuple[str, float]]
    packer: JobPacker
    silence: CameraSilence

    def gap(self, camera_id: str, first_s: float) -> None:
        """A camera taken over has sampled its first frame here (dated `first_s`): the span since its previous
        holder's last frame (the frames log's: `sample_camera`, else that node's last renewal) is counted and
        said."""
        previous, last_s = self.gap_from.pop(camera_id)
        span_s = first_s - last_s
        if span_s > 0 and last_s > 0:
            self.metrics.camera_unsampled_seconds.labels(camera=self.metrics.camera(camera_id)).inc(span_s)
            log.warning("camera %s: unsampled for %.1f s between the last frame of ingest node %r and this"
                        " node's first", camera_id, span_s, previous)  # fmt: skip

    def skip(self, ref: FrameRef, reason: SkipReason) -> None:
        self.metrics.frames_skipped.labels(camera=self.metrics.camera(ref.camera_id), reason=reason).inc()
        self.summary.skipped[ref.camera_id] += 1
        if self.ledger:
            self.ledger.add([FrameRecord(ref, "skipped", reason.replace("_", " "))])

    def unread(self, ref: FrameRef, frame: UnreadFrame) -> None:
        """A sampled frame without pixels: skipped when over the pixel limit, else corrupt (undecodable);
        counted and recorded like any other."""
        if frame.problem == "too_large":
            self.skip(ref, "too_large")
            return
        self.metrics.frames_corrupt.labels(stage="ingest").inc()
        self.summary.skipped[ref.camera_id] += 1
        if self.ledger:
            self.ledger.add([FrameRecord(ref, "corrupt", frame.detail)])

    def too_big(self, ref: FrameRef, size: int) -> None:
        """A frame whose JPEG is over MAX_FRAME_BYTES, which the workers leave unread: skipped as too_large
        before it is stored, the camera warned of once. An 8K noise camera's frames (36 MB at quality 95) filled
        Redis with 801 MB the detector never read (a review)."""
        self.skip(ref, "too_large")
        if ref.camera_id not in self.too_large_said:
            self.too_large_said.add(ref.camera_id)
            log.warning("camera %s: a frame of %d bytes as JPEG at quality %d, more than MAX_FRAME_BYTES (%d) that"
                        " the workers read: skipped as too_large, as every such frame will be (lower"
                        " ALPR_JPEG_QUALITY or the camera's resolution)", ref.camera_id, size,
                        self.settings.jpeg_quality, defaults.MAX_FRAME_BYTES)  # fmt: skip

    def unsampled(self, run: CameraRun, count: int, reason: SkipReason) -> None:
        """`count` frames the camera's rate would have given, never sampled (held back: no frame id, so no
        row in the frames log, as the README says of claim_unsure), counted skipped for `reason`."""
        self.metrics.frames_skipped.labels(camera=self.metrics.camera(run.camera.id), reason=reason).inc(count)
        self.summary.skipped[run.camera.id] += count
        self.summary.unsampled[run.camera.id] += count
        self.silence.heard(run.camera.id)

    def wait_for_room(self, run: CameraRun, busy: Callable[[], bool]) -> None:
        """Wait, PENDING_POLL_S at a time, while `busy` (a file's frame waiting for room among the frames to
        pack, or for the chain) and the camera runs. A file played in real time stands in for a live camera:
        the frames its rate would have given while the packing finds Redis away (it waits the outage out,
        and the frames to pack fill up) are counted skipped as redis_unavailable as their times pass, as a
        live camera's frames are (`unsampled`: never sampled, no row). A review: looped files showed no skip
        and no alert through a 6-minute Redis outage, their counters flat, while the live cameras' rose."""
        stand_in, interval_s = run.camera.realtime, 1.0 / run.camera.sample_fps
        away_s, last = 0.0, time.monotonic()
        while busy() and not run.stop.is_set():
            self.silence.heard(run.camera.id)  # footage held back is alive (AlprCameraSilent)
            run.stop.wait(PENDING_POLL_S)
            now = time.monotonic()
            if stand_in and self.packer.redis_down:
                away_s += now - last
                if missed := int(away_s / interval_s):
                    self.unsampled(run, missed, "redis_unavailable")
                    away_s -= missed * interval_s
            last = now

    def recorded_jobs_ahead(self) -> float:
        """The chain's depth in jobs as recorded footage waits on it: the queues' last read depth and the
        frames handed on but not queued yet (pending, or in the packer's hands), as jobs. The depth alone let
        a starved packer's pending frames (up to 4 jobs' worth) through while it still read the depth before
        them (a busy run: 6 jobs queued where 3 were the share)."""
        return self.packer.depth + (self.pending.qsize() + self.packer.in_hand) / self.settings.frames_per_job

    def hand_on(self, run: CameraRun, source: FrameSource, frame: SampledFrame | UnreadFrame) -> None:
        """Number one sampled frame and put it in the pending jobs, or record why not. A live stream's
        frame finding the node's hands full is skipped at once (`node_busy`): capture must not fall behind
        the camera; footage's (a file's, or a video's served over http://) waits for room (nothing is lost
        by waiting) unless the node stops. A full chain (back-pressure) skips a live camera's frame, and
        footage's played in real time (a live camera's stand-in); recorded footage (`realtime: false`)
        waits for the chain instead: it lost half its frames to a chain that merely had not caught up. It
        waits too while the packer holds footage the full frame store refused (JobPacker.holding)."""
        camera = run.camera
        self.silence.heard(camera.id)  # sampled (AlprCameraSilent)
        offline = not source.is_live and not camera.realtime
        if not source.is_live:  # a file's frame waits for room before it is stamped: its age starts now
            self.wait_for_room(run, lambda: self.pending.full() or (
                offline and (self.recorded_jobs_ahead() >= self.recorded_depth or self.packer.holding)))  # fmt: skip
        frame_id = run.frame_id(frame)
        run.stamped_at = time.monotonic()
        ref = FrameRef(
            frame_id=frame_id, camera_id=camera.id, seq=run.seq, frame_index=frame.index,
            captured_at_s=run.date(frame_id, frame.source_time_s, frame.lag_s), source_time_s=frame.source_time_s,
            key=frame_key(frame_id), region=camera.region, roi=camera.roi, recorded=offline,
        )  # fmt: skip
        if camera.id in self.gap_from:  # taken over: its first frame here
            self.gap(camera.id, ref.captured_at_s)
        run.seq += 1
        if self.ledger:
            self.ledger.sampled(ref, dated_back=source.dates_back)
        if isinstance(frame, UnreadFrame):
            self.unread(ref, frame)
            return
        self.roi_watch.check(camera.id, camera.roi, (frame.image.shape[1], frame.image.shape[0]))
        if self.packer.depth >= self.settings.max_queue_depth:
            # recorded footage: stopped waiting; a live camera: the chain full, or the depth unknown
            away = self.packer.redis_down
            self.skip(ref, "node_stopped" if offline else "redis_unavailable" if away else "backpressure")
            return
        try:
            data = encode_jpeg(frame.image, self.settings.jpeg_quality)
        except InputError:  # an image no JPEG can hold: recorded, the camera goes on
            self.skip(ref, "unencodable")
            return
        if len(data) > defaults.MAX_FRAME_BYTES:  # no worker would read it: never stored
            self.too_big(ref, len(data))
            return
        digest = jpeg_digest(data)  # what every stage must find under its key, which ends with its start
        ref = ref.model_copy(update={"digest": digest, "key": stored_frame_key(frame_id, digest)})
        while True:
            with self.intake:  # never after the node drained what is pending: that frame had no record
                if self.closed:
                    self.skip(ref, "node_stopped")
                    return
                with contextlib.suppress(queue.Full):
                    self.pending.put_nowait((ref, data))
                    return
            if source.is_live or run.stop.is_set():
                away = self.packer.redis_down  # the packing waits it out
                busy: SkipReason = "redis_unavailable" if away else "node_busy"
                self.skip(ref, busy if source.is_live else "node_stopped")
                return
            self.wait_for_room(run, lambda: not self.pending.fits(len(data)))  # then the stop is checked

    def drain_pending(self) -> None:
        """Frames sampled but never packed into a job (the node stopping): recorded as skipped. Camera
        threads still alive (stuck in a read past the stop wait) sample nothing after this; one handing
        a frame on is waited for (it takes at most PENDING_WAIT_S)."""
        with self.intake:
            self.closed = True
            self.intake.wait_for(lambda: self.in_flight == 0, timeout=2 * PENDING_WAIT_S)
        while True:
            try:
                ref, _ = self.pending.get_nowait()
            except queue.Empty:
                return
            self.skip(ref, "node_stopped")
