"""Reads logged late: captured behind their camera's cursor (a spool replayed after an outage), so that the
grouping, forward in capture time, never reads them. They are grouped apart into late sightings
(`group_late`; their tracks held open across rounds, sighting_worker/late_tracks.py, and closed by
`close_late`), and a match among them is looked up among the alerts the camera raised already, for the
passes its cursor may have let go of (`RaisedBefore`, used by sighting_worker/matching.py). Which reads
are late the early scan tells (sighting_worker/early_scan.py, `EarlyScan.late`); the stage counts them
(`SightingStage.count_late`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from common.sighting_log import SIGHTED_REACH_S, LoggedRead, sighted_reads
from common.types import Sighting
from sighting_worker.core import SightingTracker, is_vehicle_pass
from sighting_worker.grouping import MAX_TEXT_DISTANCE
from sighting_worker.late_tracks import HeldLate
from sighting_worker.passes import Passes, rename_tracks
from sighting_worker.stage_types import GroupResult, SightingSettings


@dataclass(frozen=True)
class RaisedBefore:
    """Where a camera's round finds the passes its cursor may have let go of: a pass alerted on is pruned
    once its reads lie well behind the cursor and no read met it for EARLY_RESCAN_S (passes.prune), so a
    read of it logged later still (a spool replayed after an outage, in batches) found none and raised a
    second alert (a fault review: two webhooks an hour late for one pass). A match captured before
    `behind_s`, the camera's cursor as the round found it, that no pass in the cursor holds is looked up
    among the camera's alerts (`PassHolding.raised_passes`, sighting_worker/pass_holding.py), as far as the
    pass's logged sightings reach (`pass_span`)."""

    connection: psycopg.Connection
    camera_id: str
    behind_s: float

    def pass_span(self, plate: str, first_s: float, last_s: float, within_s: float) -> tuple[float, float]:
        """[first_s, last_s] widened by the camera's logged sightings voted `plate` within `within_s` of it,
        and of those in turn (looked for as far as SIGHTED_REACH_S beyond it): the span of a pass of the
        listed plate, no gap in it longer than the pass gap `within_s`. An alert was looked for within the
        pass gap of the read alone: a parked listed car's late reads, further from the alert than that, raised
        it again (a review), though each lay within a second of the one before."""
        rows = self.connection.execute(
            "SELECT extract(epoch FROM first_seen)::float8, extract(epoch FROM last_seen)::float8 FROM sightings"
            " WHERE camera_id = %s AND plate = %s AND first_seen <= to_timestamp(%s) AND last_seen >= to_timestamp(%s)"
            " ORDER BY first_seen",
            (self.camera_id, plate, last_s + SIGHTED_REACH_S, first_s - SIGHTED_REACH_S),
        ).fetchall()
        spans = [(float(first), float(last)) for first, last in rows]
        widened = True
        while widened:
            widened = False
            for first, last in spans:
                if first - within_s <= last_s and first_s <= last + within_s and (first < first_s or last > last_s):
                    first_s, last_s, widened = min(first_s, first), max(last_s, last), True
        return first_s, last_s


def group_late(
    connection: psycopg.Connection,
    camera_id: str,
    late: list[LoggedRead],
    held: HeldLate,
    alerted: Passes,
    result: GroupResult,
    settings: SightingSettings,
    frame_interval: Callable[[psycopg.Connection, str], float | None],
    keep_alive: Callable[[psycopg.Connection], None],
    now_s: float,
) -> dict[int, str]:
    """The reads taken this round that were captured behind the cursor, which the grouping, forward in
    capture time, never reads again (a spool replayed after an outage: its cars were in no sighting, `alpr
    search` and the sightings export did not find them, a fault review), joined in capture order to the
    camera's late tracks held open (`held`, sighting_worker/late_tracks.py): their sightings are logged once
    no late read has joined them for LATE_SIGHTING_HOLD_S (`close_late`), so a pass whose reads come over
    several rounds is one late sighting. A read a logged sighting holds already is left out
    (`sighted_reads`). The track each read went to (read id -> its sighting's id), by which a pass alerted on
    holds the reads of its car's track (`PassHolding.seen_in_pass`); the passes' tracks renamed where a
    held track's id changed. Counted in `result` (late_reads, late_by_s). `frame_interval` and
    `keep_alive`: the stage's (`SightingStage.camera_frame_interval`, `SightingStage.keep_alive`)."""
    if not late:
        return {}
    result.late_reads = len(late)
    result.late_by_s = max(read.logged_at_s - read.observation.captured_at_s for read in late)
    sighted = sighted_reads(connection, camera_id, late)
    reads = sorted(
        (read for read in late if read.read_id not in sighted),
        key=lambda r: (r.observation.captured_at_s, r.observation.frame_id, r.observation.plate_index),
    )
    tracker = SightingTracker(settings.gap_s, trusted_confidence=settings.sighting_min_confidence)
    tracker.set_frame_interval(camera_id, frame_interval(connection, camera_id))
    went, renamed = held.group(reads, tracker, tracker.camera_gap_s(camera_id), now_s, lambda: keep_alive(connection))
    rename_tracks(alerted, renamed)
    return went


def close_late(held: HeldLate, result: GroupResult, settings: SightingSettings, now_s: float) -> list[Sighting]:
    """The vehicle passes among the late tracks closed by `now_s` (`HeldLate.close_due`): late sightings (in
    `result.late`, with when their newest read was logged)."""
    sightings = []
    for closed in held.close_due(now_s):
        sighting = closed.track.to_sighting(settings.sighting_min_confidence, MAX_TEXT_DISTANCE)
        if is_vehicle_pass(sighting, settings.sighting_min_confidence):
            sightings.append(sighting)
            result.late[sighting.sighting_id] = closed.logged_at_s
    return sightings
