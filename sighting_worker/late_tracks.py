"""The tracks of reads logged late, held open across a camera's rounds (`HeldLate`, kept in its cursor's state
as `late`): a late track is closed once no late read has joined it for LATE_SIGHTING_HOLD_S (Postgres's clock),
not at the end of the round that took its reads. A spool replayed in batches, or an OCR pool catching up,
logs one car's reads over several rounds, in any order: each round's share made a late sighting of its own
(three cars for one, a review). The reads join a held track by the tracker's own rules
(`SightingTracker.join`: within the camera's gap of the track's span, by box or text), whichever round
takes them, so a pass is one late sighting. A read that comes after its pass's track closed makes a
sighting of its own, as a live read after its track's sighting does (grouping.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from common import defaults
from common.sighting_log import LoggedRead
from sighting_worker.grouping import SightingTracker
from sighting_worker.track import Track

LATE_TRACKS_HELD = 32
"""Most late tracks a camera's cursor holds open (the least recently joined close first, then the earliest
captured): a replay of an hour of a busy camera would otherwise hold hundreds, 2 KB each, rewritten with
the cursor every round. A replay goes forward in capture time: the track a next batch continues is among
the latest joined."""


@dataclass
class Held:
    """One late track held open."""

    track: Track
    touched_s: float
    """When a read last joined it (Postgres's clock)."""
    logged_at_s: float
    """When its newest read was logged (Postgres's clock): its late sighting's and alerts' `logged_at_s`."""

    def to_state(self) -> dict[str, Any]:
        return {"track": self.track.to_state(), "touched_s": self.touched_s, "logged_at_s": self.logged_at_s}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> Held:
        return cls(Track.from_state(saved["track"]), float(saved["touched_s"]), float(saved["logged_at_s"]))


@dataclass
class HeldLate:
    """A camera's late tracks held open (see the module docstring)."""

    held: list[Held] = field(default_factory=list)
    changed: bool = False
    """Whether this round joined a read to a track or closed one (the cursor is saved then)."""

    @classmethod
    def load(cls, state: dict[str, Any]) -> HeldLate:
        saved = state.get("late")
        return cls([Held.from_state(held) for held in saved.get("tracks", [])] if isinstance(saved, dict) else [])

    def state(self) -> dict[str, Any]:
        return {"tracks": [held.to_state() for held in self.held]}

    def open_ids(self) -> set[str]:
        """The held tracks' ids (each the id its sighting will have)."""
        return {held.track.sighting_id for held in self.held}

    def group(
        self,
        reads: list[LoggedRead],
        tracker: SightingTracker,
        gap_s: float,
        now_s: float,
        keep_alive: Callable[[], None],
    ) -> tuple[dict[int, str], dict[str, str]]:
        """Join `reads` (late, in capture order) to the held tracks, or to tracks they start, by `tracker`'s
        rules at a camera whose gap is `gap_s`; `now_s`: Postgres's clock. The track each read went to (read
        id -> its sighting's id), and the held tracks whose id changed (old -> new: a read captured before
        its first joined, and a track's id is its earliest read's). The round's reads are swept in capture
        order past the held tracks, each frame matched against those within the gap of it only."""
        ids_before = {id(held.track): held.track.sighting_id for held in self.held}
        by_track = {id(held.track): held for held in self.held}
        waiting = sorted(self.held, key=lambda held: held.track.first.captured_at_s)
        near: list[Track] = []
        went: dict[int, Track] = {}
        for _, frame in groupby(reads, key=lambda read: read.observation.frame_id):
            keep_alive()
            frame_reads = list(frame)
            at_s = frame_reads[0].observation.captured_at_s
            while waiting and waiting[0].track.first.captured_at_s - gap_s <= at_s:
                near.append(waiting.pop(0).track)
            near = [track for track in near if track.last.captured_at_s >= at_s - gap_s]
            for read, track in zip(frame_reads, tracker.join([r.observation for r in frame_reads], near, gap_s),
                                   strict=True):  # fmt: skip
                held = by_track.get(id(track))
                if held is None:
                    held = by_track[id(track)] = Held(track, now_s, read.logged_at_s)
                    self.held.append(held)
                held.touched_s, held.logged_at_s = now_s, max(held.logged_at_s, read.logged_at_s)
                went[read.read_id] = track
        self.changed = self.changed or bool(went)
        renamed = {
            before: held.track.sighting_id
            for held in self.held
            if (before := ids_before.get(id(held.track))) is not None and before != held.track.sighting_id
        }
        return {read_id: track.sighting_id for read_id, track in went.items()}, renamed

    def close_due(self, now_s: float) -> list[Held]:
        """Close the tracks no read joined for LATE_SIGHTING_HOLD_S by `now_s` (Postgres's clock), and the
        least recently joined past LATE_TRACKS_HELD; the closed ones, earliest captured first."""
        self.held.sort(key=lambda held: (held.touched_s, held.track.last.captured_at_s), reverse=True)
        kept = [held for held in self.held if now_s - held.touched_s < defaults.LATE_SIGHTING_HOLD_S]
        kept = kept[:LATE_TRACKS_HELD]
        kept_ids = {id(held) for held in kept}
        closed = [held for held in self.held if id(held) not in kept_ids]
        self.held = kept
        self.changed = self.changed or bool(closed)
        return sorted(closed, key=lambda held: (held.track.first.captured_at_s, held.track.sighting_id))
