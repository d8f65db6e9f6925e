"""Grouping: `SightingTracker` turns each camera's plate reads, fed in capture order, into sightings
(one per vehicle pass). Per camera it holds the open tracks; each frame's reads are assigned to them
jointly, and a track is closed, and its sighting emitted once, when the camera has been without a read
for it for more than the camera's gap: `gap_s`, or FRAME_GAPS of the camera's own frame intervals when
that is longer (`set_frame_interval`, up to MAX_FRAME_GAP_S).

A read may join an open track when it lies within the camera's gap of the track's time span and either
its text is within `max_text_distance` (`plate_distance`) of the track's voted text, or its box centre
lies within `width * min(MAX_SHIFT_WIDTHS, CENTER_SHIFT_FLOOR_WIDTHS + max_center_shift * |dt|)` of the
centre the track's motion predicts (`width`: the track's newest box width, `dt`: seconds since the
track's newest read), or within `width * CENTER_SHIFT_FLOOR_WIDTHS` of the way from the newest read's
centre to it (a car that braked while unseen stopped short of the prediction, on its way)
— unless the read and the track's best read are both DISTINCT_PLATES_CONFIDENCE sure and their texts
lie further apart than `max_text_distance`: two sure reads of different plates are two vehicles, even
where one takes the other's place (a barrier, a toll booth, a parking gate). Nor may any read join a
sure track by text alone, beyond its box's reach, unless it reads the same: KPX4722 appearing at the
far side as KPX4721 leaves is a fleet's next car, not a jump of the first — also when its first read
there is unsure (far, small, KPX472): only sure reads were held to this, and that first read joined
the leaving car's track, moved it to the far side, and the next car's sure reads continued it there
(two cars, one sighting).
The cost of a pair is the centre's distance in units of that allowance plus the text distance over
`max_text_distance` (UNKNOWN_TEXT_COST when either text is empty); the reads of one frame are assigned
greedily by increasing cost, at most one read per track, so two plates side by side in one frame never
share a track, and a plate goes to the track whose box it continues. A read no track takes starts one.

Reads arriving late (older than the camera's newest read) are accepted: such a read joins a matching
open track (its first read, best read and counts change, its motion does not) or starts its own track,
which is closed at once when it is already more than the camera's gap older than its newest read. A
read whose track was emitted already can no longer join it: it makes a sighting of its own.

A closed track's sighting votes its plate (sighting_worker/voting.py); a plate one of its reads says
exactly at the trusted-read threshold (`trusted_confidence`, ALPR_OCR_MIN_CONFIDENCE) is contested only by
its reads within `max_text_distance` of it: another car's unsure read joined by its box, 1 s later, no
longer makes a listed plate read surely alone unsure.

`to_state()` / `SightingTracker.from_state` carry the open tracks across a process restart (JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import defaults
from common.plate_text import character_counts, distance_lower_bound, plate_distance
from common.types import Observation, Sighting
from sighting_worker.track import Track
from sighting_worker.voting import REACH

MAX_TEXT_DISTANCE = REACH
"""Largest `plate_distance` between a read and a track's voted text for the read to join by text (2), and
from a plate read surely for a read to contest it in the vote (sighting_worker/voting.py)."""

MAX_CENTER_SHIFT = 4.0
"""How far (plate widths per second since the track's newest read) a read's box centre may lie from
the centre the track's motion predicts, on top of CENTER_SHIFT_FLOOR_WIDTHS, to join by position."""

CENTER_SHIFT_FLOOR_WIDTHS = 0.5
"""Distance from the predicted centre (plate widths) always allowed to join by position (box jitter)."""

MAX_SHIFT_WIDTHS = 2.5
"""The most the allowance to join by position grows to (plate widths from the predicted centre). Without
it, a second after a car's last read its track reached 4.5 widths, most of a road: the next car's first,
unsure reads at the far end joined it, and 14 of 180 cars of benchmarks/bench_grouping.py (cars 1.2 s
apart, two in view) were merged into the car before, against 2 with it."""

DISTINCT_PLATES_CONFIDENCE = 0.7
"""A read and a track whose best read are both at least this sure (the calibrated probability that the
text is exactly right) and whose texts lie further apart than `max_text_distance` are different plates:
the read may not join by position. Wrong reads that sure are rare and one or two characters off
(within the distance); a car that pulled up where the last one stood within `gap_s` was merged into
its sighting, and its own was never made. 0.8 until the confidence weighed the plate's size (a small
plate's read is now less sure): with it, at 0.8 benchmarks/bench_grouping.py sampled at 1 frame/s
merged 11 of 296 cars into another (5 before); at 0.7, 5, with every other figure as before. The price:
a read of a plate cut short by three characters or more (383 of 383WJP) at 0.7-0.8 now makes a
sighting of its own; a merge hides a vehicle (and its alert), a split shows one twice."""

FRAME_GAPS = 2.0
"""A camera's gap is at least this many of its frame intervals (`SightingTracker.camera_gap_s`): a track
outlives one frame in which its plate went unread. The gap is one setting for every camera
(ALPR_SIGHTING_GAP_S, 2 s), and any sample rate above 0 is accepted: at a camera sampled more slowly
than one frame a gap (0.4 frames/s: a frame every 2.5 s), a parked car read surely in every frame was a
sighting per frame (24 in a minute, a review), and its pass as many. The interval is the camera's own,
learnt where its frames are (the chain's frames log: common/sighting_log.frame_interval; `alpr run`'s
source), not a setting to keep in step with each camera's sample rate: refusing slow cameras, or
asking for a gap per camera, would leave the next one configured wrong to split its cars. Two
intervals change no camera at 1 frame/s or faster at the default gap (the grouping's measured figures
stand); a slower camera's tracks stay open longer, as its reads lie further apart."""

MAX_FRAME_GAP_S = 600.0
"""The longest a camera's frame interval stretches its gap (ALPR_SIGHTING_GAP_S's own upper bound): a
camera sampled once an hour would hold every track open two hours, its sightings (and its passes' alerts
through the sighting pool's pass gap) that late; slower than a frame in 300 s, each frame is a pass."""

UNKNOWN_TEXT_COST = 0.5
"""Text part of a read-track pair's cost when the read or the track has no text."""

MAX_VOTING_READS = 50
"""Reads with text a track keeps for its vote (the most confident ones)."""

MAX_DISTINCT_TEXTS = 50
"""Distinct texts a track counts (a new text replaces the least read one past this)."""

MAX_OPEN_TRACKS = 200
"""Most open tracks (vehicles in view) a camera keeps; past it the oldest-seen close. A car park shows
a hundred plates at most (a frame holds at most DETECTOR_MAX_PLATES_PER_FRAME); a forged job of
thousands of reads at one time had every read paired with thousands of tracks (4,000 reads took a
round 58 s, past Postgres's idle-transaction limit: that camera never grouped again, and every other
camera's round waited each time). A frame now costs at most 100 x 200 pairs."""

STATE_VERSION = 2
"""Version of the dict `SightingTracker.to_state` writes; `from_state` reads it and READABLE_VERSIONS,
and refuses any other. Version 2 keeps a track's voting reads as [text, confidence] (version 1: whole
observations): a worker of the earlier version fails on it, camera by camera, while the newer
workers group those cameras."""

READABLE_VERSIONS = (1, STATE_VERSION)


def reach_widths(dt_s: float, max_center_shift: float = MAX_CENTER_SHIFT) -> float:
    """How far (plate widths) a car's plate may have moved in `dt_s` seconds, box jitter included: the
    allowance a read joins a track by position within (see the module docstring)."""
    return min(MAX_SHIFT_WIDTHS, CENTER_SHIFT_FLOOR_WIDTHS + max_center_shift * abs(dt_s))


def position_shift(
    center_xy: tuple[float, float],
    newest_xy: tuple[float, float],
    predicted_xy: tuple[float, float],
    width_px: float,
    dt_s: float,
    max_center_shift: float = MAX_CENTER_SHIFT,
) -> float:
    """How far a read's box centre lies from a car, in units of the allowance a read joins by position
    within (1 or less: within reach): from `predicted_xy`, where the car's motion puts it `dt_s` after its
    read at `newest_xy` (a plate `width_px` wide), or from the way there (see the module docstring)."""
    off_prediction = math.dist(center_xy, predicted_xy) / (width_px * reach_widths(dt_s, max_center_shift))
    # or on the way there, as a car that braked while unseen (a barrier, a queue) stopped short of it:
    # within box jitter of that way, never behind the newest read, where the next car comes from
    off_way = _distance_to_segment(center_xy, newest_xy, predicted_xy) / (width_px * CENTER_SHIFT_FLOOR_WIDTHS)
    return min(off_prediction, off_way)


def _distance_to_segment(point: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """How far `point` lies from the segment a-b."""
    (px, py), (ax, ay), (bx, by) = point, a, b
    length_sq = (bx - ax) ** 2 + (by - ay) ** 2
    t = 0.0 if length_sq == 0 else max(0.0, min(1.0, ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / length_sq))
    return math.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay)))


