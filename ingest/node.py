"""An ingest node: its life (claim the cameras, start the ledger and one thread per camera, stop, drain)
and what its camera threads do — sample frames (reconnecting dropped streams with backoff), number and
date them (ingest/camera_run.py), resume recorded footage read before, and hand each frame on to the
frames to pack or record why not. The node's main thread packs them into detect jobs
(ingest/job_packer.py) — JPEG bytes into the frame store with a TTL, frame references onto the detect
queue. When the chain's queues hold more jobs than the limit (every waiting job holds frames in Redis),
cameras skip frames and count them: memory stays bounded, whatever the workers do. Every sampled
frame, queued, skipped or undecodable (`corrupt`), gets a row in the frames log (through the ledger).
Frame ids of file sources derive from the file and the position, so a restarted node that reads a
file again is recognised and nothing is logged twice.

What a camera thread does is ingest/camera_sampling.py's, recorded footage resumed ingest/footage_resume.py's,
the frames handed on to pack (and drained at the stop) ingest/frame_handoff.py's: each a base of IngestNode,
which keeps the node's life and its claims here."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from secrets import token_hex

import redis

from common import defaults
from common.config import Settings
from common.deployment import Deployment
from common.metrics import Metrics
from common.roi import RoiWatch
from common.role_settings import role_settings
from ingest.camera_fingerprint import camera_fingerprint
from ingest.camera_sampling import CameraSampling, start_spread_s
from ingest.camera_silence import CameraSilence
from ingest.cameras import CameraConfig
from ingest.capture_budget import warn_capture_memory
from ingest.claims import CameraClaims, ClaimRound
from ingest.clock import CaptureClock
from ingest.job_packer import JobPacker
from ingest.ledger import FrameLedger
from ingest.node_stop import NodeStop
from ingest.pending_frames import PendingFrames

log = logging.getLogger(__name__)


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


class IngestNode(CameraSampling):
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
        deployment: Deployment | None = None,
    ):
        self.cameras = [c for c in cameras if c.enabled]
        self.register = register  # the cameras table's rows of the cameras this node claims (alpr/ingest_command.py)
        self.settings, self.metrics, self.ledger = settings, metrics, ledger
        self.queues = queues
        self.pending = PendingFrames(settings.frames_per_job * 4, defaults.MAX_PENDING_FRAME_BYTES)
        self.too_large_said: set[str] = set()  # cameras whose frame was refused over MAX_FRAME_BYTES (warned once)
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
        # with each claim, with its deployment (common/deployment.py); and as a metric (common/role_settings.py)
        published = role_settings(settings, "ingest", deployment=deployment)
        metrics.settings_info.labels(pool="ingest", fingerprint=published.fingerprint).set(1)
        key = settings.secret("job_key")
        fingerprints = {c.id: camera_fingerprint(c, key) for c in self.cameras}
        self.claims = CameraClaims(queues, self.node_id, [c.id for c in self.cameras], published.entry(), fingerprints)
        self.threads: list[threading.Thread] = []  # one per camera claimed (started as it is, again once won back)
        self.camera_threads: dict[str, threading.Thread] = {}  # camera id -> its latest thread
        self.gap_from: dict[str, tuple[str, float]] = {}  # cameras taken over: (previous holder, its last sign)
        self.registering: list[threading.Thread] = []
        self.silence = CameraSilence(metrics.camera_silent, metrics.camera)  # alpr_camera_silent, read at scrapes
        for camera in self.cameras:
            metrics.camera_claimed.labels(camera=metrics.camera(camera.id)).set(0)
            self.silence.watch(camera.id)  # 0 while stood by for
        self.states: dict[str, str] = {}  # camera id -> its state for `alpr status`, as last set
        self.packer = JobPacker(
            settings, queues, frames, self.pending, node_id=self.node_id, clock=self.clock, metrics=metrics,
            ledger=ledger, claims=self.claims, summary=self.summary, states=self.states, stop=self.stop,
            skip=self.skip, on_claims=self.claimed, unheard=self.silence.unheard,
        )  # fmt: skip

    def claimed(self, found: ClaimRound | None, first_round: bool = False) -> None:
        """A round of claims (ingest/claims.py): each camera another node took from this one stops here
        (`lose`); each camera newly this node's registered in the cameras table, counted, and sampled from
        now on (every camera, presumed, where Redis could not say); a camera taken over has its unsampled
        span counted at its first frame (`gap`), and one whose previous holder gave it other settings is
        counted too; each camera another live node holds giving it other settings is shown
        (alpr_camera_settings_differ). A node refused a camera writes nothing of it. The cameras of the node's
        `first_round` open spread at random (start_spread_s); one won later at once (a takeover, a camera won
        back: it was dark meanwhile, and spread it waited up to CAMERA_START_SPREAD_MAX_S more: a review)."""
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
            spread_s = start_spread_s(len(won)) if first_round else 0.0
            args = (camera, self.stop.camera(camera.id), self.camera_threads.get(camera.id), spread_s)  # (the thread
            thread = threading.Thread(target=self.camera_loop, args=args, name=f"camera-{camera.id}", daemon=True)
            self.camera_threads[camera.id] = thread  # before: a camera lost, won back)
            self.threads.append(thread)
            self.silence.hold(camera.id, camera.sample_fps)  # heard from as its thread starts (before a loss)
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
        self.silence.release(camera_id)  # its silence, its failure or its end, if any, are the holder's to tell
        self.metrics.camera_failed.labels(camera=label).set(0)
        self.metrics.camera_ended.labels(camera=label).set(0)

    def run(self, max_seconds: float | None = None) -> NodeSummary:
        """Ingest until every camera has been claimed and has ended (files without loop), `max_seconds`, or
        stop(). Cameras other live nodes hold are claimed as they give them up (ingest/claims.py): meanwhile
        this node stands by for them, as for a camera another node took from it (`lose`)."""
        warn_capture_memory(self.cameras, self.settings.capture_memory_mb)  # their bounds together
        found = self.claims.claim()
        if self.ledger:
            self.ledger.start()
        self.claimed(found, first_round=True)
        try:
            self.packer.pack_jobs(self.threads, time.monotonic() + max_seconds if max_seconds else None)
        finally:
            self.stop.set()
            deadline = time.monotonic() + defaults.CAMERA_STOP_S  # one wait for all: a supervisor's grace is short
            for thread in [*self.threads, *self.registering]:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            for camera in self.cameras:  # sampled no longer: none silent (a thread stuck past the stop wait too)
                self.silence.release(camera.id)
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
