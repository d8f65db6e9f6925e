"""The passes of listed plates a camera's sighting round has alerted on (its cursor's `alerted`), by which
a pass is alerted on once: per watch-list entry, each pass's span of capture times, the nearest match
alerted on in it and the texts matched that near, where its newest reads' boxes were (to follow its car's
motion), and its car's tracks.

An early alert comes before the tracker has grouped its read (grouping waits for the camera's frames to
settle), so whether a later read is the same car is judged by where the pass's car should be at that read's
capture time: moving on, or back, as its reads around that time moved (`Pass.reaches`, by the tracker's own
allowance, `grouping.position_shift`), in whatever order the reads were logged. Once the tracker groups a
read the pass holds, the read's track is the pass's car (`Pass.tracks`): its sighting, closed later, is the
pass already alerted on, however far its car went — the tracker decides, not a distance between two boxes
(the best read's, wherever the car was then, against the pass's newest read: a car reading one character
off a listed plate, moving, got a second alert at its sighting, a review)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.types import Observation
from sighting_worker.grouping import position_shift

POINTS_KEPT = 8
"""Most reads' boxes a pass keeps (the newest by capture time): its car's motion is followed from them."""

READS_KEPT = 64
"""Most reads a pass keeps not yet grouped by the tracker (the newest by capture time): a read the tracker
groups ties its track to the pass and is let go, so a pass holds a few seconds' reads (the settle time)."""


def read_key(read: Observation) -> str:
    """A read's identity within its camera: its frame id and its index in the frame."""
    return f"{read.frame_id}#{read.plate_index}"


@dataclass
class Pass:
    """One pass of a listed plate alerted on (see the module docstring)."""

    first_s: float
    """The capture time of its earliest read, or of its sighting's."""
    last_s: float
    """The capture time of its latest read, or of its sighting's."""
    touched_s: float
    """When a read or sighting last met it (Postgres's clock, as the sighting pool reads it)."""
    nearest: float = 0.0
    """The distance of the nearest match alerted on in it (0, exact, in a pass saved without it)."""
    points: list[list[float]] = field(default_factory=list)
    """[capture time, box centre x, y, box width] of its newest reads, in capture order (none: begun by a
    sighting, or saved before they were kept)."""
    reads: dict[str, float] = field(default_factory=dict)
    """Its reads not yet grouped by the tracker (`read_key`), with their capture times."""
    tracks: set[str] = field(default_factory=set)
    """The tracker's open tracks (by the id their sighting will have) that hold one of its reads."""
    texts: set[str] = field(default_factory=set)
    """The texts it matched at its nearest distance (its reads', its sightings' voted plates): one read
    again within the pass gap is its car wherever in view (`same_text`)."""

    @classmethod
    def from_state(cls, saved: Any) -> Pass:
        """A pass as `to_state` saved it, or as saved before, a list: [first, last, touched], then the nearest
        match's distance, then the newest read's [capture time, x, y, width], each when kept."""
        if isinstance(saved, dict):
            first_s, last_s, touched_s = (float(v) for v in saved["span"])
            return cls(
                first_s, last_s, touched_s, float(saved.get("nearest", 0.0)),
                [[float(v) for v in point] for point in saved.get("points", [])],
                {str(k): float(v) for k, v in saved.get("reads", {}).items()},
                {str(track) for track in saved.get("tracks", [])},
                {str(text) for text in saved.get("texts", [])},
            )  # fmt: skip
        values = [float(v) for v in saved]
        kept = cls(values[0], values[1], values[2], values[3] if len(values) > 3 else 0.0)
        if len(values) >= 8:
            kept.points = [values[4:8]]
        return kept

    def to_state(self) -> dict[str, Any]:
        """The pass as a JSON-ready dict."""
        state: dict[str, Any] = {"span": [self.first_s, self.last_s, self.touched_s], "nearest": self.nearest}
        if self.points:
            state["points"] = self.points
        if self.reads:
            state["reads"] = self.reads
        if self.tracks:
            state["tracks"] = sorted(self.tracks)
        if self.texts:
            state["texts"] = sorted(self.texts)
        return state

    def same_text(self, text: str | None, distance: float) -> bool:
        """Whether `text`, matched at `distance`, is a text the pass matched at its nearest distance: the
        same car within the pass gap, wherever in view, for a lookalike's pass as for the listed plate's
        (an identical read is one car). By position alone, a lookalike read identically in two frames, its
        box elsewhere in the second, was alerted on twice, the listed plate once (a review, OUM7311)."""
        return text is not None and distance == self.nearest and text in self.texts

    def matched(self, text: str | None, distance: float) -> None:
        """Note a match of `text` at `distance` in the pass: a nearer one than its nearest is its nearest."""
        if distance < self.nearest:
            self.nearest, self.texts = distance, set()
        if text is not None and distance == self.nearest:
            self.texts.add(text)

    def widen(self, first_s: float, last_s: float, now_s: float) -> None:
        """Take [first_s, last_s] into its span; it was met at `now_s`."""
        self.first_s, self.last_s, self.touched_s = min(self.first_s, first_s), max(self.last_s, last_s), now_s

    def note(self, read: Observation) -> None:
        """Keep the read's box (among the newest POINTS_KEPT) and its identity until the tracker groups it."""
        point = [read.captured_at_s, *read.center_xy, read.width_px]
        bisect.insort(self.points, point)
        del self.points[: max(0, len(self.points) - POINTS_KEPT)]
        self.reads[read_key(read)] = read.captured_at_s
        if len(self.reads) > READS_KEPT:
            del self.reads[min(self.reads, key=self.reads.__getitem__)]

    def reaches(self, read: Observation) -> bool:
        """Whether the read's box lies where the pass's car could be at its capture time, by the tracker's
        allowance: moving on from the pass's read before it as the reads before that moved, or back from its
        read after it as the reads after that moved (a read logged late). A straight distance from the
        newest read took a fast car's misread (150 px a frame, a plate 90 px wide), or a misread logged after
        the later frames, for another car, and alerted on it again (a review). False when the pass kept no
        box (saved before they were kept, or begun by a sighting): held open anywhere, it took the first
        lookalike's box as its own, and a listed car's next pass went silent — an extra alert is the safer
        failure."""
        if not self.points:
            return False
        later = bisect.bisect_right([point[0] for point in self.points], read.captured_at_s)
        shifts = []
        if later > 0:
            shifts.append(self._shift(read, later - 1, later - 2))
        if later < len(self.points):
            shifts.append(self._shift(read, later, later + 1))
        return min(shifts) <= 1.0

    def _shift(self, read: Observation, at: int, other: int) -> float:
        """`position_shift` of the read from the car of the pass's point `at`, moving as it moved from (or
        to) its point `other` (standing, when there is none)."""
        at_s, x, y, width_px = self.points[at]
        velocity_x = velocity_y = 0.0
        if 0 <= other < len(self.points) and self.points[other][0] != at_s:
            other_s, other_x, other_y, _ = self.points[other]
            velocity_x, velocity_y = (x - other_x) / (at_s - other_s), (y - other_y) / (at_s - other_s)
        dt_s = read.captured_at_s - at_s
        predicted = (x + velocity_x * dt_s, y + velocity_y * dt_s)
        return position_shift(read.center_xy, (x, y), predicted, max(width_px, read.width_px, 1.0), dt_s)


