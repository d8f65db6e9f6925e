"""Recorded footage an ingest node read before, in part or whole (`FootageResume`, a base of IngestNode in
ingest/node.py): the frames the frames log holds as finished are passed over (`resume`), and the pass is
dated on as its first read dated it (`resumed_start`), so a restarted node neither reads hours of footage
again nor cuts a car in two; a pass cut short goes on as the same pass (`footage_pass`)."""

from __future__ import annotations

import logging

from common.config import Settings
from common.credentials import shown_source
from common.frame_log import LoggedFrame
from ingest.camera_run import CameraRun
from ingest.clock import CaptureClock
from ingest.frame_source import FrameSource
from ingest.ledger import FrameLedger

log = logging.getLogger("ingest.node")
"""The node's logger: what a resumed pass says is the node's, as it was before this module."""


class FootageResume:
    """Where a camera thread resumes recorded footage, and how it dates it."""

    settings: Settings  # (each set by IngestNode.__init__)
    ledger: FrameLedger | None
    clock: CaptureClock

    def footage_pass(self, run: CameraRun, source: FrameSource) -> dict[str, LoggedFrame] | None:
        """A pass of recorded footage begins (dated from now, or as its first read dated it: `resume`), or
        reads on where the one before was cut short (`source.resume_from`: ingest/reconnect.py): the same
        pass, dated from its start, the frames a node before finished passed over still (a restarted node
        whose reader was killed queued them again: a review). What `resume` returned, or None."""
        if source.resume_from and run.footage_start_s is not None:
            source.passed_over = run.finished_at
            return None
        run.finished = set()
        if (resumed := self.resume(run, source)) is None:
            run.start_footage_pass()
        return resumed

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
        run.finished = finished  # (passed over still where the pass is cut short and read on: footage_pass)
        source.passed_over = run.finished_at
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
