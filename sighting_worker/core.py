"""The sighting pool's pure core, one import point (no Redis, no Postgres, no I/O): the types
(`Observation`, `Sighting`, common/types.py), the grouping of reads into sightings (`SightingTracker`,
grouping.py, with its open `Track`s, track.py), the plate vote (`vote`, voting.py) and which closed
tracks are vehicle passes worth logging (`is_vehicle_pass`)."""

from __future__ import annotations

from common.types import Observation, Sighting
from sighting_worker.grouping import SightingTracker
from sighting_worker.voting import vote

__all__ = ["Observation", "Sighting", "SightingTracker", "is_vehicle_pass", "vote"]


def is_vehicle_pass(sighting: Sighting, min_confidence: float) -> bool:
    """A closed track worth a sighting: seen in two reads or more, or read surely once. A single unsure
    read (a far plate glimpsed, a sign, a fragment of a pass the tracker lost) is no vehicle pass; its
    read stays in the plate log."""
    return sighting.reads >= 2 or sighting.confidence >= min_confidence
