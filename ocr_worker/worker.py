"""The OCR pool's edge: takes an OCR job (frames with plate boxes and the keys of their crops), reads
the crops, logs the reads to Postgres in one transaction, deletes the crops, and queues the redact
job."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rq import Queue

from common.errors import InputError
from common.frame_store import FrameStore, decode_jpeg
from common.jobs import OcrJob, RedactJob, parse_job
from common.metrics import Metrics
from common.plate_log import FrameInfo, PlateLog
from common.queues import enqueue
from common.regions import load_regions
from common.types import PlateRead
from ocr_worker.core import PlateReader

log = logging.getLogger(__name__)


class OcrStage:
    name = "ocr"

    def __init__(
        self,
        make_reader: Callable[[str], PlateReader],
        store: FrameStore,
        plate_log: PlateLog,
        redact_queue: Queue,
        metrics: Metrics,
        job_timeout_s: int,
    ) -> None:
        self.make_reader, self.store, self.plate_log = make_reader, store, plate_log
        self.redact_queue, self.metrics, self.job_timeout_s = redact_queue, metrics, job_timeout_s
        self.readers: dict[str, PlateReader] = {}

    def reader(self, region: str) -> PlateReader:
        """One reader per plate region, made on first use and kept."""
        if region not in self.readers:
            if region not in load_regions():  # the job's fault, for good; a broken model stays the worker's
                raise InputError(f"unknown plate region {region!r}; known: {', '.join(sorted(load_regions()))}")
            self.readers[region] = self.make_reader(region)
        return self.readers[region]

    def maintain(self) -> None:
        """No periodic duty."""

    def handle(self, payload: Any) -> dict[str, Any]:
        job = parse_job(payload, OcrJob)
        with_plates = [f for f in job.frames if any(p.crop_key for p in f.plates)]  # plates in the ROI
        crop_keys = [p.crop_key for f in with_plates for p in f.plates if p.crop_key]
        crops = self.decode_crops(crop_keys)
        logged: list[tuple[FrameInfo, list[PlateRead]]] = []
        ocr_ms: dict[str, float] = {}
        for item in with_plates:
            ref = item.frame
            start = time.perf_counter()
            present = [(p, crops.get(p.crop_key)) for p in item.plates if p.crop_key]
            if any(crop is None for _, crop in present):
                self.metrics.frames_missing.labels(stage=self.name).inc()
            legible = [(p, crop) for p, crop in present if crop is not None]
            with self.metrics.core_cpu(self.name):
                results = self.reader(ref.region).read_batch([crop for _, crop in legible])  # type: ignore[misc]
            reads = [PlateRead(p.box_xyxy, p.confidence, tuple(c)) for (p, _), c in zip(legible, results, strict=True)]
            ocr_ms[ref.frame_id] = 1000 * (time.perf_counter() - start)
            info = FrameInfo(
                ref.camera_id, ref.frame_id, ref.frame_index, ref.source_time_s,
                datetime.fromtimestamp(ref.captured_at, UTC),
                {"detect": item.detect_ms, "ocr": ocr_ms[ref.frame_id]},
            )  # fmt: skip
            logged.append((info, reads))
        new = self.plate_log.record_many(logged)
        now = time.time()
        for info, reads in logged:
            if any(r.best for r in reads):
                self.metrics.end_to_end_seconds.observe(now - info.captured_at.timestamp())
            self.metrics.count_reads(r.best.matches_format for r in reads if r.best)
        processed = sum(1 for f in job.frames if f.outcome == "done")  # skipped, expired, corrupt cost nothing
        self.metrics.frames_processed.labels(stage=self.name).inc(processed)
        self.store.delete_many(crop_keys)
        redact_job = RedactJob(batch_id=job.batch_id, frames=job.frames, ocr_ms=ocr_ms)
        enqueue(self.redact_queue, redact_job, self.job_timeout_s)
        return {"frames": processed, "reads_logged": new}

    def decode_crops(self, keys: list[str]) -> dict[str, Any]:
        """Plate crops by key; an expired or undecodable crop is left out (counted), the rest are read."""
        crops = {}
        for key, data in self.store.get_jpegs(keys).items():
            if data is None:
                continue
            try:
                crops[key] = decode_jpeg(data, key)
            except InputError as error:
                log.warning("%s", error)
                self.metrics.frames_corrupt.labels(stage=self.name).inc()
        return crops