Passes = dict[str, list[Pass]]
"""Per listed plate alerted on (`list:plate`), the passes alerted on."""


def load_passes(saved: dict[str, Any]) -> Passes:
    """The passes as `passes_state` saved them (or as saved before, each a list)."""
    return {key: [Pass.from_state(span) for span in spans] for key, spans in saved.items()}


def passes_state(alerted: Passes) -> dict[str, Any]:
    """The passes as JSON-ready dicts."""
    return {key: [span.to_state() for span in spans] for key, spans in alerted.items()}


def prune(alerted: Passes, before_s: float, untouched_since_s: float) -> Passes:
    """The passes a read may still meet: ending at or after `before_s` (capture time), met by a read since
    `untouched_since_s` (the reads matched again each round: EARLY_RESCAN_S), or whose car's track is still
    open (`forget_grouped` let go of the others): a late track held open across rounds
    (sighting_worker/late_tracks.py) takes its car's late reads however far behind the cursor they lie."""
    kept = {
        key: [span for span in spans if span.last_s >= before_s or span.touched_s >= untouched_since_s or span.tracks]
        for key, spans in alerted.items()
    }
    return {key: spans for key, spans in kept.items() if spans}


def link_tracks(alerted: Passes, reads: Sequence[Observation], went_to: Iterable[str]) -> None:
    """The tracker grouped `reads` into the tracks `went_to` (by the id their sighting will have): each
    track holding a read of a pass is that pass's car from now on, and the read is let go."""
    waiting: dict[str, list[Pass]] = {}
    for spans in alerted.values():
        for span in spans:
            for key in span.reads:
                waiting.setdefault(key, []).append(span)
    if not waiting:
        return
    for read, sighting_id in zip(reads, went_to, strict=True):
        for span in waiting.get(read_key(read), []):
            span.reads.pop(read_key(read), None)
            span.tracks.add(sighting_id)


def forget_grouped(alerted: Passes, grouped_until_s: float, open_tracks: set[str]) -> None:
    """Let go of the reads captured before `grouped_until_s` (grouped, or never to be) and of the tracks no
    longer open (closed, their sightings matched)."""
    for spans in alerted.values():
        for span in spans:
            span.reads = {key: at_s for key, at_s in span.reads.items() if at_s >= grouped_until_s}
            span.tracks &= open_tracks


def rename_tracks(alerted: Passes, renamed: dict[str, str]) -> None:
    """The tracks whose id changed (old -> new: a read captured before a held late track's first joined it,
    and a track's id is its earliest read's) renamed in the passes that hold them."""
    if not renamed:
        return
    for spans in alerted.values():
        for span in spans:
            span.tracks = {renamed.get(track, track) for track in span.tracks}
