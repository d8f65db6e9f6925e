"""The ingest node's ledger: a durable row in the frames log for every sampled frame — `pending` for
a frame queued into the chain, `skipped` (with the reason) for one that was not — written in batches
by a background thread. Postgres may be down when the node starts or later: rows wait in a bounded
buffer and go out when it answers; past the buffer, frames are counted as unrecorded (a metric and
one warning), never silently dropped, and memory stays bounded. How many it holds and how long no write
went through are metrics, as is whether Postgres took its last write (`held`, `unwritten_s`, `answered`).

With the rows goes each camera's watermark: the capture time before which every frame the camera
sampled has its row (the oldest frame sampled and not yet written, or a moment ago when none is). The
sighting pool groups no read past it, since a frame queued but not yet recorded could still bring
reads. Each camera the node claimed has one from its start, whether it samples or not (`claimed`); a
node that stops takes its watermarks away (its cameras are sampled no more). A camera another node took
from this one (`released`) keeps its watermark held before the frames it left here until their rows are
written; then this node writes it no more and never deletes it: it is the new holder's. The watermarks
are kept by the ledger's `watermarks` (ingest/camera_watermarks.py).

The spool, which keeps on disk what the ledger holds (each record as it is made, each frame as it is
sampled: a node killed leaves them to the next) and adopts the files of nodes gone, is the ledger's
`spool` (ingest/ledger_spool.py), handed its buffer, batch in flight and lock. Its tuning
(LEDGER_CAPACITY, LEDGER_FLUSH_S, LEDGER_BATCH_ROWS, ...) is in common/defaults_ingest.py."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path

from common import defaults
from common.backoff import Backoff
from common.db_writes import OUTAGES, DatabaseWriteError
from common.frame_log import FrameLog, FrameRecord, LoggedFrame
from common.jobs import FrameRef
from common.metrics import Metrics
from ingest.camera_watermarks import CameraWatermarks
from ingest.ledger_spool import Spool
from ingest.roi_hold import RoiHold
from ingest.spool_files import remove_stale_parts

log = logging.getLogger(__name__)


class FrameLedger:
    """Buffers frame records and writes them to the frames log from its own thread. With a spool folder,
    what it holds is also appended to a file there, each frame sampled and each record as they come (the
    node may be killed before they are written: a kill lost the half second not yet written, and the
    frames being packed), and a ledger that starts writes the files of ledgers gone (see `Spool.adopt`, in
    ingest/ledger_spool.py). `spool_tag`: the identity of the database written to (spool_files.database_tag):
    the spool files it adopts are its database's alone."""

    def __init__(
        self, open_log: Callable[[], FrameLog], metrics: Metrics, capacity: int, now: Callable[[], float] = time.time,
        spool_dir: Path | None = None, spool_tag: str = "",
    ) -> None:  # fmt: skip
        self.open_log, self.metrics, self.capacity = open_log, metrics, capacity
        self.frame_log: FrameLog | None = None
        self.buffer: deque[FrameRecord] = deque()
        self.lock = threading.Lock()
        self.opening = threading.Lock()  # guards setting `frame_log`
        self.unanswered_until = 0.0  # monotonic: until then `finished` does not ask again
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.stopped = threading.Event()  # close() has given up waiting
        self.overflowing = False
        self.marks_written = 0.0
        self.in_flight: list[FrameRecord] = []
        """The batch the thread is writing (taken from the buffer, not yet written nor put back), changed
        in place: the spool holds it too."""
        self.spool = Spool(spool_dir, self.buffer, self.in_flight, self.lock, capacity, spool_tag)
        self.write_began: float | None = None
        """When (monotonic) the write in progress began; None between writes."""
        self.watermarks = CameraWatermarks(now)
        """Each camera's watermark, written with the rows (ingest/camera_watermarks.py); under the lock."""
        self.rois = RoiHold()
        """The regions of interest the records are buffered without, one a camera."""
        self.unrecorded: Counter[str] = Counter()
        """Per camera, the frames whose record could not be kept, all time (`alpr status` shows them)."""
        self.written_at = time.monotonic()
        """When (monotonic) a write last went through (or the ledger was made): `unwritten_s`."""
        self.thread = threading.Thread(target=self.run, name="frame-ledger", daemon=True)
        self.watchdog = threading.Thread(target=self.watch_writes, name="frame-ledger-watchdog", daemon=True)
        metrics.ledger_held_records.set_function(self.held)
        metrics.ledger_unwritten_seconds.set_function(self.unwritten_s)

    def held(self) -> int:
        """The records held, not yet written (the buffer and the batch in flight; in the spool too, where
        there is one): alpr_ledger_held_records, read at each scrape."""
        with self.lock:
            return len(self.buffer) + len(self.in_flight)

    def unwritten_s(self) -> float:
        """How long records have been held without a write going through (0 while none is held):
        alpr_ledger_unwritten_seconds, read at each scrape. Postgres away, and one that does not answer
        (which fails no write), both show: only AlprFramesUnrecorded told of an outage, once the buffer had
        overflowed, after the loss (a review: the spool grew to 2.9 MB in 12 minutes, no metric moved)."""
        with self.lock:
            held = self.buffer or self.in_flight
            return time.monotonic() - self.written_at if held else 0.0

    def answered(self, error: Exception | None) -> None:
        """Whether Postgres took the ledger's last write, as the node's alpr_database_up{pool="ingest"}: 1
        once one went through (`error` None) or Postgres answered refusing it (DatabaseWriteError), 0 where it
        could not be reached, took no writes or could not be logged in to (OUTAGES, CannotConnectError); an
        error of another kind says nothing. The series appears with the ledger's first write."""
        from common.db import CannotConnectError

        if error is None or isinstance(error, DatabaseWriteError):
            self.metrics.database_up.labels(pool="ingest").set(1)
        elif isinstance(error, (*OUTAGES, CannotConnectError)):
            self.metrics.database_up.labels(pool="ingest").set(0)

    def start(self) -> None:
        remove_stale_parts(self.spool.folder)
        self.spool.adopt()
        self.thread.start()
        if self.spool.folder is not None:
            self.watchdog.start()

    def watch_writes(self) -> None:
        """Spool what is held once a write has gone LEDGER_SPOOL_AFTER_S without an answer: a Postgres that hangs
        (a frozen host, a network cut) fails no write, and the spool, opened on a failure, never was;
        a node killed then lost every record since, with no count and no word (a review: 198 frames)."""
        tried_for: float | None = None  # the stalled write the spool was tried for: once each (a spool that
        while not self.stopped.wait(1.0):  # cannot be written was tried every second, the buffer under the lock)
            with self.lock:
                began = self.write_began
                if began is None or began == tried_for or self.spool.file is not None:
                    continue
                if time.monotonic() - began < defaults.LEDGER_SPOOL_AFTER_S:
                    continue
                tried_for = began
                self.spool.open_when_due()  # (not within SPOOL_RETRY_S of a spool that failed: a frame's try)
                if self.spool.file is not None:
                    log.warning("frames log: a write unanswered for %.0f s (Postgres not answering?): records"
                                " spooled until it is", time.monotonic() - began)  # fmt: skip

    def sampled(self, ref: FrameRef, dated_back: bool = False) -> None:
        """A frame was just sampled: the camera's watermark stays before it until its row is written, and
        at its date after, for recorded footage or when the camera's next frame may be dated back
        (`dated_back`: a stream whose timestamps are trusted)."""
        with self.lock:
            self.watermarks.sampled(ref, dated_back)
            self.spool.journal_sampled(ref)  # (until its record is made: a kill leaves it to the next node)

    def claimed(self, camera_id: str, held_at_s: float = 0.0) -> None:
        """The camera is this node's (its claim, ingest/claims.py): its watermark is written from the next
        write on and removed at the stop, whether or not it samples a frame (CameraWatermarks.claimed says
        why). Until its first frame the watermark stays at or before `held_at_s` (`hold`; 0: a moment ago),
        after which its frames will be dated."""
        with self.lock:
            self.watermarks.claimed(camera_id)
        if held_at_s > 0:
            self.hold(camera_id, held_at_s)

    def hold(self, camera_id: str, until_s: float) -> None:
        """Keep the camera's watermark at or before `until_s` until its next frame is sampled or it ends:
        that frame will be dated no earlier, and the sighting pool groups nothing past the watermark."""
        with self.lock:
            self.watermarks.hold(camera_id, until_s)

    def ended(self, camera_id: str) -> None:
        """The camera samples no more frames (its file ended, it failed, or the node stops)."""
        with self.lock:
            self.watermarks.ended(camera_id)

    def released(self, camera_id: str) -> None:
        """Another node took the camera from this one, which samples it no more (IngestNode.lose): its
        watermark is held before the frames it left here until their rows are written, then left to the new
        holder (CameraWatermarks.released); `claimed` takes the camera back."""
        with self.lock:
            self.watermarks.released(camera_id)

    def add(self, records: list[FrameRecord]) -> None:
        """Buffer records for the next write; beyond `capacity` they go unrecorded (counted, warned).
        A frame's region of interest is taken out first, and put back as its row is written (`rois`:
        ingest/roi_hold.py): a 256-point polygon made each buffered record ten times its size while Postgres
        was away, and dropped for good, a frame `alpr replay --orphans` queued again was detected whole."""
        records = [self.rois.take_out(record) for record in records]
        with self.lock:
            room = max(0, self.capacity - len(self.buffer))
            self.buffer.extend(records[:room])
            self.spool.journal(records, records[:room])
            overflow = records[room:]
            self.watermarks.settle(overflow)  # never written: they hold no watermark back
        self._count_unrecorded(overflow)
        if overflow and not self.overflowing:
            log.warning("frames log unreachable and %d records waiting: further frames go unrecorded", self.capacity)
        self.overflowing = bool(overflow)

    def run(self) -> None:
        backoff = Backoff(*defaults.DB_OUTAGE_BACKOFF_S)  # a camera's 1 -> 30 s wrote the outage's records 31 s late
        while not self.stopped.is_set():
            self.wake.wait(defaults.LEDGER_FLUSH_S)
            self.wake.clear()
            spool = self.spool
            if spool.left_behind and not self.closing.is_set() and time.monotonic() >= spool.adopt_after:
                with self.lock:
                    drained = not self.buffer
                if drained:  # every record held is written: the spool files left for want of room, their turn
                    self.spool.adopt()
            with self.lock:
                batch = [self.buffer.popleft() for _ in range(min(defaults.LEDGER_BATCH_ROWS, len(self.buffer)))]
                self.in_flight[:] = batch
                closing = self.closing.is_set() and not batch and not self.buffer
                since_marks_s = time.monotonic() - self.marks_written
                idle = not batch and not closing and since_marks_s < defaults.LEDGER_IDLE_WATERMARK_S
                marks = {} if idle else self.watermarks.marks(batch, closing)
            if not batch and not marks:
                if self.closing.is_set():
                    return
                continue
            try:
                with self.lock:
                    self.write_began = time.monotonic()
                frame_log = self.connected_log()
                rows = self.rois.put_back(batch)  # (the batch in flight stays as the spool holds it)
                try:
                    frame_log.record_sampled(rows, marks)
                except DatabaseWriteError as refused:
                    if not refused.of_the_data:
                        raise
                    self.write_apart(rows, marks, refused)  # one row it refuses held every frame after it
                self.marks_written = time.monotonic()
                self.answered(None)
                with self.lock:
                    self.written_at = time.monotonic()
                    self.write_began = None
                    self.watermarks.settle(batch)
                    self.in_flight.clear()
                    if not self.buffer:  # every record of the spool and the adopted files written: they
                        self.spool.written()  # go, or it starts anew with the frames sampled not yet recorded
                    else:  # more came meanwhile: started anew once past twice what is held
                        self.spool.compact()
                if closing:
                    return
                if backoff.failures:
                    log.info("frames log reachable again")
                backoff.reset()
                self.wake.set()  # more may be waiting
            except Exception as error:  # Postgres down (or its schema missing): keep the rows, try again later
                self.answered(error)
                self.retry_later(batch, error, backoff)  # rows written meanwhile are written alike again

    def connected_log(self) -> FrameLog:
        """The frames log, opened at first use (by the writer, or by a camera asking what is finished);
        opened outside the lock, so that a Postgres that does not answer holds no other thread back."""
        if self.frame_log is None:
            frame_log = self.open_log()
            with self.opening:
                if self.frame_log is None:
                    self.frame_log = frame_log
                else:  # another thread opened it meanwhile
                    frame_log.pool.close()
        return self.frame_log

    def logged(self, frame_ids: Iterable[str]) -> dict[str, LoggedFrame] | None:
        """Of `frame_ids`, those the frames log holds, and whether each ended for good (FrameLog.logged),
        or None when it cannot say (Postgres away; asked again only after LEDGER_FINISHED_RETRY_S: six cameras
        starting while it was away waited 3 s each in turn, the last 18 s)."""
        if time.monotonic() < self.unanswered_until:
            return None
        try:
            return self.connected_log().logged(frame_ids)
        except Exception as error:  # Postgres down, its schema missing: the caller reads it all
            self.unanswered_until = time.monotonic() + defaults.LEDGER_FINISHED_RETRY_S
            log.debug("frames log: cannot say which frames are finished: %s", error)
            return None

    def last_dated(self, camera_id: str) -> tuple[float, bool]:
        """The time the camera's next frame must be dated after (0.0: nothing known), and whether the
        frames log could say. The latest of: the camera's latest frame in the frames log, its latest among
        the records this ledger holds to write (adopted from a spool: the frames of a node killed while
        Postgres was away, newer than any row), and how far the sighting pool has grouped it (a read dated
        before that is never grouped). With Postgres away (asked again only after LEDGER_FINISHED_RETRY_S), the
        records held are all there is. The records are read first: one written meanwhile is in the log."""
        from common.sighting_log import grouped_until

        with self.lock:
            held = [r.frame.captured_at_s for r in (*self.in_flight, *self.buffer) if r.frame.camera_id == camera_id]
        held_s = max(held, default=0.0)
        if time.monotonic() < self.unanswered_until:
            return held_s, False
        try:
            frame_log = self.connected_log()
            logged_s = frame_log.latest_capture(camera_id) or 0.0
            with frame_log.pool.connection() as connection:
                grouped_s = grouped_until(connection, camera_id)
        except Exception as error:  # Postgres down, its schema missing: the caller says so
            self.unanswered_until = time.monotonic() + defaults.LEDGER_FINISHED_RETRY_S
            log.debug("frames log: cannot say when camera %s was last dated: %s", camera_id, error)
            return held_s, False
        return max(held_s, logged_s, grouped_s), True

    def grouped_until(self, camera_id: str) -> float | None:
        """How far the sighting pool has grouped the camera (common/sighting_log.grouped_until), or None
        when it cannot say (Postgres away)."""
        from common.sighting_log import grouped_until

        try:
            with self.connected_log().pool.connection() as connection:
                return grouped_until(connection, camera_id)
        except Exception as error:  # Postgres down, its schema missing: the caller dates from now
            log.debug("frames log: cannot say how far camera %s was grouped: %s", camera_id, error)
            return None

    def retry_later(self, batch: list[FrameRecord], error: Exception, backoff: Backoff) -> None:
        """Put the batch back first in line and wait with backoff (bounded by close()). Once close() has
        taken over (its wait for this write ran out), the batch is its: spooled or counted there, so no
        spool is opened here: one opened after close() held its records a second time, for the next node
        to write twice (a review, seen once the retries came every 0.5 s)."""
        with self.lock:
            if self.stopped.is_set():
                self.in_flight.clear()
                return
            self.write_began = None
            self.buffer.extendleft(reversed(batch))
            self.in_flight.clear()
            self.spool.open()
            if self.spool.file is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self.spool.file.fileno())  # and a power cut
        delay = backoff.next_delay()
        if self.closing.is_set():  # close() bounds how long this goes on
            delay = min(delay, 1.0)
        if backoff.failures == 1:
            reason = (str(error).splitlines() or [type(error).__name__])[0]  # a message may be empty
            log.warning("frames log unavailable (%s); retrying with backoff", reason)
        # close() wakes the wait for one last try; after it, `stopped` bounds the retries
        (self.stopped if self.closing.is_set() else self.closing).wait(delay)

    def write_apart(self, batch: list[FrameRecord], marks: dict[str, float | None], error: Exception) -> None:
        """Postgres refused the batch for what a row holds: each row alone, so that only the rows it
        refuses go unrecorded (counted, warned), then the watermarks. Retried as a whole, the batch held
        every frame sampled after it, until the buffer overflowed."""
        assert self.frame_log is not None
        refused = []
        for record in batch:
            try:
                self.frame_log.record_sampled([record], {})
            except DatabaseWriteError as alone:
                if not alone.of_the_data:
                    raise
                refused.append(record)
        self.frame_log.record_sampled([], marks)
        self._count_unrecorded(refused)
        log.warning("frames log refused %d of %d records (%s): those frames go unrecorded", len(refused),
                    len(batch), error)  # fmt: skip

    def _count_unrecorded(self, records: list[FrameRecord]) -> None:
        """These frames will have no record: counted in the metric and in `unrecorded`."""
        self._count_unrecorded_cameras(Counter(record.frame.camera_id for record in records))

    def _count_unrecorded_cameras(self, cameras: Counter[str]) -> None:
        """So many frames of each camera will have no record: counted in the metric and in `unrecorded`."""
        for camera_id, count in cameras.items():
            self.metrics.frames_unrecorded.labels(camera=self.metrics.camera(camera_id)).inc(count)
        with self.lock:
            self.unrecorded.update(cameras)

    def unrecorded_counts(self) -> Counter[str]:
        """A copy of `unrecorded` (other threads add to it)."""
        with self.lock:
            return self.unrecorded.copy()

    def close(self, timeout_s: float) -> int:
        """Write what is left (up to `timeout_s`); returns how many records could not be written, each
        counted as unrecorded and warned of: the buffer's and the batch the thread is still trying to
        write. Only the buffer was counted, and not in the metric: a node stopped while Postgres was
        down or its pool reconnecting exited with 117 frames unrecorded, silently (a fault drill)."""
        self.closing.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        self.stopped.set()
        with self.lock:  # the thread (a daemon) may finish a write after this: counted all the same
            left = [*self.in_flight, *self.buffer] if self.thread.is_alive() else list(self.buffer)
            spooled = False
            if left and self.spool.folder is not None:
                self.spool.open()  # (open already when Postgres failed a write: it holds them, and the
                spooled = self.spool.file is not None  # adopted files' records, those files removed)
                if spooled:
                    self.spool.close(delete=False)
        if spooled:
            log.warning("%d frame records could not be written to the frames log: kept in the spool folder %s,"
                        " written by the next ingest node that starts with it", len(left),
                        self.spool.folder)  # fmt: skip
            return 0
        with self.lock:  # no spool could be made (a full disk): the adopted files stay, unlocked, for the next
            on_disk = self.spool.adopted_frame_ids()  # node; only what they do not hold is lost
            self.spool.let_go_adopted(remove=False)
        lost = [record for record in left if record.frame.frame_id not in on_disk]
        self._count_unrecorded(lost)
        if lost:
            log.warning("%d frame records could not be written to the frames log: those frames go unrecorded%s",
                        len(lost), f" ({len(left) - len(lost)} kept in the spool folder)" if len(lost) < len(left)
                        else "")  # fmt: skip
        return len(lost)
