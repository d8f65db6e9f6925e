"""The redactor pool's edge: takes a redact job (queued by the detector beside the OCR job, so hiding
plates never waits for reading them), blurs every plate box in each frame (inside the
camera's region of interest or not), keeps the frames the policy says (`plates`: those with a
detection; `all`; `none`) in the keep folder at the frame store's JPEG quality, records how every
frame ended in the frames log, and deletes the raw frames from the store. Between jobs the pool
deletes kept frames past their age and marks as lost the frames no stage finished in time."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, Literal

from rq.exceptions import StopRequested

from common.errors import InputError
from common.frame_counts import FrameCounts
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import NOT_AS_STORED, BoundedRead, FrameStore, as_stored, decode_jpeg, encode_jpeg
from common.jobs import DetectedFrame, RedactJob, parse_job, skip_detail
from common.metrics import Metrics
from common.worker_context import StageResult
from redactor_worker.core import redact
from redactor_worker.evidence import AlertEvidence
from redactor_worker.kept_frames import (
    LinkedKeepFolderError,
    delete_expired_frames,
    earlier_kept_paths,
    is_whole_jpeg,
    kept_path,
    write_kept,
)

log = logging.getLogger(__name__)

KeepPolicy = Literal["plates", "all", "none"]


def not_kept(error: OSError) -> str:
    """Why a redacted frame could not be kept, as its record's detail (no path: the frame's is known)."""
    if isinstance(error, LinkedKeepFolderError):
        return "not kept: its keep folder is a link"
    reason = os.strerror(error.errno) if error.errno else type(error).__name__
    return f"not kept: {reason}"[:200]


class RedactStage:
    """The redactor pool's stage: one per worker, built by alpr/wiring.py."""

    name: Final = "redact"

    def __init__(
        self,
        store: FrameStore,
        frame_log: FrameLog,
        keep_dir: Path,
        keep: KeepPolicy,
        method: Literal["blur", "pixelate"],
        metrics: Metrics,
        quality: int,
        keep_max_age_s: float,
        lost_after_s: float,
        keep_sweep_s: float,
        max_boxes: int,
        plate_confidence: float = 0.0,
    ) -> None:
        """`max_boxes`: the detector's cap on plates a frame (redactor_worker.core.redact). `plate_confidence`:
        ALPR_DETECTOR_CONFIDENCE, the boxes at or above which are plates (counted, and a frame kept for them
        under keep=plates); every box the detector gave is blurred, down to its floor."""
        self.plate_confidence = plate_confidence
        self.store, self.frame_log, self.keep_dir, self.keep = store, frame_log, keep_dir, keep
        self.frame_counts = FrameCounts(frame_log.pool)  # its metric of frames in the chain, and its merge duty
        self.method, self.metrics, self.quality, self.max_boxes = method, metrics, quality, max_boxes
        for counter in (metrics.frames_lost, metrics.reads_lost, metrics.kept_deleted):
            counter.export()  # this role's own, at 0 from the start (common/metrics_registry.RoleMetric)
        self.keep_max_age_s, self.lost_after_s, self.keep_sweep_s = keep_max_age_s, lost_after_s, keep_sweep_s
        self.last_keep_sweep = 0.0
        self.cameras_seen: set[str] = set()  # camera labels of frames_unaccounted
        self.alert_evidence = AlertEvidence()  # the frames alerts cited, as last loaded

    def handle(self, payload: Any) -> StageResult:
        job = parse_job(payload, RedactJob)
        keys = [f.frame.key for f in job.frames]
        stored = self.store.get_within_bounds([f.frame.key for f in job.frames if f.outcome == "done"])
        records = [self.with_reads(item, self.finish(item, stored)) for item in job.frames]
        not_kept = Counter(r.detail for r in records if r.outcome == "done" and r.detail)
        for detail, frames in not_kept.items():  # once per job and cause: a full disk is not a line per frame
            log.warning("%d frames of batch %s redacted and recorded but %s", frames, job.batch_id[:80], detail)
        self.frame_log.record_final(records)
        self.store.delete_many(keys)  # the last stage that needs the frame's bytes (OCR reads crops)
        done = Counter(r.frame.camera_id for r in records if r.outcome == "done")
        self.metrics.frames_processed.labels(stage=self.name).inc(done.total())
        return StageResult(
            frames=done.total(), plates=sum(self.plates_in(item) for item in job.frames),
            not_done=len(records) - done.total(), done_by_camera=dict(done),
        )  # fmt: skip

    def plates_in(self, item: DetectedFrame) -> int:
        """The frame's plates: its boxes at or above the read threshold (those below it are only blurred: an
        operator's raised ALPR_DETECTOR_CONFIDENCE kept every frame with a weak box, and counted it)."""
        return sum(p.confidence >= self.plate_confidence for p in item.plates)

    @staticmethod
    def with_reads(item: DetectedFrame, record: FrameRecord) -> FrameRecord:
        """The record, with its reads `pending` when the detector handed plates to the OCR pool: the
        sweep finds them lost if no OCR job records them in time."""
        return replace(record, read_outcome="pending") if any(p.crop_key for p in item.plates) else record

    def finish(self, item: DetectedFrame, stored: BoundedRead) -> FrameRecord:
        """Blur and keep one frame (as the policy says); how it ended."""
        ref = item.frame
        if item.outcome != "done":
            return FrameRecord(ref, item.outcome, item.detail)
        if unread := stored.unread_reason(ref.key):  # a forged job's: the detector reads within the same bounds
            return FrameRecord(ref, "skipped", skip_detail(unread), self.plates_in(item))
        if why := stored.corrupt.get(ref.key):  # an empty value, a list put there since detection
            self.metrics.frames_corrupt.labels(stage=self.name).inc()
            return FrameRecord(ref, "corrupt", why, self.plates_in(item))
        jpeg = stored.jpegs.get(ref.key)
        kept = self.keep == "all" or (self.keep == "plates" and self.plates_in(item) > 0)
        if jpeg is None:
            earlier = earlier_kept_paths(self.keep_dir, ref.camera_id, ref.frame_id, ref.captured_at_s)
            for path in earlier if self.keep != "none" else []:
                if is_whole_jpeg(path):  # not one cut short by a writer killed mid-write
                    # redacted and kept by an earlier attempt of its job, whose recording failed (Postgres
                    # away): recorded done with it, not expired with the kept file left unnamed by the log
                    return FrameRecord(ref, "done", None, self.plates_in(item), str(path))
            self.metrics.frames_missing.labels(stage=self.name).inc()
            return FrameRecord(ref, "expired", "before redaction", self.plates_in(item))
        if not as_stored(ref.digest, jpeg):  # another frame put under its key: never kept, blurred or not
            self.metrics.frames_corrupt.labels(stage=self.name).inc()
            return FrameRecord(ref, "corrupt", NOT_AS_STORED, self.plates_in(item))
        if not kept:  # nothing reaches disk: no blur to make (every plate's frame was decoded, blurred and
            return FrameRecord(ref.timed("redact", 0.0), "done", None, self.plates_in(item))  # encoded for none)
        start = time.perf_counter()
        if item.plates:  # every box, inside the ROI or not: no plate reaches disk unblurred
            try:
                image = decode_jpeg(jpeg, ref.key)
            except InputError:
                self.metrics.frames_corrupt.labels(stage=self.name).inc()
                return FrameRecord(ref, "corrupt", "undecodable JPEG", self.plates_in(item))
            with self.metrics.core_cpu(self.name):
                boxes = [p.box_xyxy for p in item.plates]
                jpeg = encode_jpeg(redact(image, boxes, self.method, max_boxes=self.max_boxes), self.quality)
        path = kept_path(self.keep_dir, ref.camera_id, ref.frame_id, ref.captured_at_s)
        try:
            write_kept(path, jpeg)  # a frame without plates is kept as stored: nothing to hide
        except OSError as error:  # a linked folder, a full disk, no permission: the rest of the job goes on
            timed = ref.timed("redact", 1000 * (time.perf_counter() - start))
            return FrameRecord(timed, "done", not_kept(error), self.plates_in(item))
        timed = ref.timed("redact", 1000 * (time.perf_counter() - start))
        return FrameRecord(timed, "done", None, self.plates_in(item), str(path))

    def maintain(self) -> None:
        """The pool's duties, each whatever the other does (a Postgres outage stopped the keep folder's
        sweep, which needs no database, and frames stayed past their age): mark the frames no stage
        finished in time as lost; merge the frames log's per-minute count changes into the counts `alpr status`
        reads (common/frame_counts.py's MERGE_COUNTS); delete kept frames past their age. The first failure is
        raised after."""
        failures: list[Exception] = []
        for duty in (self.sweep_lost_frames, self.merge_frame_counts, self.sweep_kept_frames):
            try:
                duty()
            except StopRequested:
                raise
            except Exception as error:  # a duty that fails now is tried again next time
                failures.append(error)
        if failures:
            raise failures[0]

    def sweep_lost_frames(self) -> None:
        """Mark frames (and frames' reads) no stage finished in time as lost; count what is unaccounted."""
        lost, reads_lost = self.frame_log.sweep_lost(self.lost_after_s)
        if lost:
            log.warning("%d frames marked lost: sampled, but no stage finished them in time", lost)
            self.metrics.frames_lost.inc(lost)
        if reads_lost:
            log.warning("the reads of %d frames marked lost: no OCR job recorded them in time", reads_lost)
            self.metrics.reads_lost.inc(reads_lost)
        unaccounted: Counter[str] = Counter()  # per camera label (cameras past the labels' bound share one)
        for camera_id, count in self.frame_counts.pending_counts().items():
            unaccounted[self.metrics.camera(camera_id)] += count
        for label in {*unaccounted, *self.cameras_seen}:  # a camera with none left goes back to 0
            self.metrics.frames_unaccounted.labels(camera=label).set(unaccounted[label])
        self.cameras_seen.update(unaccounted)

    def merge_frame_counts(self) -> None:
        """Merge the count changes the frames' writes left since the last round (each pool worker's round
        takes what is there: `alpr status` sums those not merged yet, and reads fewer the more are); the
        OCR pool's duty merges them too, so either pool down, the other's goes on."""
        self.frame_counts.merge_counts()

    def sweep_kept_frames(self) -> None:
        """Every KEEP_SWEEP_S, delete kept frames past their age but those alerts cite (an alert's evidence
        stays with it). With Postgres away, the frames cited when last loaded are spared (an alert is
        recorded there, so none cites a frame meanwhile) and the failure raised after the sweep; before
        any load, nothing is deleted."""
        if time.monotonic() - self.last_keep_sweep < self.keep_sweep_s:
            return
        self.last_keep_sweep = time.monotonic()
        failure: Exception | None = None
        try:
            self.alert_evidence.refresh(self.frame_log)  # those recorded since the last load
        except Exception as error:
            if not self.alert_evidence.loaded:
                raise
            failure = error
        if deleted := delete_expired_frames(self.keep_dir, self.keep_max_age_s, spared=self.alert_evidence):
            log.info("deleted %d kept frames older than %g h", deleted, self.keep_max_age_s / 3600)
            self.metrics.kept_deleted.inc(deleted)
        if failure is not None:
            raise failure
