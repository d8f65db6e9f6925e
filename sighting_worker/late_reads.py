"""Reads logged late: captured behind their camera's cursor (a spool replayed after an outage), so that the
grouping, forward in capture time, never reads them. They are grouped apart into late sightings
(`group_late`), and a match among them is looked up among the alerts the camera raised already, for the
passes its cursor may have let go of (`RaisedBefore`, used by sighting_worker/matching.py). Which reads
are late the early scan tells (sighting_worker/early_scan.py, `EarlyScan.late`); the stage counts them
(`SightingStage.count_late`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

import psycopg

from common.sighting_log import LoggedRead, sighted_reads
from common.types import Observation, Sighting
from sighting_worker.core import SightingTracker, is_vehicle_pass
from sighting_worker.passes import Passes, link_tracks
from sighting_worker.stage_types import GroupResult, SightingSettings


@dataclass(frozen=True)
class RaisedBefore:
    """Where a camera's round finds the passes its cursor may have let go of: a pass alerted on is pruned
    once its reads lie well behind the cursor and no read met it for EARLY_RESCAN_S (passes.prune), so a
    read of it logged later still (a spool replayed after an outage, in batches) found none and raised a
    second alert (a fault review: two webhooks an hour late for one pass). A match captured before
    `behind_s`, the camera's cursor as the round found it, that no pass in the cursor holds is looked up
    among the camera's alerts (`WatchMatcher.raised_passes`, sighting_worker/matching.py)."""

    connection: psycopg.Connection
    camera_id: str
    behind_s: float


def group_late(
    connection: psycopg.Connection,
    camera_id: str,
    late: list[LoggedRead],
    alerted: Passes,
    result: GroupResult,
    settings: SightingSettings,
    frame_interval: Callable[[psycopg.Connection, str], float | None],
    keep_alive: Callable[[psycopg.Connection], None],
) -> list[Sighting]:
    """The vehicle passes among the reads taken this round that were captured behind the cursor, which
    the grouping, forward in capture time, never reads again (a spool replayed after an outage: its
    cars were in no sighting, `alpr search` and the sightings export did not find them, a fault review).
    They are grouped apart, in capture order, by a tracker of their own that closes every track at the
    round's end: late sightings (in `result.late`, with when their newest read was logged). A read a
    logged sighting holds already is left out (`sighted_reads`). A pass whose reads come over several
    rounds is a sighting per round's share (the tracker goes forward in capture time, and a late read of
    a sighting closed already cannot join it): a car seen twice rather than not at all. Counted in
    `result` (late_reads, late_by_s). `frame_interval` and `keep_alive`: the stage's
    (`SightingStage.camera_frame_interval`, `SightingStage.keep_alive`)."""
    if not late:
        return []
    result.late_reads = len(late)
    result.late_by_s = max(read.logged_at_s - read.observation.captured_at_s for read in late)
    sighted = sighted_reads(connection, camera_id, late)
    reads = sorted(
        (read for read in late if read.read_id not in sighted),
        key=lambda r: (r.observation.captured_at_s, r.observation.frame_id, r.observation.plate_index),
    )
    tracker = SightingTracker(settings.gap_s)
    tracker.set_frame_interval(camera_id, frame_interval(connection, camera_id))
    closed: list[Sighting] = []
    fed: list[Observation] = []
    went_to: list[str] = []
    logged_at_s: dict[str, float] = {}
    for _, frame in groupby(reads, key=lambda r: r.observation.frame_id):
        keep_alive(connection)
        frame_reads = list(frame)
        closed_now, joined = tracker.observe_frame_joined([r.observation for r in frame_reads])
        closed += closed_now
        fed += [r.observation for r in frame_reads]
        went_to += joined
        for read, sighting_id in zip(frame_reads, joined, strict=True):
            logged_at_s[sighting_id] = max(logged_at_s.get(sighting_id, 0.0), read.logged_at_s)
    link_tracks(alerted, fed, went_to)
    closed += tracker.close_all()
    sightings = [s for s in closed if is_vehicle_pass(s, settings.sighting_min_confidence)]
    result.late.update((s.sighting_id, logged_at_s[s.sighting_id]) for s in sightings)
    return sightings