def _sighting_order(sighting: Sighting) -> tuple[float, str]:
    return sighting.first_seen_s, sighting.sighting_id


@dataclass
class _Camera:
    """One camera's open tracks, oldest first, and the capture time of its newest read."""

    newest_s: float
    tracks: list[Track] = field(default_factory=list)


class SightingTracker:
    """Groups plate reads into sightings per camera (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        gap_s: float,
        max_text_distance: float = MAX_TEXT_DISTANCE,
        max_center_shift: float = MAX_CENTER_SHIFT,
        max_voting_reads: int = MAX_VOTING_READS,
        trusted_confidence: float = defaults.OCR_MIN_CONFIDENCE,
    ) -> None:
        if not gap_s > 0:
            raise ValueError(f"gap_s must be > 0, but got {gap_s}")
        if max_text_distance < 0 or max_center_shift < 0:
            raise ValueError(f"distances must be >= 0, but got {max_text_distance}, {max_center_shift}")
        if max_voting_reads < 1:
            raise ValueError(f"max_voting_reads must be >= 1, but got {max_voting_reads}")
        self.gap_s = gap_s
        self.max_text_distance = max_text_distance
        self.max_center_shift = max_center_shift
        self.max_voting_reads = max_voting_reads
        self.trusted_confidence = trusted_confidence
        """A read this sure is a sure sighting alone (ALPR_OCR_MIN_CONFIDENCE): a plate so read is contested
        in its sighting's vote only by reads within `max_text_distance` of it (`Track.to_sighting`)."""
        self._cameras: dict[str, _Camera] = {}
        self._frame_intervals: dict[str, float] = {}

    def set_frame_interval(self, camera_id: str, interval_s: float | None) -> None:
        """The camera's time between frames (None or 0: not known; its gap is then `gap_s`)."""
        if interval_s is not None and interval_s > 0 and math.isfinite(interval_s):
            self._frame_intervals[camera_id] = interval_s
        else:
            self._frame_intervals.pop(camera_id, None)

    def camera_gap_s(self, camera_id: str) -> float:
        """How long the camera may be without a read of a track before it closes (see FRAME_GAPS)."""
        interval_s = self._frame_intervals.get(camera_id, 0.0)
        return max(self.gap_s, min(MAX_FRAME_GAP_S, FRAME_GAPS * interval_s))

    @property
    def open_tracks(self) -> int:
        """Tracks open over all cameras."""
        return sum(len(camera.tracks) for camera in self._cameras.values())

    def earliest_open_s(self) -> float | None:
        """Capture time of the earliest read of any open track (None: no open track)."""
        firsts = [track.first.captured_at_s for camera in self._cameras.values() for track in camera.tracks]
        return min(firsts) if firsts else None

    def open_sighting_ids(self) -> set[str]:
        """The ids of the open tracks (each the id its sighting will have), over all cameras."""
        return {track.sighting_id for camera in self._cameras.values() for track in camera.tracks}

    def open_sightings(
        self, sighting_ids: set[str], matched: Mapping[str, str] | None = None, min_span_s: float = 0.0
    ) -> list[Sighting]:
        """The sightings the open tracks of `sighting_ids` would make if they closed now: their running vote
        (`sighting`), by which the sighting pool matches a car still in view against the watch-lists (a parked
        listed car read under ALPR_WATCH_READ_MIN_CONFIDENCE is alerted on while it stands there, not once it
        has gone). Ids of tracks closed since are passed over, and so are those whose reads span less than
        `min_span_s` (a passing car, judged at its close: not voted each round) and those `matched` already
        with the plate they vote now (the vote's plate is the track's `plate`: only its confidence is not
        voted yet; a hundred cars parked in view, 50 reads each, took 14 ms a round to vote again)."""
        matched = matched or {}
        return sorted(
            (
                self.sighting(track)
                for camera in self._cameras.values()
                for track in camera.tracks
                if track.sighting_id in sighting_ids
                and track.last.captured_at_s - track.first.captured_at_s >= min_span_s
                and matched.get(track.sighting_id) != track.plate
            ),
            key=_sighting_order,
        )

    def best_frame_ids(self) -> set[str]:
        """The frames holding the best read of an open track (whose snapshot a sighting may keep)."""
        return {track.best.frame_id for camera in self._cameras.values() for track in camera.tracks}

    def observe(self, observation: Observation) -> list[Sighting]:
        """Adds one read; returns the sightings of its camera that its time proves closed."""
        return self.observe_frame([observation])

    def observe_frame(self, observations: Sequence[Observation]) -> list[Sighting]:
        """Adds the reads of one frame (one camera, one frame id), assigned jointly; returns the
        sightings of that camera whose newest read is now more than `gap_s` older than the camera's."""
        return self.observe_frame_joined(observations)[0]

    def observe_frame_joined(self, observations: Sequence[Observation]) -> tuple[list[Sighting], list[str]]:
        """`observe_frame`, and the id of the sighting each read went to (its track's), by which
        benchmarks/bench_grouping.py scores the grouping (it looked into the tracker's private state)."""
        if not observations:
            return [], []
        first = observations[0]
        if any((o.camera_id, o.frame_id) != (first.camera_id, first.frame_id) for o in observations):
            raise ValueError(
                f"reads of one frame expected, but got frames {sorted({o.frame_id for o in observations})}"
            )
        camera = self._cameras.setdefault(first.camera_id, _Camera(newest_s=first.captured_at_s))
        camera.newest_s = max(camera.newest_s, first.captured_at_s)
        gap_s = self.camera_gap_s(first.camera_id)
        went_to = [track.sighting_id for track in self.join(observations, camera.tracks, gap_s)]
        crowded = self._close_oldest(camera, len(camera.tracks) - MAX_OPEN_TRACKS)
        return sorted(crowded + self._close(camera, camera.newest_s - gap_s), key=_sighting_order), went_to

    def join(self, observations: Sequence[Observation], tracks: list[Track], gap_s: float) -> list[Track]:
        """The reads of one frame joined to `tracks` (each to one track, by this tracker's rules, at a camera
        whose gap is `gap_s`) or to tracks they start, added to `tracks`: the track each read went to. The
        late reads' grouping (sighting_worker/late_tracks.py) joins its held tracks by it."""
        joined = []
        for observation, track in zip(observations, self._assign(observations, tracks, gap_s), strict=True):
            if track is None:
                track = Track.start(observation, self.max_voting_reads, MAX_DISTINCT_TEXTS)
                tracks.append(track)
            else:
                track.add(observation, self.max_voting_reads, MAX_DISTINCT_TEXTS)
            joined.append(track)
        return joined

    def _close_oldest(self, camera: _Camera, count: int) -> list[Sighting]:
        """Closes the camera's `count` tracks seen longest ago (none when count <= 0); their sightings."""
        if count <= 0:
            return []
        camera.tracks.sort(key=lambda track: track.last.captured_at_s)
        closed, camera.tracks = camera.tracks[:count], camera.tracks[count:]
        return [self.sighting(track) for track in closed]

    def close_due(self, now_s: float) -> list[Sighting]:
        """Closes, on every camera, the tracks whose newest read is more than the camera's gap older than
        `now_s` (the clock of the capture times), and returns their sightings."""
        closed = [
            s
            for camera_id, camera in self._cameras.items()
            for s in self._close(camera, now_s - self.camera_gap_s(camera_id))
        ]
        return sorted(closed, key=_sighting_order)

    def close_all(self) -> list[Sighting]:
        """Closes every open track (the end of a file or stream) and forgets every camera."""
        closed = [self.sighting(track) for camera in self._cameras.values() for track in camera.tracks]
        self._cameras.clear()
        return sorted(closed, key=_sighting_order)

    def _close(self, camera: _Camera, before_s: float) -> list[Sighting]:
        """Removes the camera's tracks whose newest read is older than `before_s`; their sightings."""
        closed = [track for track in camera.tracks if track.last.captured_at_s < before_s]
        camera.tracks = [track for track in camera.tracks if track.last.captured_at_s >= before_s]
        return sorted((self.sighting(track) for track in closed), key=_sighting_order)

    def sighting(self, track: Track) -> Sighting:
        """The sighting of a closed track: its plate voted, one read surely alone contested only within
        `max_text_distance` (`trusted_confidence`)."""
        return track.to_sighting(self.trusted_confidence, self.max_text_distance)

    def _assign(self, observations: Sequence[Observation], tracks: list[Track], gap_s: float) -> list[Track | None]:
        """The open track each read joins (None: it starts one), greedily by increasing pair cost."""
        pairs: list[tuple[float, int, int]] = []
        counts: dict[str, dict[str, int]] = {}  # each text's character counts, once per frame
        for read_index, observation in enumerate(observations):
            for track_index, track in enumerate(tracks):
                cost = self._match_cost(observation, track, gap_s, counts)
                if cost is not None:
                    pairs.append((cost, read_index, track_index))
        assigned: list[Track | None] = [None] * len(observations)
        taken: set[int] = set()
        for _, read_index, track_index in sorted(pairs):
            if assigned[read_index] is None and track_index not in taken:
                assigned[read_index] = tracks[track_index]
                taken.add(track_index)
        return assigned

    def _match_cost(
        self, observation: Observation, track: Track, gap_s: float, counts: dict[str, dict[str, int]] | None = None
    ) -> float | None:
        """The cost of the read joining the track, or None when it may not (see the module docstring).
        `counts` caches texts' character counts: a read far from the track whose text cannot be near
        its plate is refused without the edit distance (a hundred plates in view: 3.6 times faster).
        `gap_s`: the camera's gap (`camera_gap_s`)."""
        if track.time_gap_s(observation.captured_at_s) > gap_s:
            return None
        shift = position_shift(
            observation.center_xy,
            track.last.center_xy,
            track.predicted_center_xy(observation.captured_at_s),
            max(track.last.width_px, 1.0),
            observation.captured_at_s - track.last.captured_at_s,
            self.max_center_shift,
        )
        if shift > 1.0 and observation.text and track.plate and counts is not None:
            for text in (observation.text, track.plate):
                if text not in counts:
                    counts[text] = character_counts(text)
            if distance_lower_bound(counts[observation.text], counts[track.plate]) > self.max_text_distance:
                return None  # too far to join by position, and its text too far to join by text
        text_matches = False
        text_cost = UNKNOWN_TEXT_COST
        if observation.text and track.plate:
            distance = plate_distance(observation.text, track.plate)
            text_matches = distance <= self.max_text_distance
            text_cost = distance / max(self.max_text_distance, 1.0)
            sure_track = track.best.confidence >= DISTINCT_PLATES_CONFIDENCE
            if sure_track and observation.confidence >= DISTINCT_PLATES_CONFIDENCE and not text_matches:
                return None  # sure reads of different plates: two vehicles
            if sure_track and distance > 0 and shift > 1.0:
                return None  # beyond a sure track's reach, another text: another vehicle, however unsure
        if not text_matches and shift > 1.0:
            return None
        return shift + text_cost

    def to_state(self) -> dict[str, Any]:
        """The open tracks and each camera's newest read time, as a JSON-ready dict."""
        return {
            "version": STATE_VERSION,
            "cameras": {
                camera_id: {"newest_s": camera.newest_s, "tracks": [track.to_state() for track in camera.tracks]}
                for camera_id, camera in self._cameras.items()
            },
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        gap_s: float,
        max_text_distance: float = MAX_TEXT_DISTANCE,
        max_center_shift: float = MAX_CENTER_SHIFT,
        max_voting_reads: int = MAX_VOTING_READS,
        trusted_confidence: float = defaults.OCR_MIN_CONFIDENCE,
    ) -> SightingTracker:
        """A tracker that goes on where the one that wrote `state` (`to_state`) stood."""
        if state.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"tracker state version {READABLE_VERSIONS} expected, but got {state.get('version')!r}")
        tracker = cls(gap_s, max_text_distance, max_center_shift, max_voting_reads, trusted_confidence)
        for camera_id, camera in state["cameras"].items():
            tracks = [Track.from_state(track) for track in camera["tracks"]]
            tracker._cameras[str(camera_id)] = _Camera(newest_s=float(camera["newest_s"]), tracks=tracks)
        return tracker
