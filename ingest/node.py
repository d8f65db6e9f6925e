"""An ingest node: its life (claim the cameras, start the ledger and one thread per camera, stop, drain)
and what its camera threads do — sample frames (reconnecting dropped streams with backoff), number and
date them (ingest/camera_run.py), resume recorded footage read before, and hand each frame on to the
frames to pack or record why not. The node's main thread packs them into detect jobs
(ingest/job_packer.py) — JPEG bytes into the frame store with a TTL, frame references onto the detect
queue. When the chain's queues hold more jobs than the limit (every waiting job holds frames in Redis),
cameras skip frames and count them: memory stays bounded, whatever the workers do. Every sampled
frame, queued, skipped or undecodable (`corrupt`), gets a row in the frames log (through the ledger).
Frame ids of file sources derive from the file and the position, so a restarted node that reads a
file again is recognised and nothing is logged twice."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from secrets import token_hex
from typing import get_args

import redis

from common import defaults
from common.config import Settings
from common.credentials import shown_source
from common.errors import InputError
from common.frame_log import FrameRecord, LoggedFrame
from common.frame_store import encode_jpeg, frame_key, jpeg_digest, stored_frame_key
from common.jobs import FrameRef, SkipReason
from common.metrics import Metrics
from common.queues import CAMERA_STATE_KEY
from common.roi import RoiWatch
from common.role_settings import role_settings
from ingest.camera_fingerprint import camera_fingerprint
from ingest.camera_run import CameraRun, footage_tag, may_resume
from ingest.cameras import CameraConfig
from ingest.claims import CameraClaims, ClaimRound
from ingest.clock import FOLLOW_WITHIN_S, CameraClock, CaptureClock
from ingest.job_packer import JobPacker
from ingest.ledger import FrameLedger
from ingest.node_stop import CameraStop, NodeStop
from ingest.reconnect import SourceKeeper
from ingest.sources import FrameSource, SampledFrame, UnreadFrame

log = logging.getLogger(__name__)

INGEST_SKIP_REASONS = tuple(reason for reason in get_args(SkipReason) if reason != "too_old")
"""The reasons an ingest node skips a frame for (too_old is the detector's)."""

PENDING_WAIT_S = 0.5
"""How long the node's stop waits for a camera thread handing a frame on (its encoding, at most)."""

PENDING_POLL_S = 0.05
"""How often a file camera's frame looks for room among the frames to pack."""


HOST_PART_CHARS = 64
"""The most characters of the host name a node's id (and so its jobs' batch ids) carries."""


def host_part(hostname: str) -> str:
    """The host name as a node id may carry it (letters, digits, `_ . -`; others become `-`): a host
    named "cam node" failed the first job's id check, and the node stopped with its frames unrecorded."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", hostname)[:HOST_PART_CHARS] or "host"


@dataclass
class NodeSummary:
    """Per camera, frames queued and frames not queued (skipped, or undecodable), and the jobs queued."""

    ingested: Tally[str] = field(default_factory=Tally)
    skipped: Tally[str] = field(default_factory=Tally)
    unsampled: Tally[str] = field(default_factory=Tally)
    """Of those skipped, the frames the camera's rate would have given that were never sampled (claim_unsure;
    a file played in real time while Redis was away): no frame id, so no row in the frames log. A review read
    the closing summary's queued + skipped as the frames logged: 97 against 80 rows after a Redis restart."""
    jobs: int = 0
    lost: dict[str, str] = field(default_factory=dict)
    """The cameras another node took from this one (its claims lapsed: ingest/claims.py) and not won back
    by its end, each with that node: it stopped sampling them alone and stood by for them."""


SCHEDULE_SLACK = 0.1
"""The share of a sample interval a file played in real time may run late before its schedule moves on."""


