"""Each camera's watermark, as the ingest node's ledger (ingest/ledger.py) writes it with its rows: the
capture time before which every frame the camera sampled has its row. Kept per camera: the frames sampled
and not yet written, the date its next frame may be dated back to (recorded footage, a stream's trusted
timestamps, a hold), and whether another node took it (`released`). The ledger calls it under its lock."""

from __future__ import annotations

from collections.abc import Callable

from common.frame_log import FrameRecord
from common.jobs import FrameRef
from ingest.stream_lag import MAX_LAG_S

WATERMARK_MARGIN_S = 1.0
"""A camera with no frame waiting gets a watermark this far before now: a frame's capture time is taken
a moment before the ledger hears of it."""


class CameraWatermarks:
    """The cameras' watermarks of one ledger (`FrameLedger.watermarks`); not thread-safe: the ledger holds
    its lock around every call."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now  # the clock the node dates its frames by: a watermark is a capture time
        self.outstanding: dict[str, dict[str, float]] = {}
        """Per camera, the frames sampled and not yet written (frame id -> capture time), oldest first."""
        self.last_dates: dict[str, tuple[float, bool]] = {}
        """Per camera whose next frame may be dated before now, its last frame's date (or the date it is
        held at: `hold`) and whether it is recorded footage, or held (`marks`)."""
        self.let_go: set[str] = set()
        """Cameras another node took from this one (`released`) with frames not yet written (`outstanding`)."""

    def sampled(self, ref: FrameRef, dated_back: bool = False) -> None:
        """A frame was just sampled: the camera's watermark stays before it until its row is written, and
        at its date after, for recorded footage or when the camera's next frame may be dated back
        (`dated_back`: a stream whose timestamps are trusted)."""
        self.outstanding.setdefault(ref.camera_id, {})[ref.frame_id] = ref.captured_at_s
        if ref.recorded or dated_back:
            self.last_dates[ref.camera_id] = (ref.captured_at_s, ref.recorded)
        else:
            self.last_dates.pop(ref.camera_id, None)

    def claimed(self, camera_id: str) -> None:
        """The camera is this node's (its claim, ingest/claims.py): its watermark is written from the next
        write on and removed at the stop, whether or not it samples a frame. Written only once it sampled
        one, a camera taken over from a node killed that sampled nothing (its footage all finished) left
        the dead node's watermark in place, and the camera's sightings waited for it to go stale: the
        frames' lifetime, 12 minutes (a chaos review). Until its first frame the watermark may be held
        (`hold`: FrameLedger.claimed's `held_at_s`), after which its frames will be dated."""
        self.outstanding.setdefault(camera_id, {})
        self.let_go.discard(camera_id)

    def hold(self, camera_id: str, until_s: float) -> None:
        """Keep the camera's watermark at or before `until_s` until its next frame is sampled or it ends:
        that frame will be dated no earlier, and the sighting pool groups nothing past the watermark."""
        held = self.last_dates.get(camera_id)
        if held is None or until_s < held[0]:
            self.last_dates[camera_id] = (until_s, True)

    def ended(self, camera_id: str) -> None:
        """The camera samples no more frames (its file ended, it failed, or the node stops)."""
        self.last_dates.pop(camera_id, None)

    def released(self, camera_id: str) -> None:
        """Another node took the camera from this one, which samples it no more (IngestNode.lose): its frames
        sampled here and not yet written hold its watermark before them until their rows are written, after
        which this node writes it no more, and never deletes it (at its stop): it is the new holder's. Kept
        as any other, it was written over by this node's moment ago, or deleted at its stop. Said again
        once the camera's thread has ended (after its last frame); `claimed` takes the camera back."""
        self.last_dates.pop(camera_id, None)
        self.let_go.add(camera_id)
        self.forget_let_go()

    def forget_let_go(self) -> None:
        """The cameras let go whose frames are all written: this ledger has no more to say of them."""
        for camera_id in [c for c in self.let_go if not self.outstanding.get(c)]:
            self.let_go.discard(camera_id)
            self.outstanding.pop(camera_id, None)

    def settle(self, records: list[FrameRecord]) -> None:
        """These frames' rows are written (or never will be)."""
        for record in records:
            self.outstanding.get(record.frame.camera_id, {}).pop(record.frame.frame_id, None)
        if self.let_go:
            self.forget_let_go()

    def marks(self, batch: list[FrameRecord], closing: bool) -> dict[str, float | None]:
        """Each camera's watermark once `batch` is written (None for every camera when the node is
        closing with nothing left): its oldest frame still to write, else a moment ago, or its last frame's
        date when that is earlier, as the next frame is dated after it but may be dated before now: by
        the footage for recorded footage (which may run behind the clock), by the stream's timestamps
        for a stream's frame read late (at most MAX_LAG_S before now: a stream that went silent holds
        its watermark back no further). Frames of a stall, dated back into it, fell behind a watermark
        already written, and their reads were never grouped (a review). A camera let go (`released`): its
        oldest frame still to write alone, never None."""
        if closing:
            return dict.fromkeys(c for c in self.outstanding if c not in self.let_go)
        written = {record.frame.frame_id for record in batch}
        now_s = self.now()
        marks: dict[str, float | None] = {}
        for camera_id, frames in self.outstanding.items():
            waiting = (captured_at_s for frame_id, captured_at_s in frames.items() if frame_id not in written)
            if camera_id in self.let_go:  # another node's camera now: held before its frames left here alone
                if (oldest_s := next(waiting, None)) is not None:
                    marks[camera_id] = oldest_s
                continue
            settled_s = now_s - WATERMARK_MARGIN_S
            if camera_id in self.last_dates:
                last_s, recorded = self.last_dates[camera_id]
                settled_s = min(settled_s, last_s if recorded else max(last_s, settled_s - MAX_LAG_S))
            marks[camera_id] = next(waiting, settled_s)  # frames are sampled in order
        return marks
