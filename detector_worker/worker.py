"""The detector pool's edge: takes a detect job (a batch of frame references), fetches the frames in one
round trip, runs one batched inference, stores the crop of each plate inside the camera's region of
interest (small, with the frame's TTL) so the OCR pool need not fetch and decode whole frames, and hands
the batch on twice, at once: the OCR job (the frames with crops to read) and the redact job (every
frame, with every box: all of them are blurred), so hiding plates never waits for reading them. A frame
that expired, that does not decode, or that is older than the maximum age (on the ingest host's clock
until stored, then Redis's: DetectJob.age_s) is not detected: it travels on with its outcome, for the
redactor to record, and the rest of the job goes on."""

from __future__ import annotations

import logging
import time
from typing import Any, Final, Literal

import numpy as np
from rq import Queue
from rq.job import Job

from common import defaults, geometry
from common.errors import InputError
from common.frame_store import (
    NOT_AS_STORED,
    FrameStore,
    PixelBudget,
    PixelBudgetError,
    as_stored,
    crop_key,
    decode_jpeg,
    encode_jpeg,
    jpeg_digest,
)
from common.jobs import (
    DetectedFrame,
    DetectJob,
    FrameRef,
    OcrJob,
    PlateBox,
    RedactJob,
    StageSkipReason,
    job_id,
    parse_job,
    skip_detail,
)
from common.log_throttle import Throttle
from common.metrics import Metrics
from common.queues import enqueue
from common.time_budget import within_budget
from common.worker_context import StageResult
from detector_worker.core import PlateDetector, select_reads

log = logging.getLogger(__name__)


