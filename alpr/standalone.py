"""The standalone pipeline (`alpr run`): sample frames from one source, detect -> read -> redact in
one process, log every read, group the reads into sightings (one per vehicle pass, with the voted
plate and the snapshot of its best frame, blurred) and write the redacted video or frames. It calls
the same role cores as the distributed chain."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

import cv2
import numpy as np

from common import defaults, geometry
from common.errors import InputError, OutputError
from common.frame_store import encode_jpeg, frame_key
from common.jobs import FrameRef, make_frame_id
from common.plate_log import PlateLog
from common.private_files import (
    create_private,
    make_private_folders,
    refuse_link,
    refuse_shared_folder,
    write_private,
)
from common.roi import Polygon, RoiWatch
from common.sighting_log import SightingLog
from common.types import Observation, PlateRead, Sighting
from detector_worker.core import PlateDetector, select_reads
from ingest.reconnect import ReaderError, SourceKeeper
from ingest.sources import MAX_FAILURES_KEPT, FrameSource, ImageFolderSource, SampledFrame
from ocr_worker.core import PlateReader
from redactor_worker.core import redact
from sighting_worker.core import SightingTracker, is_vehicle_pass

log = logging.getLogger(__name__)


OUTPUT_JPEG_QUALITY = 95
"""JPEG quality of the redacted frames and snapshots `alpr run` writes (OpenCV's default, as before)."""


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
    """What the source could not read, the first MAX_FAILURES_KEPT of them (ingest.sources)."""
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


class Snapshots:
    """The redacted frames holding the best read of an open sighting, written as the sighting's snapshot
    when it closes (`out/sightings/<sighting id>.jpg`); the others are let go at once."""

    def __init__(self, out_dir: Path | None) -> None:
        self.folder = out_dir / "sightings" if out_dir else None
        if self.folder is not None:  # a link planted there took the snapshots into a folder not made private
            refuse_link(self.folder)
        self.frames: dict[str, np.ndarray] = {}
        self.failures: list[str] = []
        """Snapshots that could not be written (their sightings are logged without one)."""

    def keep(self, frame_id: str, redacted: np.ndarray, wanted: set[str]) -> None:
        if self.folder is not None and frame_id in wanted:
            self.frames[frame_id] = redacted
        for stale in set(self.frames) - wanted:
            del self.frames[stale]

    def write(self, sighting: Sighting) -> str | None:
        image = self.frames.get(sighting.best_frame_id)
        if self.folder is None or image is None:
            return None
        path = self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', sighting.sighting_id)}.jpg"
        try:
            make_private_folders(self.folder)
            write_private(path, encode_jpeg(image, OUTPUT_JPEG_QUALITY))
        except OSError as error:  # a full disk lost the sightings themselves, not just their snapshots (a review)
            self.failures.append(f"the snapshot {path} of a sighting was not written: {error.strerror or error}")
            return None
        return str(path.absolute())  # `--out out` logged out/sightings/…: nothing, exported from elsewhere


@dataclass(frozen=True)
class ProcessedFrame:
    """One frame through the three cores: the frame (with its stage timings), its reads, its pixels
    with every plate hidden."""

    frame: FrameRef
    reads: list[PlateRead]
    redacted: np.ndarray
    outside_roi: int = 0
    """Plates found outside the ROI (not nested in a stronger box): blurred, not read."""


OUTPUT_NAMES = ("redacted.mp4", "redacted_frames", "sightings")
"""What `alpr run` writes in its --out folder: the redacted video or frames, the sightings' snapshots."""


def written_over(source: Path, out_dir: Path) -> Path | None:
    """The output of a run into `out_dir` that is the file or folder `source` (by its path, a link or a
    hard link) or holds it, if any: `alpr run out/redacted.mp4` replaced its own source with a video of
    its first two frames (a review)."""
    try:
        real = source.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    for name in OUTPUT_NAMES:
        made = out_dir / name
        with contextlib.suppress(OSError):
            if os.path.samefile(made, real) or made.resolve() in real.parents:
                return made
    return None


class RedactedWriter:
    """Writes redacted frames: an mp4 for a video source, numbered JPEGs for an image folder."""

    def __init__(self, out_dir: Path, as_frames: bool, fps: float) -> None:
        refuse_shared_folder(out_dir, "the redacted frames")
        make_private_folders(out_dir)  # redacted frames still show cars, faces and places
        self.out_dir, self.as_frames, self.fps = out_dir, as_frames, fps
        self.video: cv2.VideoWriter | None = None
        self.size_wh = (0, 0)
        self.path = out_dir / ("redacted_frames" if as_frames else "redacted.mp4")
        refuse_link(self.path)  # a folder linked elsewhere took the frames where no one made it private
        self.frames_written = 0

    def write(self, frame: SampledFrame, image: np.ndarray) -> None:
        if self.as_frames:
            make_private_folders(self.path)
            write_private(self.path / f"{frame.index:06d}.jpg", encode_jpeg(image, OUTPUT_JPEG_QUALITY))
            self.frames_written += 1
            return
        size_wh = (image.shape[1], image.shape[0])
        if self.video is None:
            self.size_wh = size_wh
            create_private(self.path)  # the encoder opens it by name: private first, and never through a link
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size_wh)
            if not self.video.isOpened():  # it wrote nothing, and the run said where its output was
                raise InputError(f"the video encoder refused {size_wh[0]}x{size_wh[1]} frames: {self.path} not written")
        self.video.write(image if size_wh == self.size_wh else cv2.resize(image, self.size_wh))
        self.frames_written += 1

    def close(self) -> None:
        """Release the encoder: an mp4's index is written now (a video never released does not play)."""
        if self.video is not None:
            self.video.release()
            self.video = None

    def finish(self) -> Path | None:
        """Close, and the output's path once the video is checked whole; None when no frame was written
        (nothing was made). OpenCV only warns "Failed to write frame": a full disk ended the run with
        exit 0, naming a video that does not play as its output. A video holding fewer frames than were
        written, or whose last frame does not decode, is deleted and an OutputError."""
        self.close()
        if not self.frames_written:
            return None
        if not self.as_frames:
            self.check_video()
        return self.path

    def check_video(self) -> None:
        """OutputError, the file deleted, unless the video reopens with every frame written, the last decoding."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            held = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            last_decodes = held > 0 and capture.set(cv2.CAP_PROP_POS_FRAMES, held - 1) and capture.read()[0]
        finally:
            capture.release()
        if held == self.frames_written and last_decodes:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if held <= 0:
            found = "does not play"
        elif held != self.frames_written:
            found = f"holds {held} of the {self.frames_written} frames written"
        else:
            found = "does not decode to its last frame"
        raise OutputError(f"the redacted video {self.path} {found} (a full disk?); the partial file was deleted")


STOP_POLL_S = 0.1
"""How often a run waiting to reopen its stream looks whether a signal asked it to stop."""


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP turned into a request to stop, for the length of a `with` block: a
    stream source ends only by a signal (systemd, docker stop, an ssh session dropped), which killed the
    run with its video never released (unplayable) and its open sightings never logged. Installed only
    in the main thread (the only one Python lets set handlers), and a signal ignored (SIGHUP under
    `nohup`) stays ignored; the previous handlers back afterwards; after the first signal they are back
    at once, so a second one acts as it did before (Ctrl-C twice interrupts)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) != signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.restore()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        self.restore()

    def restore(self) -> None:
        for signum, handler in self.previous.items():  # None: a handler not set from Python, the default's
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self.previous.clear()

    def requested(self) -> bool:
        """Whether a signal asked the run to stop."""
        return self.received is not None

    is_set = requested  # a Stop (ingest/reconnect.py), as an ingest node's threading.Event is

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less once a signal asks the run to stop (a reconnecting stream's
        backoff: a stop waited for its 30 s); whether one did. Slept in short steps: the handler runs in
        this thread, and a sleep it interrupts goes on (PEP 475)."""
        deadline = time.monotonic() + timeout
        while not self.requested() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(STOP_POLL_S, left))
        return self.requested()


