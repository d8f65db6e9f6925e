"""The standalone pipeline (`alpr run`): sample frames from one source, detect -> read -> redact in
one process, log every read and write the redacted video or frames. It calls the same role cores
as the distributed chain."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from common import defaults, geometry
from common.frame_store import frame_key
from common.jobs import FrameRef, make_frame_id
from common.plate_log import PlateLog
from common.types import PlateRead
from detector_worker.core import PlateDetector, Polygon, filter_by_roi
from ingest.sources import FrameSource, ImageFolderSource, SampledFrame
from ocr_worker.core import PlateReader
from redactor_worker.core import redact

log = logging.getLogger(__name__)


def likely_misread(a: str, b: str) -> bool:
    """True when `a` could be a misread of `b`: one substitution, insertion or deletion, or two
    substitutions in a text of six characters or more (look-alikes: 7ABG204 for 7ABC284)."""
    if len(a) == len(b) >= 6 and a != b:
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 2
    return one_edit_apart(a, b)


def one_edit_apart(a: str, b: str) -> bool:
    """True when `a` and `b` differ by one substitution, insertion or deletion."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


@dataclass
class DistinctPlate:
    text: str
    sightings: int
    best_confidence: float
    first_s: float
    last_s: float


@dataclass
class RunSummary:
    frames: int = 0
    plates_detected: int = 0
    reads_logged: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    sightings: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    output: Path | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def distinct_plates(self, min_sightings: int = 1) -> list[DistinctPlate]:
        """Plates read with trusted confidence, most sighted first. A text that is a likely misread of a
        more sighted one (`likely_misread`), seen while that one was in view, counts as that plate
        (7ABC204 or 7ABG204 while 7ABC284 passes); the log keeps every read as it was made."""
        merged: dict[str, list[tuple[float, float]]] = {}
        for text, seen in sorted(self.sightings.items(), key=lambda item: -len(item[1])):
            times = [t for t, _ in seen]
            for kept, kept_seen in merged.items():
                first, last = min(t for t, _ in kept_seen), max(t for t, _ in kept_seen)
                if (
                    likely_misread(text, kept)
                    and min(times) <= last + defaults.MISREAD_GAP_S
                    and max(times) >= first - defaults.MISREAD_GAP_S
                ):
                    kept_seen.extend(seen)
                    break
            else:
                merged[text] = list(seen)
        out = [
            DistinctPlate(text, len(s), max(c for _, c in s), min(t for t, _ in s), max(t for t, _ in s))
            for text, s in merged.items()
            if len(s) >= min_sightings
        ]
        return sorted(out, key=lambda p: (-p.sightings, p.first_s))


@dataclass(frozen=True)
class ProcessedFrame:
    """One frame through the three cores: the frame (with its stage timings), its reads, its pixels
    with every plate hidden."""

    frame: FrameRef
    reads: list[PlateRead]
    redacted: np.ndarray


class RedactedWriter:
    """Writes redacted frames: an mp4 for a video source, numbered JPEGs for an image folder."""

    def __init__(self, out_dir: Path, as_frames: bool, fps: float) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.as_frames, self.fps = out_dir, as_frames, fps
        self.video: cv2.VideoWriter | None = None
        self.size_wh = (0, 0)
        self.path = out_dir / ("redacted_frames" if as_frames else "redacted.mp4")

    def write(self, frame: SampledFrame, image: np.ndarray) -> None:
        if self.as_frames:
            self.path.mkdir(exist_ok=True)
            cv2.imwrite(str(self.path / f"{frame.index:06d}.jpg"), image)
            return
        size_wh = (image.shape[1], image.shape[0])
        if self.video is None:
            self.size_wh = size_wh
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size_wh)
        self.video.write(image if size_wh == self.size_wh else cv2.resize(image, self.size_wh))

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


@dataclass
class Pipeline:
    """The three cores and where results go."""

    detector: PlateDetector
    reader: PlateReader
    plate_log: PlateLog
    redact_method: Literal["blur", "pixelate"] = "blur"
    min_confidence: float = defaults.OCR_MIN_CONFIDENCE
    roi: Polygon | None = None
    crop_margin: float = defaults.OCR_CROP_MARGIN
    region: str = defaults.OCR_REGION

    def process_batch(self, frames: Sequence[FrameRef], images: Sequence[np.ndarray]) -> list[ProcessedFrame]:
        """Detect, read and redact a batch of frames, as the chain's stages do (the same cores and the
        same read step); each frame comes back with its stage timings."""
        start = time.perf_counter()
        detections = self.detector.detect(images)
        detect_ms = 1000 * (time.perf_counter() - start) / max(1, len(images))
        out = []
        for frame, image, found in zip(frames, images, detections, strict=True):
            start = time.perf_counter()
            boxes = list(filter_by_roi(found, self.roi).boxes())  # the ROI chooses what is read
            reads = self.reader.read_plates([geometry.crop(image, box, self.crop_margin) for box, _ in boxes], boxes)
            ocr_ms = 1000 * (time.perf_counter() - start)
            start = time.perf_counter()
            redacted = redact(image, [box for box, _ in found.boxes()], self.redact_method)  # every box hidden
            redact_ms = 1000 * (time.perf_counter() - start)
            timed = frame.timed("detect", detect_ms).timed("ocr", ocr_ms).timed("redact", redact_ms)
            out.append(ProcessedFrame(timed, reads, redacted))
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
    ) -> RunSummary:
        summary = RunSummary()
        started_at = time.time()
        run_id = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%S.%f")
        writer = RedactedWriter(out_dir, isinstance(source, ImageFolderSource), source.sample_fps) if out_dir else None
        start = time.perf_counter()
        batch: list[SampledFrame] = []
        batch_size = self.detector.settings.batch_size

        def flush() -> None:
            refs = [self.frame_ref(camera_id, run_id, started_at, sampled, seq) for seq, sampled in
                    enumerate(batch, start=summary.frames)]  # fmt: skip
            results = self.process_batch(refs, [sampled.image for sampled in batch])
            summary.reads_logged += self.plate_log.record_many([(r.frame, r.reads) for r in results])
            for sampled, result in zip(batch, results, strict=True):
                summary.plates_detected += len(result.reads)
                for read in result.reads:
                    if read.best and read.best.matches_format and read.confidence >= self.min_confidence:
                        summary.sightings[read.text].append((sampled.source_time_s, read.confidence))
                if writer:
                    writer.write(sampled, result.redacted)
                summary.frames += 1
                summary.seconds = time.perf_counter() - start
                if on_frame:
                    on_frame(summary)
            batch.clear()

        try:
            for frame in source.frames():
                batch.append(frame)
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
        finally:
            if writer:
                writer.close()
                summary.output = writer.path
        summary.failures = list(source.failures)
        summary.seconds = time.perf_counter() - start
        log.info(
            "processed %d frames from %s: %d plates, %d reads logged",
            summary.frames,
            camera_id,
            summary.plates_detected,
            summary.reads_logged,
        )
        return summary
