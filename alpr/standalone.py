"""The standalone pipeline (`alpr run`): sample frames from one source, detect -> read -> redact in
one process, log every read, group the reads into sightings (one per vehicle pass, with the voted
plate and the snapshot of its best frame, blurred) and write the redacted video or frames. It calls
the same role cores as the distributed chain. This module owns the run itself (`Pipeline`) and its
count (`RunSummary`); how the source is read and a signal stops it is alpr/source_passes.py's, what
the run writes alpr/standalone_output.py's."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from alpr.source_passes import SourcePasses, StopSignals
from alpr.standalone_output import RedactedWriter, Snapshots
from common import defaults, geometry
from common.frame_store import frame_key
from common.jobs import FrameRef, make_frame_id
from common.plate_log import PlateLog
from common.roi import Polygon, RoiWatch
from common.sighting_log import SightingLog
from common.types import Observation, PlateRead, Sighting
from detector_worker.core import PlateDetector, select_reads
from ingest.frame_source import FrameSource, SampledFrame
from ingest.reconnect import SourceKeeper
from ingest.sources import ImageFolderSource
from ocr_worker.core import PlateReader
from redactor_worker.core import redact
from sighting_worker.core import SightingTracker, is_vehicle_pass

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    frames: int = 0
    plates_detected: int = 0
    """Plates the detector found, each once (a box nested in a stronger one is a part of it), in the ROI or not."""
    plates_outside_roi: int = 0
    """Of those, the plates whose box's centre lies outside the ROI: blurred, never read. Counted as none
    detected, they made a run with an ROI drawn for another resolution say "0 plates detected" (a review)."""
    reads_logged: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    """What the source could not read, the first MAX_FAILURES_KEPT of them (ingest.frame_source)."""
    failure_count: int = 0
    """All that the source could not read, those not in `failures` too."""
    source_errors: int = 0
    """A live stream's drops, and the reopenings that failed meanwhile (ingest/reconnect.py): it is reopened
    with backoff, as an ingest node's camera is."""
    stopped_by: str | None = None
    """The signal that ended the run before its source did (SIGTERM, SIGINT), if one did."""
    sightings: list[Sighting] = field(default_factory=list)
    """Every vehicle pass, in the order they closed (the same grouping core as the chain's sighting pool)."""
    output: Path | None = None
    """The redacted video or frames folder, checked whole; None when no frame was written."""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def trusted_sightings(self, min_confidence: float) -> list[Sighting]:
        """Sightings whose voted plate is at least `min_confidence` sure, earliest first."""
        return sorted((s for s in self.sightings if s.plate and s.confidence >= min_confidence),
                      key=lambda s: (s.first_seen_s, s.sighting_id))  # fmt: skip


def observations(frame: FrameRef, reads: Sequence[PlateRead]) -> list[Observation]:
    """A frame's reads as the grouping core takes them: those with a reading, as the chain logs them
    (plate_log.read_rows) and its sighting pool reads them back. Plates found but not read were fed too:
    they bridged gaps the chain splits at, and three unread boxes made a sighting of no plate."""
    return [
        Observation(
            frame.camera_id,
            frame.frame_id,
            index,
            frame.captured_at_s,
            read.box_xyxy,
            read.text,
            min(1.0, max(0.0, read.confidence)),
        )  # fmt: skip
        for index, read in enumerate(reads)
        if read.best is not None
    ]


@dataclass(frozen=True)
class ProcessedFrame:
    """One frame through the three cores: the frame (with its stage timings), its reads, its pixels
    with every plate hidden."""

    frame: FrameRef
    reads: list[PlateRead]
    redacted: np.ndarray
    outside_roi: int = 0
    """Plates found outside the ROI (not nested in a stronger box): blurred, not read."""


