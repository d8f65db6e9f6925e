"""Cars one after another where the last stood (a barrier, a queue), their plates one or two edits apart:
a sighting each (boxes and confidences as `alpr run` read real photos in a review); and one car whose
reads hold a single sure misread one edit off: still one sighting."""

import json
from dataclasses import replace

import pytest

from common import defaults
from common.sighting_log import LoggedRead
from common.types import BoxXYXY, Observation
from sighting_worker.core import SightingTracker
from sighting_worker.late_tracks import HeldLate


def stop(plate: str, start_s: float, frames: int, box: BoxXYXY, confidence: float = 0.99) -> list[Observation]:
    """A car standing still: a read of `plate` every 0.2 s."""
    return [
        Observation("gate", f"{plate}-{start_s}-{i}", 0, start_s + 0.2 * i, box, plate, confidence)
        for i in range(frames)
    ]


def group(reads: list[Observation]) -> list[tuple[str, int, float]]:
    tracker = SightingTracker(2.0, trusted_confidence=0.85)
    tracker.set_frame_interval("gate", 0.2)
    closed = []
    for read in reads:
        closed += tracker.observe_frame([read])
    closed += tracker.close_all()
    return sorted((s.plate, s.reads, s.confidence) for s in closed)


@pytest.mark.parametrize("first, second", [("RK959AF", "RK959AD"), ("RK755AJ", "RK735AS"), ("RK828AG", "RK878AC")])
def test_cars_one_after_another_at_a_gate_are_two_sightings(first: str, second: str) -> None:
    reads = stop(first, 0.0, 15, (258, 190, 690, 340)) + stop(second, 4.0, 15, (276, 200, 675, 331))
    sightings = group(reads)
    assert [(plate, count) for plate, count, _ in sightings] == sorted([(first, 15), (second, 15)])
    assert all(confidence > 0.9 for _, _, confidence in sightings)


@pytest.mark.parametrize("at", [3, 14])
def test_one_sure_misread_one_edit_off_is_no_second_car(at: int) -> None:
    """A truncated read at 0.992 in the middle or at the end of a car's pass folds back into its sighting."""
    reads = stop("RK248AH", 0.0, 15, (258, 190, 690, 340))
    reads[at] = replace(reads[at], text="RK248A", confidence=0.992)
    sightings = group(reads)
    assert [(plate, count) for plate, count, _ in sightings] == [("RK248AH", 15)]


def test_a_moving_car_with_one_sure_misread_is_one_sighting() -> None:
    """The car drives on after its misread: the split track's stale box does not take its next reads."""
    reads = [
        Observation("road", f"f{i}", 0, 0.2 * i, (100 + 30 * i, 300, 220 + 30 * i, 340), "KPX4722", 0.95)
        for i in range(12)
    ]
    reads[5] = replace(reads[5], text="KPX472", confidence=0.95)
    tracker = SightingTracker(2.0)
    closed = [s for read in reads for s in tracker.observe_frame([read])] + tracker.close_all()
    assert [(s.plate, s.reads) for s in closed] == [("KPX4722", 12)]


def test_a_split_track_folds_back_after_a_restart() -> None:
    """The track a misread split off is carried across a restart with the track it folds back into."""
    reads = stop("RK248AH", 0.0, 15, (258, 190, 690, 340))
    reads[14] = replace(reads[14], text="RK248A", confidence=0.992)
    tracker = SightingTracker(2.0, trusted_confidence=0.85)
    closed = [s for read in reads for s in tracker.observe_frame([read])]
    restarted = SightingTracker.from_state(json.loads(json.dumps(tracker.to_state())), 2.0, trusted_confidence=0.85)
    closed += restarted.close_due(10.0) + restarted.close_all()
    assert [(s.plate, s.reads) for s in closed] == [("RK248AH", 15)]


def close_late(reads: list[Observation]) -> list[tuple[str, int]]:
    """The late sightings the reads make, logged late in one round (sighting_worker/late_tracks.py)."""
    held = HeldLate()
    logged = [LoggedRead(i, read, 1000.0) for i, read in enumerate(reads)]
    held.group(logged, SightingTracker(2.0, trusted_confidence=0.85), 2.0, 1000.0, lambda: None)
    closed = held.close_due(1001.0 + defaults.LATE_SIGHTING_HOLD_S)
    assert not held.held
    return sorted((late.track.to_sighting(0.85).plate, late.track.reads) for late in closed)


def test_late_reads_of_cars_at_a_gate_and_of_a_misread_group_as_live_ones() -> None:
    queue = stop("RK959AF", 0.0, 15, (258, 190, 690, 340)) + stop("RK959AD", 4.0, 15, (276, 200, 675, 331))
    assert close_late(queue) == [("RK959AD", 15), ("RK959AF", 15)]
    misread = stop("RK248AH", 0.0, 15, (258, 190, 690, 340))
    misread[7] = replace(misread[7], text="RK248A", confidence=0.992)
    assert close_late(misread) == [("RK248AH", 15)]
