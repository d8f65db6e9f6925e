"""The frames an ingest node's camera threads handed on and its main thread has not packed yet
(`PendingFrames`): a queue bounded by its frames' count and by their JPEG bytes together
(MAX_PENDING_FRAME_BYTES). By count alone, 4 jobs' worth of 8K noise frames (24 MB each at quality 85)
held 1.5 GB while Redis was away (a review)."""

from __future__ import annotations

import queue

from common.jobs import FrameRef

PendingFrame = tuple[FrameRef, bytes]
"""A frame to pack: its reference and its JPEG."""


class PendingFrames(queue.Queue[PendingFrame]):
    """A queue of at most `max_frames` frames and, but for a frame alone (each is held to MAX_FRAME_BYTES at
    ingest), at most `max_bytes` of JPEG. `full()` says no frame more fits; `fits(size)` whether one of
    `size` bytes does; a put that does not fit raises queue.Full (or waits, when blocking)."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        super().__init__(max_frames)
        self.max_bytes = max_bytes
        self.held_bytes = 0
        """The JPEG bytes of the frames held now."""

    def _put(self, item: PendingFrame) -> None:
        super()._put(item)
        self.held_bytes += len(item[1])

    def _get(self) -> PendingFrame:
        item = super()._get()
        self.held_bytes -= len(item[1])
        return item

    def _room(self, size: int) -> bool:
        """Whether a frame of `size` bytes fits now (called holding the queue's mutex)."""
        count = self._qsize()
        return count < self.maxsize and (count == 0 or self.held_bytes + size <= self.max_bytes)

    def fits(self, size: int) -> bool:
        """Whether a frame of `size` JPEG bytes would be taken now."""
        with self.mutex:
            return self._room(size)

    def full(self) -> bool:
        with self.mutex:
            return not self._room(1)

    def put(self, item: PendingFrame, block: bool = True, timeout: float | None = None) -> None:
        with self.not_full:
            if not self.not_full.wait_for(lambda: self._room(len(item[1])), timeout if block else 0):
                raise queue.Full
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()
