"""How `alpr run` reads its source: in batches (`batches`), one pass of footage or one pass per
connection of a live stream, numbered and dated on from the pass before (`SourcePasses`), until the
source ends or SIGTERM, SIGINT or SIGHUP asks the run to stop (`StopSignals`)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from types import FrameType, TracebackType
from typing import Any

from common import defaults
from ingest.frame_source import MAX_FAILURES_KEPT, FrameSource, SampledFrame
from ingest.reconnect import ReaderError

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