def batches(frames: Iterator[SampledFrame], size: int, stop: StopSignals | None) -> Iterator[list[SampledFrame]]:
    """The frames in batches of `size`, the last one shorter; when `stop` is requested, the frames in
    hand are the last batch and no other frame is taken from the source, the first one neither (a stream
    opened after a signal, its open waited out on a hung camera, waited a read timeout more for a frame)."""
    batch: list[SampledFrame] = []
    while not (stop and stop.requested()) and (frame := next(frames, None)) is not None:
        batch.append(frame)
        if len(batch) >= size or (stop and stop.requested()):
            yield batch
            batch = []
    if batch:
        yield batch


class SourcePasses:
    """Reads a source's passes into `flush` in batches: one for footage; one per connection for a live
    stream, which SourceKeeper (ingest/reconnect.py) reopens after a drop. A reopened stream counts its
    frames and their time from 0 again: its frames are numbered on from the last frame read and dated by
    when they were captured (from `started`, time.monotonic()), else their reads took the ids of the
    first connection's frames and were dropped as repeats. With `own_errors_apart`, an error of `flush`
    (the cores, the log, the output) is raised as a ReaderError: the keeper lets it out, it is no drop."""

    def __init__(
        self,
        flush: Callable[[list[SampledFrame]], None],
        batch_size: int,
        stop: StopSignals | None,
        started: float,
        own_errors_apart: bool,
    ) -> None:
        self.flush, self.batch_size, self.stop = flush, batch_size, stop
        self.started, self.own_errors_apart = started, own_errors_apart
        self.last: SampledFrame | None = None
        self.failures: list[str] = []
        """What the source could not read, the first MAX_FAILURES_KEPT of all its passes'."""
        self.failure_count = 0

    def read(self, source: FrameSource) -> None:
        """One pass of `source`, until it ends or a stop is requested."""
        frames = self.frames(source)
        try:
            for batch in batches(frames, self.batch_size, self.stop):
                try:
                    self.flush(batch)
                except Exception as error:
                    if not self.own_errors_apart:
                        raise
                    raise ReaderError(error) from error
        finally:
            frames.close()  # stopped early: the stream's capture released now

    def frames(self, source: FrameSource) -> Generator[SampledFrame, None, None]:
        """The pass's frames, numbered and dated on from the last pass's; what it could not read kept."""
        later, index_from, time_from_s = self.last is not None, 0, 0.0
        if self.last is not None:  # a live stream reopened: on from the last frame read
            index_from = self.last.index + 1
            time_from_s = max(time.monotonic() - self.started, self.last.source_time_s + defaults.CAPTURE_STEP_S)
        frames = source.frames()
        try:
            for sampled in frames:
                if later:
                    sampled = replace(sampled, index=index_from + sampled.index,
                                      source_time_s=time_from_s + sampled.source_time_s)  # fmt: skip
                self.last = sampled
                yield sampled
        finally:
            if isinstance(frames, Generator):
                frames.close()
            self.failures.extend(source.failures[: MAX_FAILURES_KEPT - len(self.failures)])
            self.failure_count += source.failure_count


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
