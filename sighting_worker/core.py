"""The sighting pool's pure core, one import point (no Redis, no Postgres, no I/O): the types
(`Observation`, `Sighting`, types.py), the grouping of reads into sightings (`SightingTracker`,
grouping.py, with its open `Track`s, track.py) and the plate vote (`vote`, voting.py)."""

from __future__ import annotations

from common.types import Observation, Sighting
from sighting_worker.grouping import SightingTracker
from sighting_worker.voting import vote

__all__ = ["Observation", "Sighting", "SightingTracker", "vote"]
