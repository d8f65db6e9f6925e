"""Which pass of a listed plate, among those a camera alerted on (sighting_worker/passes.py), holds a new
match of the watch-list matching (sighting_worker/matching.py), and so raises no alert of its own
(`PassHolding.seen_in_pass`): by the pass gap, the sighting gap, where the pass's car could be, its tracks,
or among the alerts already raised behind the cursor (`raised_passes`); and the near misses that widen a pass
without matching (`hold_open`)."""

from __future__ import annotations

import math
from collections.abc import Callable

from rq import Queue

from common.alert_raising import alerts_raised
from common.plate_text import plate_distance
from common.types import Observation, Sighting
from common.watchlist_index import WatchMatch
from sighting_worker.grouping import MAX_TEXT_DISTANCE, reach_widths
from sighting_worker.late_reads import RaisedBefore
from sighting_worker.passes import Pass, Passes
from sighting_worker.stage_types import SightingSettings
from sighting_worker.watch_alerts import alert_id_key, entrys_alert, matched_text, watch_key


class PassHolding:
    """The passes' judge of the watch-list matching (one per matcher, `WatchMatcher.passes`)."""

    def __init__(self, settings: SightingSettings, alert_queue: Queue, postgres_now: Callable[[], float]) -> None:
        self.settings, self.alert_queue = settings, alert_queue
        self.postgres_now = postgres_now
        """Now by Postgres's clock (`SightingStage.postgres_now`)."""

    @property
    def id_key(self) -> str | None:
        """The key alert ids are signed with (`alert_id_key`)."""
        return alert_id_key(self.alert_queue)

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
        passes = alerted.setdefault(watch_key(match), [])
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
            if not entrys_alert(alert, match, self.id_key) or any(
                p.first_s <= alert.captured_at_s <= p.last_s for p in passes
            ):
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
