"""The sighting pool's pure core, one import point (no Redis, no Postgres, no I/O): the types
(`Observation`, `Sighting`, common/types.py), the grouping of reads into sightings (`SightingTracker`,
grouping.py, with its open `Track`s, track.py), the plate vote (`vote`, voting.py) and which closed
tracks are vehicle passes worth logging (`is_vehicle_pass`)."""

from __future__ import annotations

from common.plate_text import plate_distance
from common.types import Observation, Sighting
from sighting_worker.grouping import SightingTracker
from sighting_worker.voting import vote

__all__ = ["NEAR_SHARE", "PASS_MIN_CONFIDENCE", "Observation", "Sighting", "SightingTracker", "is_vehicle_pass", "vote"]


PASS_MIN_CONFIDENCE = 0.2
"""A track of several reads whose vote is less sure than this is a vehicle pass only when two of its reads
lie near the voted plate (NEAR_SHARE). Stickers, signs and text on a car read in passing agree on nothing:
SW, SK3, T2W and 9N at 0.08-0.13 were a sighting of their own, and so were T and F
(benchmarks/bench_grouping.py)."""

NEAR_SHARE = 0.25
"""A read lies near the voted plate within this share of its length (`plate_distance`, a look-alike
counting half): one character of a plate of 4 to 7. A hard plate read unsurely and never quite alike
twice (KPX4Z21, KPX472I, HPX4721, KPX4721 at 0.10-0.14) is still a car that `alpr search` must find."""


def is_vehicle_pass(sighting: Sighting, min_confidence: float) -> bool:
    """A closed track worth a sighting: read surely once, or seen in two reads or more that either vote
    for a plate at PASS_MIN_CONFIDENCE at least or of which two lie near the voted plate. A single unsure
    read (a far plate glimpsed, a sign, a fragment of a pass the tracker lost) is no vehicle pass, nor are
    reads of signs and stickers that agree on nothing; their reads stay in the plate log."""
    if sighting.confidence >= min_confidence:
        return True
    reach = NEAR_SHARE * len(sighting.plate)
    near = sum(count for text, count in sighting.texts if plate_distance(text, sighting.plate) <= reach)
    return sighting.reads >= 2 and (sighting.confidence >= PASS_MIN_CONFIDENCE or near >= 2)
