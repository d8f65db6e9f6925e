"""The watch-list matching of a camera's round (`WatchMatcher`): its new confident reads matched at once
(early alerts), its open tracks that have dwelt in view matched exactly by their running vote (a listed car
parked or queued alerted on while it stands there) and its closed sightings matched by their voted plate, each
pass of a listed plate alerted on once (the passes alerted on: sighting_worker/passes.py), and the alerts made
(their ids: sighting_worker/alert_ids.py). It goes by Postgres's clock and keeps the camera's transaction alive through
the stage that holds it (`SightingStage.postgres_now`, `SightingStage.keep_alive`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal

import psycopg
from rq import Queue

from common import defaults
from common.alert_raising import RaisedAlert, alerts_raised
from common.alerts import ALERT_BODY_VERSION, PLATE_PATTERN, Alert
from common.plate_text import plate_distance
from common.sighting_log import LoggedRead, early_reads
from common.types import Observation, Sighting
from common.watchlist_cache import WatchListCache
from common.watchlist_entry import WatchEntry
from common.watchlist_index import WatchMatch
from sighting_worker.alert_ids import alert_id
from sighting_worker.core import is_vehicle_pass
from sighting_worker.early_scan import EarlyScan
from sighting_worker.grouping import MAX_TEXT_DISTANCE, reach_widths
from sighting_worker.late_reads import RaisedBefore
from sighting_worker.match_evidence import Evidence, read_evidence, sighting_evidence
from sighting_worker.passes import Pass, Passes
from sighting_worker.stage_types import SightingSettings


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
        it (`holds`: a lookalike's only where the tracker would take it for that pass's car). A read logged
        late (its id in `late`: its alert says so) is also held by the pass that holds its late track
        (`tracks`: read id -> the held late track it joined, `group_late`) or by a pass of the alerts already
        `raised` (`raised_passes`). A sure read's fuzzy match that its own candidates do not bear out
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
                    self.seen_in_pass(alerted, match, at_s, at_s, gap_s, alerting, seen, raised=raised, track=track)
                    or not alerting
                ):
                    continue
                identifier = alert_id("read", seen.frame_id, seen.plate_index, *self.key_parts(match), key=self.id_key)
                logged_at_s = read.logged_at_s if read.read_id in late else None
                alerts.append(self.alert(match, seen, identifier, logged_at_s, evidence))
            self.hold_open(alerted, seen, {self.watch_key(m) for m in matches}, gap_s)
        return alerts

    def hold_open(self, alerted: Passes, seen: Observation, matched: set[str], gap_s: float) -> None:
        """A read too far from a listed plate to match it, but near enough for the tracker to take it for
        the same car (a misread, half the plate hidden), widens that plate's open pass, never alerting:
        a listed plate unread for longer than the gap is still one pass. As for the tracker, such a read
        continues the pass only within the sighting gap of it and where its car could have gone since
        the pass's newest read: widened within ALPR_ALERT_REPEAT_S and anywhere in view, an unlisted
        car two characters off parked in view (KPX4799 for KPX4721), read every 20 s, held the pass
        open for minutes, and the listed car's next pass raised no alert. Only the passes alerted on are
        looked at (a few), not the whole watch-list. `gap_s`: the camera's sighting gap (`camera_gap_s`)."""
        for key, spans in alerted.items():
            if key in matched or plate_distance(seen.text, key.split(":", 1)[1]) > MAX_TEXT_DISTANCE:
                continue
            for span in spans:
                if (
                    seen.captured_at_s - gap_s <= span.last_s
                    and span.first_s <= seen.captured_at_s + gap_s
                    and span.reaches(seen)
                ):
                    span.widen(seen.captured_at_s, seen.captured_at_s, self.postgres_now())
                    span.note(seen)

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
        holds it from then on, `seen_in_pass`), of exact matches alone when `exact_only`."""
        if self.watch is None or sighting.confidence < self.settings.sighting_min_confidence:
            return []
        if not re.fullmatch(PLATE_PATTERN, sighting.plate):
            return []
        if connection is not None:
            self.keep_alive(connection)
        now_s = self.postgres_now()
        evidence = sighting_evidence(connection, sighting)
        return [
            self.alert(
                match,
                sighting,
                alert_id("sighting", sighting.sighting_id, *self.key_parts(match), key=self.id_key),
                late_logged_at_s,
                evidence,
            )
            for match in self.watch.match_lists(
                sighting.plate, self.settings.max_distance, sighting.first_seen_s, refresh=False, now_s=now_s
            )
            if (match.distance == 0 or not exact_only)
            and evidence.allows(match, self.settings.fuzzy_min_probability)
            and not self.seen_in_pass(
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

    def seen_in_pass(
        self,
        alerted: Passes,
        match: WatchMatch,
        first_s: float,
        last_s: float,
        gap_s: float,
        alerting: bool = True,
        read: Observation | None = None,
        box: Sighting | None = None,
        raised: RaisedBefore | None = None,
        track: str | None = None,
    ) -> bool:
        """Whether a pass of this listed plate already alerted on holds [first_s, last_s] (`holds`) with a
        match as near; the pass is widened to hold it (and, given the `read`, notes where it was). With
        `alerting` (a sure read, or a sighting: this will be alerted on), a new pass begins where none
        holds it, and a nearer match in a pass is alerted on again (a misread KPX4727 raised the pass's
        alert for KPX4721: the exact reads after it confirm it instead of being silenced). Of the passes
        that hold it, one with a match as near is taken first: the listed car's exact sighting, closed
        while a lookalike's pass was open beside it, was otherwise alerted on again in the lookalike's.
        Reads may come in any order: a pass is the span of the reads it holds, in either direction. A
        sighting (its `box`) is held first of all by the passes whose reads the tracker grouped into it, a
        late read by the pass that holds its late `track` (the held late track it joined: its car's, by the
        tracker's rules, however far in time from the pass's alert), which it then holds. One that none
        holds, captured behind the cursor, may be held by a pass the cursor let go of: those are found among
        the alerts `raised` (`raised_passes`) and kept again."""
        passes = alerted.setdefault(self.watch_key(match), [])
        holding = [
            span
            for span in passes
            if (box is not None and box.sighting_id in span.tracks)
            or (track is not None and track in span.tracks)
            or self.holds(span, match.distance, first_s, last_s, gap_s, read, box)
        ]
        if not holding and alerting and raised is not None and first_s < raised.behind_s:
            holding = self.raised_passes(raised, match, passes, first_s, last_s, gap_s, read, box)
            passes += holding
        if holding:
            span = min(holding, key=lambda held: held.nearest > match.distance)  # as near first (a stable min)
            span.widen(first_s, last_s, self.postgres_now())
            if read is not None:
                span.note(read)
            if track is not None:
                span.tracks.add(track)
            nearer = alerting and match.distance < span.nearest
            if alerting:
                span.matched(matched_text(read, box), match.distance)
            return not nearer
        if alerting:
            passes.append(Pass(first_s, last_s, self.postgres_now(), match.distance))
            passes[-1].matched(matched_text(read, box), match.distance)
            if read is not None:
                passes[-1].note(read)
            if track is not None:
                passes[-1].tracks.add(track)
        return False

    def raised_passes(
        self,
        raised: RaisedBefore,
        match: WatchMatch,
        passes: list[Pass],
        first_s: float,
        last_s: float,
        gap_s: float,
        read: Observation | None,
        box: Sighting | None,
    ) -> list[Pass]:
        """The passes of the match's watch-list entry that the camera alerted on already (the alerts log)
        and that hold the match (`holds`), each remade from its alert: its capture time, its match's distance
        and its read's box. An exact match's pass reaches as far as the camera's logged sightings of the
        listed plate chain on from it within the pass gap (`RaisedBefore.pass_span`): its alert is looked for
        within the pass gap of that span, and a pass of exact matches is remade with it (exact reads within
        the pass gap of a pass are its car's: `holds`); a lookalike's, within the pass gap of [first_s,
        last_s] alone. An alert is the entry's when its id is the one this entry's match would have been
        given (the list is in no alert's body); one within a pass still kept is that pass's, which
        `seen_in_pass` asked already."""
        within_s = self.settings.pass_gap_s(gap_s)
        exact = match.distance == 0
        from_s, until_s = raised.pass_span(match.entry.plate, first_s, last_s, within_s) if exact else (first_s, last_s)
        found = []
        for alert in alerts_raised(
            raised.connection, raised.camera_id, match.entry.plate, from_s - within_s, until_s + within_s
        ):
            if not self.entrys_alert(alert, match) or any(p.first_s <= alert.captured_at_s <= p.last_s for p in passes):
                continue
            span = Pass(alert.captured_at_s, alert.captured_at_s, self.postgres_now(), alert.distance)
            if alert.box_xyxy is not None:
                x1, y1, x2, y2 = alert.box_xyxy
                span.points = [[alert.captured_at_s, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1]]
            if exact and alert.distance == 0:
                span.widen(from_s, until_s, span.touched_s)
            if self.holds(span, match.distance, first_s, last_s, gap_s, read, box):
                found.append(span)
        return found

    def entrys_alert(self, alert: RaisedAlert, match: WatchMatch) -> bool:
        """Whether the `alert` was raised on the match's watch-list entry (list and plate): its id is the
        one `alert_id` gives that entry (with this worker's key; one raised under another key is not
        recognised, and the match alerts again: the safer failure)."""
        parts = self.key_parts(match)
        if alert.kind == "sighting":
            return alert.alert_id == alert_id("sighting", alert.sighting_id, *parts, key=self.id_key)
        return any(
            alert.alert_id == alert_id("read", alert.frame_id, index, *parts, key=self.id_key)
            for index in alert.plate_indexes
        )

    def holds(
        self,
        span: Pass,
        distance: float,
        first_s: float,
        last_s: float,
        gap_s: float,
        read: Observation | None,
        box: Sighting | None = None,
    ) -> bool:
        """Whether a match at `distance` of the listed plate, [first_s, last_s] (a read, or a sighting
        without its `read`), is the car of the pass `span`, at a camera whose sighting gap is `gap_s`:

        - exact reads in a pass of exact matches: within the pass gap (ALPR_ALERT_REPEAT_S, 60 s),
          wherever in view (the listed plate is one car);
        - a lookalike (distance > 0: one character off) beside exact matches, or an exact read beside
          lookalikes: only where the tracker would join them (a misread of one car), within the sighting
          gap of the pass and where its car could be at the read's capture time (`Pass.reaches`); a
          sighting whose track held none of the pass's reads (those are held by `seen_in_pass` itself),
          where its best read's box lies within reach of the pass's newest read at the sighting's time
          nearest it;
        - a lookalike's read in a pass of lookalikes: within the pass gap where that pass's car could be
          (a lookalike parked in view, read every 20 s, is one pass and one alert, not one a read);
        - a text the pass matched at its nearest distance, at that distance (`Pass.same_text`): within the
          pass gap, wherever in view, for a lookalike as for the listed plate (one text read again is one
          car); a sighting's voted plate so too, where its pass kept no box.

        Before, any match within the pass gap widened the pass, anywhere in view: an unlisted fleet car
        KPX4727 parked beside the road, read every 20 s, held the listed KPX4721's pass open, and the
        listed car's next pass, five minutes on, raised no alert (its reads logged last first: the first
        pass lost its alert instead). A lookalike's sure read that no pass holds begins its own pass (an
        alert, as it raises with no listed car about); an unsure one is passed over."""
        exact = distance == 0 and span.nearest == 0
        lookalikes = distance > 0 and span.nearest > 0 and read is not None
        same_text = span.same_text(matched_text(read, box), distance)
        within_s = self.settings.pass_gap_s(gap_s) if exact or lookalikes or same_text else gap_s
        if not (first_s - within_s <= span.last_s and span.first_s <= last_s + within_s):
            return False
        if exact or same_text:
            return True
        if read is None and box is not None and span.points:  # a sighting: by its best read's box
            x1, y1, x2, y2 = box.best_box_xyxy
            newest_s, x, y, width_px = span.points[-1]
            at_s = min(max(newest_s, first_s), last_s)  # its time nearest the pass's newest read
            allowed = reach_widths(at_s - newest_s)
            return math.dist(((x1 + x2) / 2, (y1 + y2) / 2), (x, y)) <= allowed * max(width_px, x2 - x1, 1.0)
        return read is None or span.reaches(read)

    @property
    def id_key(self) -> str | None:
        """The chain's job key, which this stage's alert jobs are signed with: alert ids are keyed with it."""
        return getattr(self.alert_queue, "job_key", None)

    @staticmethod
    def key_parts(match: WatchMatch) -> tuple[str, str]:
        return match.entry.list_name, match.entry.plate

    def watch_key(self, match: WatchMatch) -> str:
        return ":".join(self.key_parts(match))

    @staticmethod
    def alert(
        match: WatchMatch,
        seen: Observation | Sighting,
        identifier: str,
        late_logged_at_s: float | None = None,
        evidence: Evidence | None = None,
    ) -> Alert:
        """The alert on a read (`read`: early) or a closed sighting (`sighting`) that matched; with
        `late_logged_at_s`, a late one (`Alert.late`): its reads logged then, after the camera was grouped
        past their capture time. With the match's `evidence`, a body of version 2: the entry's list, how
        probable the listed plate was and the likeliest texts read (ALERT_CANDIDATES)."""
        kind: Literal["read", "sighting"]
        if isinstance(seen, Observation):
            kind, plate, at_s, frame_id, sighting_id = "read", seen.text, seen.captured_at_s, seen.frame_id, None
        else:
            kind, plate, at_s, frame_id = "sighting", seen.plate, seen.first_seen_s, seen.best_frame_id
            sighting_id = seen.sighting_id
        return Alert(
            alert_id=identifier, camera_id=seen.camera_id, watch_plate=match.entry.plate, reason=match.entry.reason,
            distance=match.distance, confidence=seen.confidence, kind=kind, plate=plate, captured_at_s=at_s,
            frame_id=frame_id, sighting_id=sighting_id, late=late_logged_at_s is not None, logged_at_s=late_logged_at_s,
            list_name=None if evidence is None else match.entry.list_name,
            match_probability=None if evidence is None else round(evidence.probability(match), 6),
            candidates=None if evidence is None else evidence.top(defaults.ALERT_CANDIDATES),
            version=1 if evidence is None else ALERT_BODY_VERSION,
        )  # fmt: skip


def matched_text(read: Observation | None, box: Sighting | None) -> str | None:
    """The text a match was made of: the read's, or the sighting's voted plate."""
    return read.text if read is not None else box.plate if box is not None else None
