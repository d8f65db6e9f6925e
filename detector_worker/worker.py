"""The detector pool's edge: takes a detect job (a batch of frame references), fetches the frames
in one round trip, runs one batched inference, stores each plate's crop (small, with the frame's TTL)
so the OCR pool need not fetch and decode whole frames, and queues the OCR job with the boxes. Frames
that expired before detection travel on, marked, for the redactor to record."""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import Queue

from common.frame_store import FrameStore, encode_jpeg, frame_key
from common.jobs import DetectedFrame, DetectJob, FrameRef, OcrJob, PlateBox, parse_job
from common.metrics import Metrics
from common.queues import enqueue
from detector_worker.core import PlateDetector
from ocr_worker.preprocess import crop_with_margin

log = logging.getLogger(__name__)


CROP_JPEG_QUALITY = 95
"""JPEG quality of the plate crops handed to the OCR pool: high, they are small."""


class DetectStage:
    name = "detect"

    def __init__(
        self,
        detector: PlateDetector,
        store: FrameStore,
        ocr_queue: Queue,
        metrics: Metrics,
        crop_margin: float,
        job_timeout_s: int,
    ) -> None:
        self.detector, self.store, self.ocr_queue, self.metrics = detector, store, ocr_queue, metrics
        self.crop_margin, self.job_timeout_s = crop_margin, job_timeout_s

    def handle(self, payload: Any) -> dict[str, Any]:
        job = parse_job(payload, self.name)
        assert isinstance(job, DetectJob)
        images = self.store.get_many([f.key for f in job.frames])
        present = [f for f in job.frames if images[f.key] is not None]
        # frames that expired travel on all the same, marked, so the redactor records them
        lost = [DetectedFrame(frame=f, plates=[], detect_ms=0.0, missing="expired before detection")
                for f in job.frames if images[f.key] is None]  # fmt: skip
        if lost:
            log.warning("batch %s: %d frames expired before detection", job.batch_id, len(lost))
            self.metrics.frames_missing.labels(stage=self.name).inc(len(lost))
        frames = self.detect(present, images) if present else []
        enqueue(self.ocr_queue, OcrJob(batch_id=job.batch_id, frames=frames + lost), self.job_timeout_s)
        return {"frames": len(frames), "plates": sum(len(f.plates) for f in frames)}

    def detect(self, present: list[FrameRef], images: dict[str, Any]) -> list[DetectedFrame]:
        """One batched inference over the frames; stores each plate's crop for the OCR pool."""
        start = time.perf_counter()
        with self.metrics.core_cpu(self.name):
            found = self.detector.detect([images[f.key] for f in present], [f.roi for f in present])
        per_frame_ms = 1000 * (time.perf_counter() - start) / len(present)
        step = self.detector.settings.batch_size
        for first in range(0, len(present), step):  # the inferences detect() ran
            self.metrics.detector_batch_frames.observe(min(step, len(present) - first))
        self.metrics.frames_processed.labels(stage=self.name).inc(len(present))
        frames, crops = [], []
        for ref, detections in zip(present, found, strict=True):
            plates = []
            for index, (box, conf) in enumerate(detections.boxes()):
                crop = crop_with_margin(images[ref.key], box, self.crop_margin)
                key = frame_key(f"{ref.frame_id}:plate{index}") if crop.size else None
                if key:
                    crops.append((key, encode_jpeg(crop, CROP_JPEG_QUALITY)))
                plates.append(PlateBox(box_xyxy=box, confidence=conf, crop_key=key))
            frames.append(DetectedFrame(frame=ref, plates=plates, detect_ms=per_frame_ms))
        self.store.put_many(crops)
        return frames