class IngestNode:
    def __init__(
        self,
        cameras: list[CameraConfig],
        settings: Settings,
        queues: redis.Redis,
        frames: redis.Redis,
        metrics: Metrics,
        ledger: FrameLedger | None,
        clock: CaptureClock | None = None,
        register: Callable[[list[CameraConfig]], None] | None = None,
    ):
        self.cameras = [c for c in cameras if c.enabled]
        self.register = register  # the cameras table's rows of the cameras this node claims (alpr/ingest_command.py)
        self.settings, self.metrics, self.ledger = settings, metrics, ledger
        self.queues = queues
        self.pending: queue.Queue[tuple[FrameRef, bytes]] = queue.Queue(maxsize=settings.frames_per_job * 4)
        self.stop = NodeStop()  # the node's, which stops each camera's too (a camera lost stops alone)
        self.intake = threading.Condition()  # guards `closed` and `in_flight`
        self.closed = False  # pending drained: a camera thread that outlived the stop samples nothing more
        self.in_flight = 0  # camera threads between sampling a frame and handing it on
        self.recorded_depth = max(1, int(settings.max_queue_depth * defaults.RECORDED_QUEUE_SHARE))
        """Jobs queued past which recorded footage waits: its frames must be detected within their TTL."""
        self.roi_watch = RoiWatch(log)  # each camera's ROI against its frames' size (warned once)
        self.clock = clock or CaptureClock()  # the frames' dates, their store time, the ledger's watermarks
        # two nodes of one process (tests, an embedding) made in one millisecond had one id, one batch ids
        self.node_id = f"{host_part(socket.gethostname())}-{os.getpid()}-{int(time.time() * 1000)}-{token_hex(2)}"
        self.summary = NodeSummary()
        published = role_settings(settings, "ingest")  # with each claim; and as a metric (common/role_settings.py)
        metrics.settings_info.labels(pool="ingest", fingerprint=published.fingerprint).set(1)
        key = settings.secret("job_key")
        fingerprints = {c.id: camera_fingerprint(c, key) for c in self.cameras}
        self.claims = CameraClaims(queues, self.node_id, [c.id for c in self.cameras], published.entry(), fingerprints)
        self.threads: list[threading.Thread] = []  # one per camera claimed (started as it is, again once won back)
        self.camera_threads: dict[str, threading.Thread] = {}  # camera id -> its latest thread
        self.gap_from: dict[str, tuple[str, float]] = {}  # cameras taken over: (previous holder, its last sign)
        self.registering: list[threading.Thread] = []
        for camera in self.cameras:
            metrics.camera_claimed.labels(camera=metrics.camera(camera.id)).set(0)
        self.states: dict[str, str] = {}  # camera id -> its state for `alpr status`, as last set
        self.packer = JobPacker(
            settings, queues, frames, self.pending, node_id=self.node_id, clock=self.clock, metrics=metrics,
            ledger=ledger, claims=self.claims, summary=self.summary, states=self.states, stop=self.stop,
            skip=self.skip, on_claims=self.claimed,
        )  # fmt: skip

    def claimed(self, found: ClaimRound | None) -> None:
        """A round of claims (ingest/claims.py): each camera another node took from this one stops here
        (`lose`); each camera newly this node's registered in the cameras table, counted, and sampled from
        now on (every camera, presumed, where Redis could not say); a camera taken over has its unsampled
        span counted at its first frame (`gap`), and one whose previous holder gave it other settings is
        counted too; each camera another live node holds giving it other settings is shown
        (alpr_camera_settings_differ). A node refused a camera writes nothing of it."""
        for camera_id, owner in sorted(found.lost.items()) if found else []:
            self.lose(camera_id, owner, found is not None and camera_id in found.overwritten)
        won = [c for c in self.cameras if found is None or c.id in {w.camera for w in found.won}]
        for claim in found.won if found else []:
            label = self.metrics.camera(claim.camera)
            if claim.taken_over:
                self.metrics.camera_takeovers.labels(camera=label).inc()
                self.gap_from[claim.camera] = (claim.previous, claim.previous_renewed_s)
            if claim.settings_differ:
                self.metrics.camera_settings_changed.labels(camera=label).inc()
        if found is not None:  # a camera stood by for whose live holder's cameras file disagrees with this one's
            differ: dict[str, bool] = {}  # by label (cameras past MAX_CAMERA_LABELS share one)
            for camera in self.cameras:
                label = self.metrics.camera(camera.id)
                differ[label] = differ.get(label, False) or bool(found.differ_held.get(camera.id))
            for label, disagree in differ.items():
                self.metrics.camera_settings_differ.labels(camera=label).set(int(disagree))
        if won and self.register is not None:
            registering = threading.Thread(target=self.register, args=(won,), name="register-cameras", daemon=True)
            registering.start()
            self.registering.append(registering)
        for camera in won:
            self.summary.lost.pop(camera.id, None)
            self.metrics.camera_claimed.labels(camera=self.metrics.camera(camera.id)).set(1)
            args = (camera, self.stop.camera(camera.id), self.camera_threads.get(camera.id))  # (the thread before:
            thread = threading.Thread(target=self.camera_loop, args=args, name=f"camera-{camera.id}", daemon=True)
            self.camera_threads[camera.id] = thread  # a camera lost, won back)
            self.threads.append(thread)
            thread.start()

    def lose(self, camera_id: str, owner: str, overwritten: bool = False) -> None:
        """Another node holds a camera this node was sampling (this node's claim on it lapsed: Redis away past
        the claim's TTL, or this node frozen; or it was `overwritten` before it lapsed: another node judged
        this one ended, or a client of Redis wrote it; a review: such a claim was said to have lapsed): that
        camera alone stops here. Its thread ends after the frame in hand (recorded as any), closing its source;
        its state for `alpr status` and its watermark are left to the new holder (ingest/ledger.py:
        `released`), and the node stands by for it as for any camera another node holds (ingest/claims.py
        tries it again as that claim lapses). The node stopped whole: every other camera it sampled dark
        until an operator restarted it."""
        others = "its other cameras go on" if self.claims.held else "it samples no camera now"
        how = (f"since this node's claim on it lapsed (Redis away or this node frozen past"
               f" {defaults.CAMERA_CLAIM_TTL_S:.0f} s)" if not overwritten else "while this node still held it (its"
               " claim overwritten before it could lapse: a node of this host that judged this one ended, or a"
               " client of Redis)")  # fmt: skip
        log.warning("camera %s: claimed by ingest node %r %s: this node stops sampling it and stands by for it; %s",
                    camera_id, owner, how, others)  # fmt: skip
        self.summary.lost[camera_id] = owner
        self.stop.lose(camera_id)
        if self.ledger:  # (again once its thread ends, after its last frame; now for a thread ended before)
            self.ledger.released(camera_id)
        self.states.pop(camera_id, None)  # (written again with every depth refresh: the new holder's now)
        label = self.metrics.camera(camera_id)
        self.metrics.camera_claimed.labels(camera=label).set(0)
        self.metrics.camera_failed.labels(camera=label).set(0)  # its failure, if any, is the holder's to tell

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

    def set_state(self, camera: CameraConfig, state: str, errors: int = 0) -> None:
        """The camera's state for `alpr status` (connected, reconnecting, failed or ended), and whether it
        failed for its metric (`alpr_camera_failed`: AlprCameraFailed; its error count alone said nothing)."""
        value = json.dumps({"state": state, "since": time.time(), "errors": errors})
        self.states[camera.id] = value  # written again with every depth refresh (refresh_depth)
        self.metrics.camera_failed.labels(camera=self.metrics.camera(camera.id)).set(state == "failed")
        with contextlib.suppress(redis.RedisError):
            self.queues.hset(CAMERA_STATE_KEY, camera.id, value)

    def camera_loop(
        self, camera: CameraConfig, stop: CameraStop | None = None, before: threading.Thread | None = None
    ) -> None:
        """Sample one camera until its footage ends (unless looping: a file, or a video served over
        http://, which states its frames), the file fails, or the node stops. A live stream that drops,
        or ends (a camera closing the connection, or silent past the read timeout), is reopened with
        backoff, which starts afresh only after STABLE_STREAM_S connected: one WARNING when lost, one INFO
        when back; a camera that serves a frame per connection is not polled flat out. A URL that cannot
        be opened is retried so, footage or not.

        `stop` ends it: the node's stop, or the camera lost to another node (`lose`). A camera won back
        waits for its thread of `before` to end (the frame it held recorded, its source closed)."""
        stop = stop or self.stop.camera(camera.id)
        while before is not None and before.is_alive() and not stop.is_set():
            before.join(PENDING_WAIT_S)
        try:
            if not stop.is_set():
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
        source_errors = self.metrics.source_errors.labels(camera=self.metrics.camera(camera.id))
        keeper = SourceKeeper(
            camera.source, camera.sample_fps, camera.id, stop, camera.loop,
            on_state=lambda state, errors: None if stop.lost else self.set_state(camera, state, errors),
            on_error=source_errors.inc,
            logger=log, memory_mb=self.settings.capture_memory_mb, rtsp_transport=camera.rtsp_transport,
        )  # fmt: skip

        def read_pass(source: FrameSource) -> None:
            run.passes = keeper.passes
            run.tag = footage_tag(run, source)
            self.sample(run, source)
            report_unread(camera, source)

        keeper.run(read_pass)

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
        where it stood, as a paused video does: no burst to catch up."""
        camera = run.camera
        started = max(time.monotonic(), run.next_pass_s)
        resumed = None  # recorded footage read before: the frames it finished, its date once one is left
        if not source.is_live and not camera.realtime and (resumed := self.resume(run, source)) is None:
            run.start_footage_pass()
        for frame in source.samples():
            if run.stop.is_set():
                return
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

    def unsampled(self, run: CameraRun, count: int, reason: SkipReason) -> None:
        """`count` frames the camera's rate would have given, never sampled (held back: no frame id, so no
        row in the frames log, as the README says of claim_unsure), counted skipped for `reason`."""
        self.metrics.frames_skipped.labels(camera=self.metrics.camera(run.camera.id), reason=reason).inc(count)
        self.summary.skipped[run.camera.id] += count
        self.summary.unsampled[run.camera.id] += count

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
            run.stop.wait(PENDING_POLL_S)
            now = time.monotonic()
            if stand_in and self.packer.redis_down:
                away_s += now - last
                if missed := int(away_s / interval_s):
                    self.unsampled(run, missed, "redis_unavailable")
                    away_s -= missed * interval_s
            last = now

    def resume(self, run: CameraRun, source: FrameSource) -> dict[str, LoggedFrame] | None:
        """Recorded footage read before, in part or whole (a node restarted): the frames the frames log
        holds as ended for good are passed over; every frame of it the log holds (frame id -> index,
        capture time, finished) is returned for `resumed_start` to date the rest by; None: none was
        finished, or the log cannot say (read it all from now). A restarted node read the whole file
        again: hours of footage detected and read anew to log nothing new (reads are keyed by frame id)."""
        camera = run.camera
        if self.ledger is None or camera.loop or source.is_stream:  # footage served over http:// is named by
            return None  # the run (footage_tag): none of it was finished before
        logged = self.ledger.logged(run.frame_id_at(index, tag) for index, tag in source.positions())
        if logged is None:
            log.warning("camera %s: the frames log cannot say how much of %s was read before: it is read"
                        " from its start", camera.id, shown_source(camera.source))  # fmt: skip
            return None
        finished = {frame_id for frame_id, frame in logged.items() if frame.finished}
        if not finished:
            return None
        source.passed_over = lambda index, tag: run.frame_id_at(index, tag) in finished
        log.info("camera %s: %d frames of %s were finished before: the rest is read", camera.id, len(finished),
                 shown_source(camera.source))  # fmt: skip
        return logged

    def resumed_start(
        self, run: CameraRun, source: FrameSource, logged: dict[str, LoggedFrame], first_left_s: float
    ) -> float | None:
        """The date of a resumed pass's start, once its first frame left (at `first_left_s` in the footage)
        is read: as the first read dated it (each frame passed over so far tells it: its capture time less
        its time in the footage), so that a car the restart cut in two is one pass (dated on from the
        restart, its later reads came 30 s or more after its earlier ones: two sightings, and a listed
        plate two alerts; a fault drill) — unless the sighting pool has grouped the camera past that frame
        meanwhile, cannot be asked, or that frame's date lies more than half the frames' lifetime back (a
        pool meeting the camera first groups only that lifetime back; a dead node's watermark holds the
        pool no longer): then never its first frame before now, as the pool groups nothing dated before
        where it stands (a review: the reads of a resumed footage dated five minutes back made no
        sighting). Where no frame before it was passed over (the first still pending), the finished
        frames' times at the stated rate tell it (a video's by their index: its timestamps unknown
        until decoded).

        Dated as the first read dated it, the frames read again that the log holds keep the dates they
        were logged with (`CameraRun.logged_dates`), and the camera's watermark is held at the first
        frame left until it is sampled; a frame new to the log that would be dated at or before the
        camera's last frame (another recording read since) moves the pass on (CameraRun.capture_time)."""
        finished = {frame_id: frame for frame_id, frame in logged.items() if frame.finished}
        starts = [finished[frame_id].captured_s - time_s for (index, tag), time_s in source.passed.items()
                  if (frame_id := run.frame_id_at(index, tag)) in finished]  # fmt: skip
        if not starts:  # a review: dated from now, the car the restart cut in two was two sightings again
            starts = [frame.captured_s - source.time_of(frame.frame_index) for frame in finished.values()]
        started_s, now_s = min(starts), self.clock.now()
        grouped_s = self.ledger.grouped_until(run.camera.id) if self.ledger else None
        # within half the history the pool groups a camera it first meets
        recent = started_s + first_left_s >= now_s - (self.settings.frame_ttl_s + self.settings.job_timeout_s) / 2
        if grouped_s is not None and grouped_s <= started_s + first_left_s and recent:
            run.logged_dates = {frame_id: frame.captured_s for frame_id, frame in logged.items() if not frame.finished}
            if self.ledger:
                self.ledger.hold(run.camera.id, started_s + first_left_s)
            return started_s
        return max(started_s, now_s - first_left_s)

    def hand_on(self, run: CameraRun, source: FrameSource, frame: SampledFrame | UnreadFrame) -> None:
        """Number one sampled frame and put it in the pending jobs, or record why not. A live stream's
        frame finding the node's hands full is skipped at once (`node_busy`): capture must not fall behind
        the camera; footage's (a file's, or a video's served over http://) waits for room (nothing is lost
        by waiting) unless the node stops. A full chain (back-pressure) skips a live camera's frame, and
        footage's played in real time (a live camera's stand-in); recorded footage (`realtime: false`)
        waits for the chain instead: it lost half its frames to a chain that merely had not caught up. It
        waits too while the packer holds footage the full frame store refused (JobPacker.holding)."""
        camera = run.camera
        offline = not source.is_live and not camera.realtime
        if not source.is_live:  # a file's frame waits for room before it is stamped: its age starts now
            self.wait_for_room(run, lambda: self.pending.full() or (
                offline and (self.packer.depth >= self.recorded_depth or self.packer.holding)))  # fmt: skip
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
            self.wait_for_room(run, self.pending.full)  # a file's frame waits for room; then the stop is checked

    def run(self, max_seconds: float | None = None) -> NodeSummary:
        """Ingest until every camera has been claimed and has ended (files without loop), `max_seconds`, or
        stop(). Cameras other live nodes hold are claimed as they give them up (ingest/claims.py): meanwhile
        this node stands by for them, as for a camera another node took from it (`lose`)."""
        found = self.claims.claim()
        if self.ledger:
            self.ledger.start()
        self.claimed(found)
        try:
            self.packer.pack_jobs(self.threads, time.monotonic() + max_seconds if max_seconds else None)
        finally:
            self.stop.set()
            deadline = time.monotonic() + defaults.CAMERA_STOP_S  # one wait for all: a supervisor's grace is short
            for thread in [*self.threads, *self.registering]:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            self.drain_pending()
            if self.ledger:
                self.ledger.close(defaults.LEDGER_CLOSE_S)
            self.packer.refresh_depth()  # the last skips, and the frames the ledger could not record
            redis_away = self.packer.redis_gone or self.packer.redis_down
            if not redis_away:  # (else they lapse: a stop waits on no stalled Redis)
                self.claims.release()  # its frames recorded and its watermarks gone: another node may take over
                for camera in self.cameras:
                    self.metrics.camera_claimed.labels(camera=self.metrics.camera(camera.id)).set(0)
        return self.summary

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


def report_unread(camera: CameraConfig, source: FrameSource) -> None:
    """One WARNING per frame of a pass that could not be read (as many as the source kept), one for the rest."""
    for failure in source.failures:
        log.warning("camera %s: %s", camera.id, failure)
    if source.failure_count > len(source.failures):
        log.warning("camera %s: %d more frames could not be read", camera.id,
                    source.failure_count - len(source.failures))  # fmt: skip