@dataclass
class Pipeline:
    """The three cores and where results go."""

    detector: PlateDetector
    reader: PlateReader
    plate_log: PlateLog
    sighting_log: SightingLog
    redact_method: Literal["blur", "pixelate"] = "blur"
    min_confidence: float = defaults.OCR_MIN_CONFIDENCE
    roi: Polygon | None = None
    crop_margin: float = defaults.OCR_CROP_MARGIN
    region: str = defaults.OCR_REGION
    sighting_gap_s: float = defaults.SIGHTING_GAP_S

    def process_batch(self, frames: Sequence[FrameRef], images: Sequence[np.ndarray]) -> list[ProcessedFrame]:
        """Detect, read and redact a batch of frames, as the chain's stages do (the same cores and the
        same read step); each frame comes back with its stage timings."""
        start = time.perf_counter()
        detections = self.detector.detect(images)
        detect_ms = 1000 * (time.perf_counter() - start) / max(1, len(images))
        out = []
        for frame, image, found in zip(frames, images, detections, strict=True):
            start = time.perf_counter()
            selection = select_reads(found, self.roi, self.detector.settings.confidence)  # what is read
            boxes = [box for box, kept in zip(found.boxes(), selection.read, strict=True) if kept]
            crops = [geometry.crop(image, box, self.crop_margin) for box, _ in boxes]
            edges = [geometry.at_side_edge(box, image.shape[1]) for box, _ in boxes]
            reads = self.reader.read_plates(crops, boxes, edges)
            ocr_ms = 1000 * (time.perf_counter() - start)
            start = time.perf_counter()
            every_box = [box for box, _ in found.boxes()]  # every box hidden, read or not
            cap = self.detector.settings.max_plates_per_frame
            redacted = redact(image, every_box, self.redact_method, max_boxes=cap)
            redact_ms = 1000 * (time.perf_counter() - start)
            timed = frame.timed("detect", detect_ms).timed("ocr", ocr_ms).timed("redact", redact_ms)
            out.append(ProcessedFrame(timed, reads, redacted, selection.outside_roi))
        return out

    def frame_ref(self, camera_id: str, run_id: str, started_at_s: float, sampled: SampledFrame, seq: int) -> FrameRef:
        """The chain's frame type for a frame of this run (its id from the one id scheme)."""
        frame_id = make_frame_id(camera_id, run_id, sampled.index)
        return FrameRef(
            frame_id=frame_id, camera_id=camera_id, seq=seq, frame_index=sampled.index,
            captured_at_s=started_at_s + sampled.source_time_s, source_time_s=sampled.source_time_s,
            key=frame_key(frame_id), region=self.region, roi=list(self.roi) if self.roi else None,
        )  # fmt: skip

    def run(
        self,
        source: FrameSource,
        camera_id: str,
        out_dir: Path | None,
        on_frame: Callable[[RunSummary], None] | None = None,
        stop: StopSignals | None = None,
    ) -> RunSummary:
        """Run the source's frames through the cores until it ends, or until `stop` is requested: then
        the frames in hand are finished, every open sighting is closed and logged, and the output is
        released and checked (RedactedWriter.finish)."""
        summary = RunSummary()
        started_at, live_from = time.time(), time.monotonic()  # a reopened stream's frames dated from here
        run_id = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%S.%f")
        as_frames = isinstance(source, ImageFolderSource)
        writer = RedactedWriter(out_dir, as_frames, source.sampled_fps) if out_dir else None
        start = time.perf_counter()
        tracker = SightingTracker(self.sighting_gap_s, trusted_confidence=self.min_confidence)
        snapshots = Snapshots(out_dir)
        roi_watch = RoiWatch(log)
        tracker.set_frame_interval(camera_id, 1.0 / source.sampled_fps)  # a slow sample rate stretches the gap

        def close(closed: list[Sighting]) -> None:
            sightings = [s for s in closed if is_vehicle_pass(s, self.min_confidence)]
            self.sighting_log.record_many([(s, snapshots.write(s)) for s in sightings])
            summary.sightings += sightings

        def flush(batch: list[SampledFrame]) -> None:
            for sampled in batch:
                roi_watch.check(camera_id, self.roi, (sampled.image.shape[1], sampled.image.shape[0]))
            refs = [self.frame_ref(camera_id, run_id, started_at, sampled, seq) for seq, sampled in
                    enumerate(batch, start=summary.frames)]  # fmt: skip
            results = self.process_batch(refs, [sampled.image for sampled in batch])
            summary.reads_logged += self.plate_log.record_many([(r.frame, r.reads) for r in results])
            for sampled, result in zip(batch, results, strict=True):
                summary.plates_detected += len(result.reads) + result.outside_roi
                summary.plates_outside_roi += result.outside_roi
                close(tracker.observe_frame(observations(result.frame, result.reads)))  # older passes
                snapshots.keep(result.frame.frame_id, result.redacted, tracker.best_frame_ids())
                if writer:
                    writer.write(sampled, result.redacted)
                summary.frames += 1
                summary.seconds = time.perf_counter() - start
                if on_frame:
                    on_frame(summary)

        passes = SourcePasses(flush, self.detector.settings.batch_size, stop, live_from, source.is_live)
        keeper = None
        try:
            if source.is_live:  # a drop is reopened with backoff, as by an ingest node (the same code)
                keeper = SourceKeeper(source.uri, source.sample_fps, camera_id, stop or threading.Event(),
                                      logger=log, memory_mb=source.memory_mb,
                                      rtsp_transport=source.rtsp_transport)  # fmt: skip
                keeper.run(passes.read, first=source)
            else:  # footage (a file, a folder, a video served over http://) ends where it ends
                passes.read(source)
            summary.stopped_by = stop.received if stop else None
            close(tracker.close_all())
        except BaseException:
            with contextlib.suppress(Exception):  # the passes in view are logged still: a full disk lost them
                close(tracker.close_all())
            if writer:  # what was written plays, or is deleted (finish); the error says why the rest is not
                with contextlib.suppress(Exception):
                    writer.finish()
                writer.close()
            raise
        finally:
            summary.source_errors = keeper.errors if keeper else 0
        if writer:
            summary.output = writer.finish()
        summary.failures = [*snapshots.failures, *passes.failures]
        summary.failure_count = len(snapshots.failures) + passes.failure_count
        summary.seconds = time.perf_counter() - start
        log.info(
            "processed %d frames from %s: %d plates (%d outside the ROI), %d reads logged, %d sightings",
            summary.frames,
            camera_id,
            summary.plates_detected,
            summary.plates_outside_roi,
            summary.reads_logged,
            len(summary.sightings),
        )
        return summary
