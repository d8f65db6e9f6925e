"""Split tracks: when a sure read is another car's where an established plate stood (`another_car`: the
next car at a barrier or in a queue, its plate one or two edits from the last one's), and how a track so
split off folds back into the one it split off (`fold`) when no second sure read confirms it: a car's one
sure misread (RK248A for RK248AH) is no second car. The grouping (sighting_worker/grouping.py) and the
late reads' held tracks (sighting_worker/late_tracks.py) close their tracks through `fold`."""

from __future__ import annotations

from collections.abc import Sequence

from common.types import Observation
from sighting_worker.track import Track

ESTABLISHED_SURE_READS = 3
"""Sure reads of exactly its voted text a track holds before a sure read a full edit or more from that
text, of a text the track holds no read of, is another car's: two sure reads could be a car and its own
misread. A look-alike swap (half an edit: 0/O, 8/B) is the reader's, never another car's here."""

CONFIRMING_SURE_READS = 2
"""Sure reads of its plate a split-off track needs by its close to be a car of its own; with fewer it
folds back into the track it split off."""


def another_car(observation: Observation, track: Track, distance: float, sure_confidence: float) -> bool:
    """Whether a read `distance` (`plate_distance`) from the track's plate is another car's, not a misread
    of the track's car: both sure (`sure_confidence`), a full edit or more apart, the plate read surely
    ESTABLISHED_SURE_READS times, and the read's text never."""
    return (
        observation.confidence >= sure_confidence
        and distance >= 1.0
        and bool(observation.text)
        and observation.text not in track.text_counts
        and track.sure_reads(track.plate, sure_confidence) >= ESTABLISHED_SURE_READS
    )


def unconfirmed(track: Track, sure_confidence: float) -> bool:
    """Whether the track split off another and has too few sure reads to be a car of its own (yet)."""
    return bool(track.split_from) and track.sure_reads(track.plate, sure_confidence) < CONFIRMING_SURE_READS


def awaited(open_tracks: Sequence[Track], sure_confidence: float) -> set[str]:
    """The ids of the tracks an open unconfirmed split track may still fold into: held open till it closes."""
    return {track.split_from for track in open_tracks if unconfirmed(track, sure_confidence)}


def fold(
    closing: Sequence[Track], still_open: Sequence[Track], sure_confidence: float, max_kept: int, max_texts: int
) -> list[Track]:
    """The `closing` tracks that make sightings: each unconfirmed one first folded into the track it split
    off (`Track.absorb`) where that is closing too or still open; where it is gone (closed before), the
    split track is a sighting of its own."""
    by_id = {track.sighting_id: track for track in [*still_open, *closing]}
    folded: set[int] = set()
    for track in sorted(closing, key=lambda t: t.first.captured_at_s, reverse=True):
        parent = by_id.get(track.split_from) if unconfirmed(track, sure_confidence) else None
        if parent is not None and parent is not track and id(parent) not in folded:
            parent.absorb(track, max_kept, max_texts)
            folded.add(id(track))
    return [track for track in closing if id(track) not in folded]
