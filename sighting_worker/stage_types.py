"""The sighting stage's plain types, shared by its modules: what it is tuned by (`SightingSettings`, from
Settings in alpr/wiring.py) and what one camera's round did (`GroupResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from common import defaults
from common.alerts import Alert
from common.types import Sighting


@dataclass(frozen=True)
class SightingSettings:
    """What the sighting pool is tuned by (from Settings, in alpr/wiring.py)."""

    gap_s: float
    settle_s: float
    read_min_confidence: float
    sighting_min_confidence: float
    max_distance: float
    history_s: float
    """How far back a camera's reads are grouped when the pool first meets it (the frames' lifetime)."""
    alert_repeat_s: float = 0.0
    """Reads of a listed plate closer in time than this (or the gap) are one pass: one alert."""
    fuzzy_min_probability: float = defaults.WATCH_FUZZY_MIN_PROBABILITY
    """A fuzzy match alerts only where the recogniser gave the listed text this probability at least
    (sighting_worker/match_evidence.py)."""

    def pass_gap_s(self, gap_s: float) -> float:
        """The longest time without a read of a listed plate within one pass alerted on, at a camera whose
        sighting gap is `gap_s` (the setting, or longer at a camera sampled slowly: `camera_gap_s`)."""
        return max(gap_s, self.alert_repeat_s)


@dataclass
class GroupResult:
    """What one camera's transaction did."""

    sightings: list[Sighting] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    late: dict[str, float] = field(default_factory=dict)
    """The late sightings among `sightings` (sighting_worker/late_reads.py, `group_late`), each with when its
    newest read was logged."""
    late_reads: int = 0
    """Reads taken that were captured behind the camera's cursor (logged late)."""
    late_by_s: float = 0.0
    """The longest any of them was logged after its capture."""
