"""The sighting pool's pure core, one import point (no Redis, no Postgres, no I/O): the types
(`Observation`, `Sighting`, common/types.py), the grouping of reads into sightings (`SightingTracker`,
grouping.py, with its open `Track`s, track.py), the plate vote (`vote`, voting.py) and which closed
tracks are vehicle passes worth logging (`is_vehicle_pass`)."""

from __future__ import annotations

from common.types import Observation, Sighting
from sighting_worker.grouping import SightingTracker
from sighting_worker.voting import vote

__all__ = ["PASS_MIN_CONFIDENCE", "Observation", "Sighting", "SightingTracker", "is_vehicle_pass", "vote"]


PASS_MIN_CONFIDENCE = 0.2
"""A track of several reads whose vote is less sure than this is a vehicle pass only when one of its texts
was read twice or more. Stickers, signs and text on a car read in passing agree on nothing: SW, SK3, T2W
and 9N at 0.08-0.13 were a sighting of their own, and so were T and F (benchmarks/bench_grouping.py)."""


def is_vehicle_pass(sighting: Sighting, min_confidence: float) -> bool:
    """A closed track worth a sighting: read surely once, or seen in two reads or more that either vote
    for a plate at PASS_MIN_CONFIDENCE at least or agree on a text. A single unsure read (a far plate
    glimpsed, a sign, a fragment of a pass the tracker lost) is no vehicle pass, nor are reads of signs
    and stickers that agree on nothing; their reads stay in the plate log."""
    if sighting.confidence >= min_confidence:
        return True
    agreeing = max((count for _, count in sighting.texts), default=0) >= 2
    return sighting.reads >= 2 and (sighting.confidence >= PASS_MIN_CONFIDENCE or agreeing)
