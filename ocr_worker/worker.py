"""The OCR pool's edge: takes an OCR job (queued by the detector beside the redact job: the frames
with plate crops to read, their boxes and the crops' keys), reads each frame's crops with the one
read step (`PlateReader.read_plates`), logs the reads to Postgres in one transaction, records in the
frames log how each frame's reads ended (done; expired: a crop was gone; refused: a plate region this
worker does not know) with its time on the frame, and deletes the crops (no other stage needs them)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from common import defaults
from common.errors import InputError
from common.frame_counts import FrameCounts
from common.frame_log import FrameLog, ReadOutcome
from common.frame_store import CROP_NOT_AS_STORED, FrameStore, PixelBudget, as_stored, decode_jpeg
from common.jobs import DetectedFrame, FrameRef, OcrJob, StageSkipReason, parse_job, skip_detail
from common.metrics import Metrics
from common.plate_log import PlateLog
from common.regions import load_regions
from common.time_budget import within_budget
from common.types import PlateRead
from common.worker_context import StageResult
from ocr_worker.core import PlateReader

log = logging.getLogger(__name__)

MAX_REFUSALS_WARNED = 1000
"""(camera, region) pairs a worker warns of: jobs from outside can name any, and the set must not grow
without end (past it, refusals are counted only)."""


@dataclass(frozen=True)
class FrameReads:
    """One frame's reads, how they ended, and how many are of plates at the frame's side edge."""

    frame: FrameRef
    reads: list[PlateRead]
    outcome: ReadOutcome
    at_side_edge: int = 0


class OcrStage:
    """The OCR pool's stage: one per worker, built by alpr/wiring.py."""

    name: Final = "ocr"

    def __init__(
        self,
        make_reader: Callable[[str], PlateReader],
        store: FrameStore,
        plate_log: PlateLog,
        frame_log: FrameLog,
        metrics: Metrics,
        time_budget_s: float = defaults.JOB_TIMEOUT_S * defaults.JOB_TIME_BUDGET_SHARE,
    ) -> None:
        self.make_reader, self.store, self.plate_log, self.frame_log = make_reader, store, plate_log, frame_log
        self.frame_counts = FrameCounts(frame_log.pool)  # its merge duty
        self.metrics, self.time_budget_s = metrics, time_budget_s
        metrics.end_to_end_seconds.export()  # this role's own (common/metrics_registry.RoleMetric)
        self.readers: dict[str, PlateReader] = {}
        self.refused: set[tuple[str, str]] = set()  # (camera, region) warned of

    def reader(self, region: str) -> PlateReader | None:
        """One reader per plate region, made on first use and kept; None for a region this worker does
        not know (a newer ingest node's, during an upgrade): the frame's fault, not its job's."""
        if region not in self.readers:
            if region not in load_regions():
                return None
            self.readers[region] = self.make_reader(region)  # a broken model stays the worker's fault
        return self.readers[region]

    def maintain(self) -> None:
        """The pool's duty: merge the frames log's per-minute count changes into the counts `alpr status`
        reads (common/frame_counts.py's MERGE_COUNTS), as the redactor pool's duty does. The redactor's alone
        left them growing while its pool was down, ingest and this pool writing on: `alpr status` sums those
        not merged, 0.7-0.9 s at 2 million, past its 5 s at about 12 million, an hour or two of a city's
        frames (a review). One merge runs at a time (an advisory lock: the others return at once)."""
        self.frame_counts.merge_counts()

    def handle(self, payload: Any) -> StageResult:
        started = time.monotonic()
        job = parse_job(payload, OcrJob)
        digests = {p.crop_key: p.crop_digest for f in job.frames for p in f.plates if p.crop_key}
        crops, unreadable = self.decode_crops(digests)
        read = within_budget(job.frames, 1, started + self.time_budget_s,
                             lambda frames: self.read_frame(frames[0], crops, unreadable),
                             weight=lambda frame: sum(1 for p in frame.plates if p.crop_key))  # fmt: skip
        if late := job.frames[len(read) :]:
            log.warning("batch %s: %d of %d frames not begun within the job's time budget (%.0f s, %.0f%% of"
                        " ALPR_JOB_TIMEOUT_S): their plates not read; give jobs fewer frames (ALPR_FRAMES_PER_JOB)"
                        " or more time", job.batch_id, len(late), len(job.frames), self.time_budget_s,
                        100 * defaults.JOB_TIME_BUDGET_SHARE)  # fmt: skip
            for item in late:
                self.skipped(item.frame, "over_job_time_budget")
            read += [FrameReads(item.frame, [], "skipped") for item in late]
        logged = [(frame.frame, frame.reads) for frame in read]
        outcomes = [frame.outcome for frame in read]
        at_side_edge = [frame.at_side_edge for frame in read]
        new = self.plate_log.record_many(logged)
        self.frame_log.record_reads([(frame, outcome) for (frame, _), outcome in zip(logged, outcomes, strict=True)])
        now = time.time()
        for (frame, reads), edge in zip(logged, at_side_edge, strict=True) if new else []:  # a job run again after
            if any(r.best for r in reads) and not frame.recorded:  # its reads were logged counts nothing;
                # recorded footage is dated by its time in the footage (ahead of now, or resumed hours back)
                self.metrics.end_to_end_seconds.observe(max(0.0, now - frame.captured_at_s))  # a host clock ahead
            self.metrics.count_reads(r.best.matches_format for r in reads if r.best)
            if edge:
                self.metrics.side_edge_reads.labels(camera=self.metrics.camera(frame.camera_id)).inc(edge)
        self.metrics.frames_processed.labels(stage=self.name).inc(len(job.frames))
        self.store.delete_many(list(digests))
        plates = sum(len(reads) for _, reads in logged)
        return StageResult(frames=len(job.frames), plates=plates, reads_logged=new)

    def read_frame(self, item: DetectedFrame, crops: dict[str, np.ndarray], unreadable: set[str]) -> FrameReads:
        """One frame's plates read (those with a crop: in the ROI, not nested), and how its reads ended."""
        start = time.perf_counter()
        plates_with_crops = [p for p in item.plates if p.crop_key]
        reader = self.reader(item.frame.region)
        if reader is None:
            return FrameReads(item.frame, [], self.refuse(item.frame))
        missing = {p.crop_key for p in plates_with_crops if p.crop_key not in crops}
        outcome: ReadOutcome = "done" if not missing else "expired" if missing - unreadable else "corrupt"
        if outcome == "expired":
            self.metrics.frames_missing.labels(stage=self.name).inc()
        with self.metrics.core_cpu(self.name):
            reads = reader.read_plates(
                [crops.get(p.crop_key or "") for p in plates_with_crops],
                [(p.box_xyxy, p.confidence) for p in plates_with_crops],
                [p.at_side_edge for p in plates_with_crops],
            )
        edge = sum(1 for p, r in zip(plates_with_crops, reads, strict=True) if p.at_side_edge and r.best)
        return FrameReads(item.frame.timed("ocr", 1000 * (time.perf_counter() - start)), reads, outcome, edge)

    def skipped(self, frame: FrameRef, reason: StageSkipReason) -> None:
        """Count a frame whose plates are not read, for `reason`."""
        self.metrics.frames_skipped.labels(camera=self.metrics.camera(frame.camera_id), reason=reason).inc()

    def refuse(self, frame: FrameRef) -> ReadOutcome:
        """A frame whose plate region this worker does not know: warned, counted and recorded as refused;
        the rest of its job is read."""
        warned = (frame.camera_id, frame.region) in self.refused
        if not warned and len(self.refused) < MAX_REFUSALS_WARNED:  # once per camera and region: an upgrade
            self.refused.add((frame.camera_id, frame.region))  # under way would log every frame
            known = ", ".join(sorted(load_regions()))
            log.warning("camera %s: unknown plate region %r (this OCR worker knows %s): its frames' plates are"
                        " not read, their reads recorded as refused", frame.camera_id, frame.region, known)  # fmt: skip
        self.skipped(frame, "unknown_region")
        return "refused"

    def decode_crops(self, digests: dict[str, str | None]) -> tuple[dict[str, np.ndarray], set[str]]:
        """Plate crops by key (`digests`: each crop's key and the SHA-256 its detector stored it with),
        and the keys of those there but not readable (not a JPEG, too large, or other bytes than its
        digest's: a crop swapped in the store was read and logged as the frame's plate; a frame's reads
        are then `corrupt`, not `expired` as they were); an expired crop is in neither."""
        crops, budget = {}, PixelBudget()
        stored = self.store.get_within_bounds(list(digests))  # each once, within the byte bounds
        unreadable = stored.too_large | stored.over_budget
        for key in unreadable:
            log.warning("crop %s not read: %s", key[:120], skip_detail(stored.unread_reason(key) or ""))
            self.metrics.frames_corrupt.labels(stage=self.name).inc()
        for key, why in stored.corrupt.items():  # an empty value, a list: not an expired crop
            log.warning("crop %s not read: %s", key[:120], why)
            self.metrics.frames_corrupt.labels(stage=self.name).inc()
            unreadable.add(key)
        for key, data in stored.jpegs.items():
            if data is None:
                continue
            if not as_stored(digests.get(key), data):
                log.warning("crop %s not read: %s", key[:120], CROP_NOT_AS_STORED)
                self.metrics.frames_corrupt.labels(stage=self.name).inc()
                unreadable.add(key)
                continue
            try:
                crops[key] = decode_jpeg(data, key, budget)
            except InputError as error:
                log.warning("%s", error)
                self.metrics.frames_corrupt.labels(stage=self.name).inc()
                unreadable.add(key)
        return crops, unreadable
