"""The watch-list matching of a camera's round (`WatchMatcher`): its new confident reads matched at once
(early alerts), its open tracks that have dwelt in view matched exactly by their running vote (a listed car
parked or queued alerted on while it stands there) and its closed sightings matched by their voted plate, each
pass of a listed plate alerted on once (the passes alerted on: sighting_worker/passes.py; which pass holds a
match: sighting_worker/pass_holding.py), and the alerts made (sighting_worker/watch_alerts.py; their ids:
sighting_worker/alert_ids.py). It goes by Postgres's clock and keeps the camera's transaction alive through
the stage that holds it (`SightingStage.postgres_now`, `SightingStage.keep_alive`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import psycopg
from rq import Queue

from common import defaults
from common.alerts import PLATE_PATTERN, Alert
from common.sighting_log import LoggedRead, early_reads
from common.types import Sighting
from common.watchlist_cache import WatchListCache
from common.watchlist_entry import WatchEntry
from sighting_worker.alert_ids import alert_id
from sighting_worker.core import is_vehicle_pass
from sighting_worker.early_scan import EarlyScan
from sighting_worker.late_reads import RaisedBefore
from sighting_worker.match_evidence import read_evidence, sighting_evidence
from sighting_worker.pass_holding import PassHolding
from sighting_worker.passes import Passes
from sighting_worker.stage_types import SightingSettings
from sighting_worker.watch_alerts import alert_id_key, key_parts, make_alert, watch_key


class WatchMatcher:
    """The watch-list matching of the sighting stage (one per stage, `SightingStage.matcher`)."""

    def __init__(
        self,
        watch: WatchListCache | None,
        settings: SightingSettings,
        alert_queue: Queue,
        postgres_now: Callable[[], float],
        keep_alive: Callable[[psycopg.Connection], None],
    ) -> None:
        self.watch, self.settings, self.alert_queue = watch, settings, alert_queue
        self.postgres_now = postgres_now
        """Now by Postgres's clock (`SightingStage.postgres_now`)."""
        self.keep_alive = keep_alive
        """A statement in the camera's transaction when it is due (`SightingStage.keep_alive`)."""
        self.open_matched: dict[str, tuple[tuple[WatchEntry, ...], dict[str, str]]] = {}
        """Per camera, its open tracks matched in committed rounds (track id -> the voted plate matched) and
        the entries they were matched against (`match_open`, `opened`)."""
        self.open_matching: dict[str, tuple[tuple[WatchEntry, ...], dict[str, str]]] = {}
        """Per camera, those its round in progress matched: kept once it commits (`opened`)."""
        self.passes = PassHolding(settings, alert_queue, postgres_now)
        """Which pass alerted on holds a match (sighting_worker/pass_holding.py)."""

    def take_reads(
        self, connection: psycopg.Connection, camera_id: str, early: EarlyScan, raised: RaisedBefore | None = None
    ) -> tuple[list[LoggedRead], set[int]]:
        """The camera's reads the early scan takes this round (in log order), and the ids of those logged
        late: captured behind the cursor as the round found it (`raised.behind_s`), grouped apart
        (sighting_worker/late_reads.py, `group_late`)."""
        reads = early_reads(connection, camera_id, early.from_id, early.seen, limit=defaults.SIGHTING_BATCH_READS)
        if reads:
            early.took([read.read_id for read in reads], self.postgres_now())
        behind_s = raised.behind_s if raised is not None else -math.inf
        return reads, {read.read_id for read in reads if early.late(read, behind_s)}

    def match_early(
        self,
        connection: psycopg.Connection,
        reads: list[LoggedRead],
        late: set[int],
        alerted: Passes,
        gap_s: float,
        raised: RaisedBefore | None = None,
        tracks: dict[int, str] | None = None,
    ) -> list[Alert]:
        """Alerts on the camera's new confident reads (`take_reads`) that match a listed plate, once per
        pass; every new read of a listed plate, sure or not, widens the pass already alerted on that holds
        it (`PassHolding.holds`: a lookalike's only where the tracker would take it for that pass's car). A read logged
        late (its id in `late`: its alert says so) is also held by the pass that holds its late track
        (`tracks`: read id -> the held late track it joined, `group_late`) or by a pass of the alerts already
        `raised` (`PassHolding.raised_passes`). A sure read's fuzzy match that its own candidates do not bear out
        (sighting_worker/match_evidence.py) is taken as an unsure read's: it widens a pass, never alerts."""
        tracks = tracks or {}
        if self.watch is None:
            return []
        alerts = []
        for read in reads:
            self.keep_alive(connection)
            seen = read.observation
            if not re.fullmatch(PLATE_PATTERN, seen.text):
                continue
            sure = seen.confidence >= self.settings.read_min_confidence
            matches = self.watch.match_lists(
                seen.text, self.settings.max_distance, seen.captured_at_s, refresh=False, now_s=self.postgres_now()
            )
            track = tracks.get(read.read_id)
            evidence = read_evidence(connection, read.read_id, seen.confidence)
            for match in matches:
                at_s = seen.captured_at_s
                alerting = sure and evidence.allows(match, self.settings.fuzzy_min_probability)
                if (
                    self.passes.seen_in_pass(
                        alerted, match, at_s, at_s, gap_s, alerting, seen, raised=raised, track=track
                    )
                    or not alerting
                ):
                    continue
                identifier = alert_id("read", seen.frame_id, seen.plate_index, *key_parts(match), key=self.id_key)
                logged_at_s = read.logged_at_s if read.read_id in late else None
                alerts.append(make_alert(match, seen, identifier, logged_at_s, evidence))
            self.passes.hold_open(alerted, seen, {watch_key(m) for m in matches}, gap_s)
        return alerts

    def match_sighting(
        self,
        sighting: Sighting,
        alerted: Passes,
        gap_s: float,
        connection: psycopg.Connection | None = None,
        raised: RaisedBefore | None = None,
        late_logged_at_s: float | None = None,
    ) -> list[Alert]:
        """An alert per watch-list whose plate the sighting's voted plate matches, when it is sure
        enough, unless this pass was alerted on already for that list (an early alert on one of its
        reads, or its track's while it was open: `match_open`). Entries are judged as of the car's first
        sighting (at the latest, as of the cache's window before now: WatchListCache.match_lists). A late
        sighting (its newest read logged at `late_logged_at_s`) raises a late alert. A fuzzy match its reads'
        candidates do not bear out (sighting_worker/match_evidence.py) is no match."""
        return self.match_voted(sighting, alerted, gap_s, connection, raised, late_logged_at_s)

    def match_open(
        self,
        connection: psycopg.Connection,
        camera_id: str,
        sightings: list[Sighting],
        alerted: Passes,
        gap_s: float,
        raised: RaisedBefore | None = None,
    ) -> list[Alert]:
        """Alerts on the camera's open tracks that took reads this round (`sightings`: their running vote,
        SightingTracker.open_sightings) and are a car that stays in view (`dwelt`): reads spanning at least
        OPEN_TRACK_DWELL_S, its vote as sure as a closing track's must be (ALPR_OCR_MIN_CONFIDENCE,
        `is_vehicle_pass`) and read exactly by at least OPEN_TRACK_MIN_READS of them. Only an exact match
        (distance 0) alerts while the car is in view; a fuzzy one is left to its sighting's close, where the
        vote is final. Each alerts as `match_sighting` on a closed one: its pass alerted on once, the same
        alert id as its closing sighting's, the track made the pass's car (`Pass.tracks`) so that neither its
        later rounds nor its sighting, closed, alert on it again. A listed car parked at a gate or queued at a
        toll, read at 0.87 (sure enough for a sighting, under ALPR_WATCH_READ_MIN_CONFIDENCE), was alerted on
        only once it had left, an hour parked an hour late, and not at all where its entry expired during its
        stay (judged at the close, a review). Matching any open track once its vote passed alerted on one
        misread at 0.86 of a passing car whose sighting then voted another plate, and on a lookalike's fuzzy
        match whose exact alert, the vote become the listed plate, was then dropped (same alert id; a review).

        Per round and per track, not per read; and a track is matched again only when its voted plate
        changed or the watch-lists were reloaded since a committed round matched it (`opened`): its entries
        are judged as of its first read, as its sighting's are, so nothing else brings a new match."""
        if self.watch is None:
            return []
        entries, matched = self.watch.loaded(), self.matched_open(camera_id)
        due = [
            sighting
            for sighting in sightings
            if self.dwelt(sighting) and matched.get(sighting.sighting_id) != sighting.plate
        ]
        self.open_matching[camera_id] = (entries, {sighting.sighting_id: sighting.plate for sighting in due})
        return [
            alert
            for sighting in due
            for alert in self.match_voted(
                sighting, alerted, gap_s, connection, raised, track=sighting.sighting_id, exact_only=True
            )
        ]

    def dwelt(self, sighting: Sighting) -> bool:
        """Whether an open track's running vote (`sighting`) may be matched while its car is in view
        (`match_open`): its reads span OPEN_TRACK_DWELL_S, its vote is sure enough for a sighting and at
        least OPEN_TRACK_MIN_READS of its reads read the voted plate exactly."""
        return (
            sighting.last_seen_s - sighting.first_seen_s >= defaults.OPEN_TRACK_DWELL_S
            and is_vehicle_pass(sighting, self.settings.sighting_min_confidence)
            and sighting.confidence >= self.settings.sighting_min_confidence
            and dict(sighting.texts).get(sighting.plate, 0) >= defaults.OPEN_TRACK_MIN_READS
        )

    def matched_open(self, camera_id: str) -> dict[str, str]:
        """The camera's open tracks matched in committed rounds against the entries loaded now, with the
        plate each voted then (`match_open`); none once the watch-lists were reloaded (an entry may be new)."""
        if self.watch is None:
            return {}
        matched_against, matched = self.open_matched.get(camera_id, ((), {}))
        return matched if matched_against is self.watch.loaded() else {}

    def opened(self, camera_id: str, open_ids: set[str]) -> None:
        """The camera's round committed: the open tracks it matched (`match_open`) are kept as matched, and
        only those still open (`open_ids`). A round rolled back keeps none: its alerts were not logged, and its
        reads are grouped, its tracks matched, again."""
        entries, matching = self.open_matching.pop(camera_id, ((), {}))
        matched_against, matched = self.open_matched.get(camera_id, (entries, {}))
        kept = {**(matched if matched_against is entries else {}), **matching}
        self.open_matched[camera_id] = (entries, {track: plate for track, plate in kept.items() if track in open_ids})

    def match_voted(
        self,
        sighting: Sighting,
        alerted: Passes,
        gap_s: float,
        connection: psycopg.Connection | None,
        raised: RaisedBefore | None,
        late_logged_at_s: float | None = None,
        track: str | None = None,
        exact_only: bool = False,
    ) -> list[Alert]:
        """`match_sighting`'s alerts, and `match_open`'s on an open `track` (its id: the pass alerted on
        holds it from then on, `PassHolding.seen_in_pass`), of exact matches alone when `exact_only`."""
        if self.watch is None or sighting.confidence < self.settings.sighting_min_confidence:
            return []
        if not re.fullmatch(PLATE_PATTERN, sighting.plate):
            return []
        if connection is not None:
            self.keep_alive(connection)
        now_s = self.postgres_now()
        evidence = sighting_evidence(connection, sighting)
        return [
            make_alert(
                match,
                sighting,
                alert_id("sighting", sighting.sighting_id, *key_parts(match), key=self.id_key),
                late_logged_at_s,
                evidence,
            )
            for match in self.watch.match_lists(
                sighting.plate, self.settings.max_distance, sighting.first_seen_s, refresh=False, now_s=now_s
            )
            if (match.distance == 0 or not exact_only)
            and evidence.allows(match, self.settings.fuzzy_min_probability)
            and not self.passes.seen_in_pass(
                alerted,
                match,
                sighting.first_seen_s,
                sighting.last_seen_s,
                gap_s,
                box=sighting,
                raised=raised,
                track=track,
            )
        ]

    @property
    def id_key(self) -> str | None:
        """The chain's job key, which this stage's alert jobs are signed with: alert ids are keyed with it."""
        return alert_id_key(self.alert_queue)