class DetectStage:
    """The detector pool's stage: one per worker, built by alpr/wiring.py."""

    name: Final = "detect"

    def __init__(
        self,
        detector: PlateDetector,
        store: FrameStore,
        ocr_queue: Queue,
        redact_queue: Queue,
        metrics: Metrics,
        crop_margin: float,
        job_timeout_s: int,
        max_frame_age_s: float,
        time_budget_s: float | None = None,
    ) -> None:
        self.detector, self.store, self.metrics = detector, store, metrics
        metrics.detector_batch_frames.export()  # this role's own (common/metrics_registry.RoleMetric)
        self.ocr_queue, self.redact_queue = ocr_queue, redact_queue
        self.crop_margin, self.job_timeout_s, self.max_frame_age_s = crop_margin, job_timeout_s, max_frame_age_s
        self.time_budget_s = job_timeout_s * defaults.JOB_TIME_BUDGET_SHARE if time_budget_s is None else time_budget_s
        """How long a job's frames may take (JOB_TIME_BUDGET_SHARE of its timeout): the rest are skipped."""
        self.vanished = Throttle()
        """Jobs none of whose frames were in the store, stored well within their TTL (`tell_if_vanished`)."""

    def maintain(self) -> None:
        """No periodic duty."""

    def handle(self, payload: Any) -> StageResult:
        started = time.monotonic()
        job = parse_job(payload, DetectJob)
        if self.redact_queue.connection.exists(Job.key_for(job_id("redact", job.batch_id))):
            # handed on already: run again by RQ (a worker killed, or Redis lost, after the hand-off and
            # before the job was marked finished). Handing on again replaced the redaction job still
            # queued with one of frames by then too old (not kept, though their reads were logged).
            log.info("batch %s: handed on already; not detected again", job.batch_id)
            return StageResult(frames=0)
        present, images, passed_on = self.load(job)
        begun = within_budget(present, self.detector.settings.batch_size, started + self.time_budget_s,
                              lambda chunk: self.detect(chunk, images))  # fmt: skip
        frames = [frame for chunk in begun for frame in chunk]
        if late := present[len(frames) :]:
            log.warning("batch %s: %d of %d frames not begun within the job's time budget (%.0f s, %.0f%% of"
                        " ALPR_JOB_TIMEOUT_S): passed on undetected; give jobs fewer frames (ALPR_FRAMES_PER_JOB)"
                        " or more time", job.batch_id, len(late), len(job.frames), self.time_budget_s,
                        100 * defaults.JOB_TIME_BUDGET_SHARE)  # fmt: skip
            passed_on += [self.skipped(ref, "over_job_time_budget") for ref in late]
        frames_with_crops = [f for f in frames if any(p.crop_key for p in f.plates)]
        with self.redact_queue.connection.pipeline() as hand_off:  # both jobs or neither (MULTI/EXEC)
            enqueue(self.redact_queue, RedactJob(batch_id=job.batch_id, frames=frames + passed_on),
                    self.job_timeout_s, hand_off)  # fmt: skip
            if frames_with_crops:  # crops have keys of their own: the redactor deleting the frame leaves them
                ocr_job = OcrJob(batch_id=job.batch_id, frames=frames_with_crops)
                enqueue(self.ocr_queue, ocr_job, self.job_timeout_s, hand_off)
            hand_off.execute()
        threshold = self.detector.settings.confidence  # boxes below it are blurred, not plates
        plates = sum(p.confidence >= threshold for f in frames for p in f.plates)
        return StageResult(frames=len(frames), plates=plates, not_done=len(passed_on))

    def load(self, job: DetectJob) -> tuple[list[FrameRef], dict[str, np.ndarray], list[DetectedFrame]]:
        """The frames to detect in (each key's first), their pixels by key, and the frames passed on
        undetected with why: a key named again, too large to read, past the job's bytes, expired, too
        old, over the job's pixels, undecodable. Sizes are read first: nothing over the bounds is read."""
        stored = self.store.get_within_bounds([f.key for f in job.frames])
        now = time.time()
        images: dict[str, np.ndarray] = {}
        present: list[FrameRef] = []  # each key's first frame, decoded
        passed_on: list[DetectedFrame] = []  # frames that are not detected, with why
        budget = PixelBudget()
        named: set[str] = set()
        for ref in job.frames:
            data = stored.jpegs.get(ref.key)
            if ref.key in named:  # read once: a key named 64 times was read 64 times over (gigabytes)
                passed_on.append(self.skipped(ref, "named_twice_in_its_job"))
                continue
            named.add(ref.key)
            if unread := stored.unread_reason(ref.key):
                passed_on.append(self.skipped(ref, unread))
            elif why := stored.corrupt.get(ref.key):  # an empty value, a list: it was recorded expired
                passed_on.append(self.not_detected(ref, "corrupt", why))
            elif data is None:
                passed_on.append(self.not_detected(ref, "expired", "before detection"))
            elif not as_stored(ref.digest, data):
                passed_on.append(self.not_detected(ref, "corrupt", NOT_AS_STORED))
            elif (
                not job.replayed
                and not ref.recorded  # footage has no freshness to keep: 256 of 317 frames of a video were shed
                and job.age_s(ref, stored.ttls[ref.key], now) > self.max_frame_age_s * defaults.MAX_AGE_QUEUED_SHARE
            ):
                passed_on.append(self.skipped(ref, "too_old"))
            else:
                try:
                    images[ref.key] = decode_jpeg(data, ref.key, budget)
                    present.append(ref)
                except PixelBudgetError as error:
                    log.warning("batch %s: %s", job.batch_id, error)
                    passed_on.append(self.skipped(ref, "over_job_pixel_budget"))
                except InputError as error:
                    log.warning("batch %s: %s", job.batch_id, error)
                    passed_on.append(self.not_detected(ref, "corrupt", "undecodable JPEG"))
        self.tell_if_vanished(job, expired=sum(f.outcome == "expired" for f in passed_on), now_s=now)
        return present, images, passed_on

    def tell_if_vanished(self, job: DetectJob, expired: int, now_s: float) -> None:
        """A WARNING (one a minute at most) when none of a job's frames is in the store though it was stored
        less than half their TTL ago: an ingest node and workers given different ALPR_FRAME_STORE_URLs had
        every frame recorded expired, and no role said why (a review)."""
        young = job.stored_at_s is not None and job.frame_ttl_s is not None
        if not young or expired < len(job.frames) or now_s - (job.stored_at_s or 0.0) > (job.frame_ttl_s or 0) / 2:
            return
        if count := self.vanished.note():
            log.warning("%d job(s) found none of their frames in the frame store, stored %.0f s ago with a TTL of %d"
                        " s: is this worker's ALPR_FRAME_STORE_URL (or ALPR_REDIS_URL) the store the ingest node"
                        " writes to? Or the store restarted, or evicted them", count, now_s - (job.stored_at_s or 0.0),
                        job.frame_ttl_s)  # fmt: skip

    def not_detected(self, ref: FrameRef, outcome: Literal["expired", "corrupt"], detail: str) -> DetectedFrame:
        if outcome == "expired":
            self.metrics.frames_missing.labels(stage=self.name).inc()
        else:
            self.metrics.frames_corrupt.labels(stage=self.name).inc()
        return DetectedFrame(frame=ref, plates=[], outcome=outcome, detail=detail)

    def skipped(self, ref: FrameRef, reason: StageSkipReason) -> DetectedFrame:
        """A frame passed on undetected for `reason`, counted (its detail in the frames log reads with spaces)."""
        self.metrics.frames_skipped.labels(camera=self.metrics.camera(ref.camera_id), reason=reason).inc()
        return DetectedFrame(frame=ref, plates=[], outcome="skipped", detail=skip_detail(reason))

    def detect(self, present: list[FrameRef], images: dict[str, np.ndarray]) -> list[DetectedFrame]:
        """One batched inference over the frames (a batch's worth: `within_budget`); stores the crop of
        each plate to be read."""
        start = time.perf_counter()
        with self.metrics.core_cpu(self.name):
            found = self.detector.detect([images[f.key] for f in present])
        per_frame_ms = 1000 * (time.perf_counter() - start) / len(present)
        step = self.detector.settings.batch_size
        for first in range(0, len(present), step):  # the inferences detect() ran
            self.metrics.detector_batch_frames.observe(min(step, len(present) - first))
        self.metrics.frames_processed.labels(stage=self.name).inc(len(present))
        frames, crops = [], []
        for ref, detections in zip(present, found, strict=True):
            plates = []
            selection = select_reads(detections, ref.roi, self.detector.settings.confidence)  # what is read
            if selection.outside_roi:  # counted as `alpr run` counts them (alpr/standalone.py)
                camera = self.metrics.camera(ref.camera_id)
                self.metrics.plates_outside_roi.labels(camera=camera).inc(selection.outside_roi)
            flags = zip(selection.in_roi.tolist(), selection.read.tolist(), strict=True)
            for index, ((box, conf), (in_roi, read)) in enumerate(zip(detections.boxes(), flags, strict=True)):
                crop = geometry.crop(images[ref.key], box, self.crop_margin) if read else None
                key = crop_key(ref.frame_id, ref.key, index) if crop is not None and crop.size else None
                digest = None
                if key and crop is not None:
                    crops.append((key, encode_jpeg(crop, defaults.CROP_JPEG_QUALITY)))
                    digest = jpeg_digest(crops[-1][1])  # what the OCR pool must find under the key
                edge = geometry.at_side_edge(box, images[ref.key].shape[1])
                plates.append(
                    PlateBox(
                        box_xyxy=box, confidence=min(1.0, conf), in_roi=in_roi, crop_key=key, crop_digest=digest,
                        at_side_edge=edge,
                    )
                )  # fmt: skip
            frames.append(DetectedFrame(frame=ref.timed("detect", per_frame_ms), plates=plates))
        self.store.put_many(crops)
        return frames
