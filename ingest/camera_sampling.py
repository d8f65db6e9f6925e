"""What an ingest node's camera thread does (`CameraSampling`, a base of IngestNode in ingest/node.py): it
waits for the thread it follows (a camera won back), keeps the camera's source open (ingest/reconnect.py,
reopening a dropped stream with backoff), tells its state for `alpr status` (`set_state`), dates its frames
after the last the frames log holds (`dated_until`), samples each pass (`sample`: a file played in real time
kept to its schedule), waits out a doubt on this node's claim before sampling (`claim_unsure`,
`claim_told`), hands each frame on (ingest/frame_handoff.py) and reports the frames of a pass it could not
read (`report_unread`)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import get_args

from common import defaults
from common.backoff import Backoff
from common.jobs import SkipReason
from ingest.camera_run import CameraRun, footage_tag, may_resume
from ingest.camera_silence import CameraSilence
from ingest.cameras import CameraConfig
from ingest.claims import CameraClaims
from ingest.clock import FOLLOW_WITHIN_S, CameraClock
from ingest.footage_resume import FootageResume
from ingest.frame_handoff import PENDING_POLL_S, PENDING_WAIT_S, FrameHandOff
from ingest.frame_source import FrameSource
from ingest.node_stop import CameraStop, NodeStop
from ingest.reconnect import SourceKeeper
from ingest.source_checks import is_stream_uri

log = logging.getLogger("ingest.node")
"""The node's logger: what a camera thread says is the node's, as it was before this module."""

INGEST_SKIP_REASONS = tuple(reason for reason in get_args(SkipReason) if reason != "too_old")
"""The reasons an ingest node skips a frame for (too_old is the detector's)."""

SCHEDULE_SLACK = 0.1
"""The share of a sample interval a file played in real time may run late before its schedule moves on."""


class CameraSampling(FrameHandOff, FootageResume):
    """One camera's thread: its source, its frames' dates, its passes."""

    stop: NodeStop
    states: dict[str, str]
    claims: CameraClaims
    cameras: list[CameraConfig]
    silence: CameraSilence

    def set_state(self, camera: CameraConfig, state: str, errors: int = 0) -> None:
        """The camera's state for `alpr status` (connected, reconnecting, failed or ended), and whether it
        failed for its metric (`alpr_camera_failed`: AlprCameraFailed; its error count alone said nothing)
        or ended (`alpr_camera_ended`); either way it samples nothing more and is not silent (CameraSilence)."""
        value = json.dumps({"state": state, "since": time.time(), "errors": errors})
        self.states[camera.id] = value  # written to Redis by the next depth refresh (refresh_depth), within 0.5 s
        label = self.metrics.camera(camera.id)
        self.metrics.camera_failed.labels(camera=label).set(state == "failed")
        self.metrics.camera_ended.labels(camera=label).set(state == "ended")
        self.silence.state(camera.id, state)  # no Redis here: a camera thread never waits on it (a stop did)

    def camera_loop(
        self, camera: CameraConfig, stop: CameraStop | None = None, before: threading.Thread | None = None,
        spread_s: float = 0.0,
    ) -> None:  # fmt: skip
        """Sample one camera until its footage ends (unless looping: a file, or a URL declared `footage: true`),
        the file fails, or the node stops. A live stream (any other stream URL) that drops,
        or ends (a camera closing the connection, or silent past the read timeout), is reopened with
        backoff, which starts afresh only after STABLE_STREAM_S connected: one WARNING when lost, one INFO
        when back; a camera that serves a frame per connection is not polled flat out. A URL that cannot
        be opened is retried so, footage or not.

        `stop` ends it: the node's stop, or the camera lost to another node (`lose`). A camera won back
        waits for its thread of `before` to end (the frame it held recorded, its source closed); its first open
        waits `spread_s` (`start_spread_s`: the node's first claim round alone).

        From its start (IngestNode.claimed), the camera is silent (alpr_camera_silent) once it samples
        nothing for long (ingest/camera_silence.py), this thread dead or alive, until it ends, fails for good
        or is lost."""
        stop = stop or self.stop.camera(camera.id)
        while before is not None and before.is_alive() and not stop.is_set():
            before.join(PENDING_WAIT_S)
        try:
            if not stop.is_set() and not stop.wait(spread_s):
                self.sample_camera(camera, stop)
        finally:
            if self.ledger and stop.lost:  # its frames in hand recorded, its watermark is the new holder's
                self.ledger.released(camera.id)
            elif self.ledger:  # its last frame's watermark holds no read back any longer
                self.ledger.ended(camera.id)

    def sample_camera(self, camera: CameraConfig, stop: CameraStop | None = None) -> None:
        """camera_loop's work: open, sample and reopen the camera's source until it ends or `stop` (SourceKeeper,
        which `alpr run` reconnects a live stream with too). A camera lost tells no state: the new holder's."""
        stop = stop or self.stop.camera(camera.id)
        self.metrics.start_camera(camera.id, INGEST_SKIP_REASONS)
        dated_until_s = self.dated_until(camera)
        if (taken := self.gap_from.get(camera.id)) is not None:  # its previous holder's last frame, logged
            self.gap_from[camera.id] = (taken[0], max(taken[1], dated_until_s))
        run = CameraRun(camera, int(self.clock.now() * 1000), CameraClock(self.clock, dated_until_s),
                        last_captured_s=dated_until_s, stop=stop)  # fmt: skip
        keeper = self.source_keeper(camera, stop)

        def read_pass(source: FrameSource) -> None:
            self.silence.reading(camera.id, lambda: source.reached)  # passing over finished footage is alive
            run.passes = keeper.passes
            run.tag = footage_tag(run, source)
            self.sample(run, source)
            report_unread(camera, source)

        keeper.run(read_pass)

    def source_keeper(self, camera: CameraConfig, stop: CameraStop) -> SourceKeeper:
        """What keeps the camera's source open: a stream URL not declared `footage: true` is a live camera
        (read live whatever it answers, never footage that ends); its reconnect waits, and those after
        refused credentials, jittered (defaults.RECONNECT_JITTER: not in lockstep with the node's other
        cameras behind one recorder; the latter lengthened, never shortened)."""
        label = self.metrics.camera(camera.id)
        return SourceKeeper(
            camera.source, camera.sample_fps, camera.id, stop, camera.loop,
            on_state=lambda state, errors: None if stop.lost else self.set_state(camera, state, errors),
            on_error=self.metrics.source_errors.labels(camera=label).inc,
            on_reopen=self.metrics.source_reopens.labels(camera=label).inc,
            logger=log, memory_mb=self.settings.capture_memory_mb, rtsp_transport=camera.rtsp_transport,
            backoff=Backoff(*defaults.RECONNECT_BACKOFF_S, jitter=defaults.RECONNECT_JITTER),
            live=is_stream_uri(camera.source) and not camera.footage,
            tell_recording="footage" not in camera.model_fields_set, credentials_jitter=defaults.RECONNECT_JITTER,
        )  # fmt: skip

    def dated_until(self, camera: CameraConfig) -> float:
        """The time the camera's frames are dated after: its last frame logged by the nodes before this
        one, or how far the sighting pool has grouped it (FrameLedger.last_dated; 0 without a ledger). A
        node started from nothing: recorded footage switched to a new file was dated up to 69 s before
        the last file's frames (footage read faster than it plays is dated ahead of the clock), and a node
        whose host's clock was two minutes behind dated its frames before its predecessor's: the two
        recordings' cars merged, or were never sighted (a chaos review). A live camera's frames are dated
        from there by a clock that slews back to the node's (CameraClock), footage's passes after it.

        The camera is registered with the ledger here (FrameLedger.claimed): its watermark is this node's
        from now on, sampling or not. Where its first frame may be dated before now (footage that may
        resume, dated as first read: `may_resume`), the watermark is held at that time until the frame is
        sampled. A live camera's frames are dated after a moment ago, and its watermark is not held: a
        camera that could not be opened would have held back the sighting of its last car until it was."""
        if self.ledger is None:
            return 0.0
        dated_until_s, known = self.ledger.last_dated(camera.id)
        self.ledger.claimed(camera.id, dated_until_s if may_resume(camera) else 0.0)
        if not known:
            log.warning("camera %s: the frames log cannot say when its last frame was dated (Postgres away):"
                        " dated from %s; a frame dated before one logged already is never grouped", camera.id,
                        "the last frame the spool holds" if dated_until_s else "this host's clock")  # fmt: skip
        ahead_s = dated_until_s - self.clock.now()
        if ahead_s > FOLLOW_WITHIN_S:
            log.log(
                logging.INFO if not camera.realtime else logging.WARNING,
                "camera %s: its last frame is dated %.1f s ahead of this node's clock: its frames are dated"
                " after it%s", camera.id, ahead_s,
                "" if not camera.realtime else ", slewing back to the clock at half speed",
            )  # fmt: skip
        return dated_until_s

    def sample(self, run: CameraRun, source: FrameSource) -> None:
        """Sample one pass of the source into the pending jobs (or skip, when the chain is full). A file
        played in real time keeps one schedule across the passes of a loop: each pass starts a sample
        interval after the last frame of the one before (a looping single image ran unpaced: each pass
        started at once, thousands of frames a second). Held up past a sample interval, it plays on from
        where it stood, as a paused video does: no burst to catch up. A pass that reads on where the one
        before was cut short (`source.resume_from`: ingest/reconnect.py) is the same pass: dated on from
        the same start, played on from its first frame left (recorded footage: `footage_pass`)."""
        camera = run.camera
        started = max(time.monotonic(), run.next_pass_s)
        resumed = None  # recorded footage read before: the frames it finished, its date once one is left
        reading_on = bool(source.resume_from) and not source.is_live
        if not source.is_live and not camera.realtime:
            resumed = self.footage_pass(run, source)
        for frame in source.samples():
            if run.stop.is_set():
                return
            if reading_on:  # played on from its first frame left, not that frame's time from now
                started, reading_on = started - frame.source_time_s, False
            if resumed is not None:  # the first frame left: its time in the footage is known now
                run.start_footage_pass(self.resumed_start(run, source, resumed, frame.source_time_s))
                resumed = None
            if camera.realtime and not source.is_live:
                interval_s = 1.0 / camera.sample_fps
                if started + frame.source_time_s < run.stamped_at + interval_s * (1 - SCHEDULE_SLACK):
                    # held up (the chain full, Redis away): it plays on an interval after the frame that
                    # waited; caught up at once, it dated seconds of footage within 50 ms
                    started = run.stamped_at + interval_s - frame.source_time_s
                if run.stop.wait(max(0.0, started + frame.source_time_s - time.monotonic())):
                    return  # not yet due when the node stopped: not sampled (it was, and dated early)
                run.next_pass_s = started + frame.source_time_s + 1.0 / camera.sample_fps
            held_back = source.is_live or camera.realtime  # (recorded footage waits: nothing lost)
            if self.claim_unsure(camera.id) and not self.claim_told(run, held_back):
                return  # another node holds it now, or the node stopped: not sampled
            with self.intake:
                if self.closed:  # this thread outlived the node's stop wait: its frame is never sampled
                    return
                self.in_flight += 1
            try:
                self.hand_on(run, source, frame)
            finally:
                with self.intake:
                    self.in_flight -= 1
                    self.intake.notify_all()

    def claim_unsure(self, camera_id: str) -> bool:
        """Whether this node's claim on the camera is in doubt while Redis answers: no round of claims has
        answered within their TTL (this node frozen: another may have taken the camera), or the camera was
        just found lost. With Redis away the node samples on, as it did (its frames skipped meanwhile)."""
        return not self.packer.redis_down and (self.claims.unconfirmed() or camera_id not in self.claims.held)

    def claim_told(self, run: CameraRun, held_back: bool = True) -> bool:
        """Wait, up to a renewal, for the round of claims that ends the doubt (the packing runs it at once:
        CameraClaims.hurry; it waited for the next renewal, up to CAMERA_CLAIM_RENEW_S); whether the camera
        may be sampled. A node resumed from a freeze sampled a frame of each camera before its first round
        told it another node held one: a frame of that camera sampled by both. The frames the camera's rate
        would have given meanwhile (`held_back`: a live camera or its stand-in; recorded footage only
        waits) are counted skipped as claim_unsure where it samples on: they were neither sampled nor
        counted (a review); they have no frame id, so no row in the frames log."""
        began = time.monotonic()
        deadline = began + defaults.CAMERA_CLAIM_RENEW_S
        while self.claim_unsure(run.camera.id) and time.monotonic() < deadline:
            self.claims.hurry()
            if run.stop.wait(PENDING_POLL_S):
                return False
        if run.stop.is_set():
            return False
        if held_back and (unsampled := int((time.monotonic() - began) * run.camera.sample_fps)):
            self.unsampled(run, unsampled, "claim_unsure")
        return True


def start_spread_s(cameras: int, rng: random.Random | None = None) -> float:
    """A random wait before a camera's first open, up to defaults.CAMERA_START_SPREAD_S per other camera of
    the node's first claim round (at most CAMERA_START_SPREAD_MAX_S): a node's cameras opened all at once at
    start (each open a child process), and those behind one recorder hit it in the same instant (a review).
    A lone camera: none. A camera won later (taken over, won back) waits none: it was dark meanwhile."""
    longest_s = min(defaults.CAMERA_START_SPREAD_MAX_S, defaults.CAMERA_START_SPREAD_S * max(0, cameras - 1))
    return (rng or random).uniform(0.0, longest_s) if longest_s > 0 else 0.0


def report_unread(camera: CameraConfig, source: FrameSource) -> None:
    """One WARNING per frame of a pass that could not be read (as many as the source kept), one for the rest."""
    for failure in source.failures:
        log.warning("camera %s: %s", camera.id, failure)
    if source.failure_count > len(source.failures):
        log.warning("camera %s: %d more frames could not be read", camera.id,
                    source.failure_count - len(source.failures))  # fmt: skip
