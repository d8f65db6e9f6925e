"""The detector pool's edge: takes a detect job (a batch of frame references), fetches the frames
in one round trip, runs one batched inference, and queues the OCR job with the plate boxes."""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import Queue

from common.frame_store import FrameStore
from common.jobs import DetectedFrame, DetectJob, OcrJob, PlateBox, parse_job
from common.metrics import Metrics
from common.queues import enqueue
from detector_worker.core import PlateDetector

log = logging.getLogger(__name__)


class DetectStage:
    name = "detect"

    def __init__(self, detector: PlateDetector, store: FrameStore, ocr_queue: Queue, metrics: Metrics) -> None:
        self.detector, self.store, self.ocr_queue, self.metrics = detector, store, ocr_queue, metrics

    def handle(self, payload: Any) -> dict[str, Any]:
        job = parse_job(payload, self.name)
        assert isinstance(job, DetectJob)
        images = self.store.get_many([f.key for f in job.frames])
        present = [f for f in job.frames if images[f.key] is not None]
        if missing := len(job.frames) - len(present):
            log.warning("batch %s: %d frames expired before detection", job.batch_id, missing)
            self.metrics.frames_missing.labels(stage=self.name).inc(missing)
        if not present:
            return {"frames": 0, "plates": 0}
        start = time.perf_counter()
        found = self.detector.detect([images[f.key] for f in present], [f.roi for f in present])  # type: ignore[misc]
        per_frame_ms = 1000 * (time.perf_counter() - start) / len(present)
        self.metrics.detector_batch_frames.observe(len(present))
        self.metrics.frames_processed.labels(stage=self.name).inc(len(present))
        frames = [
            DetectedFrame(
                frame=ref,
                plates=[PlateBox(box_xyxy=box, confidence=conf) for box, conf in detections.boxes()],
                detect_ms=per_frame_ms,
            )
            for ref, detections in zip(present, found, strict=True)
        ]
        enqueue(self.ocr_queue, OcrJob(batch_id=job.batch_id, frames=frames))
        return {"frames": len(frames), "plates": sum(len(f.plates) for f in frames)}
