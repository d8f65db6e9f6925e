"""The alerts the watch-list matching (sighting_worker/matching.py) makes and recognises: a match's
watch-list entry as a key (`key_parts`, `watch_key`), the alert on a read or a sighting that matched
(`make_alert`), the key its ids are signed with (`alert_id_key`), whether an alert logged was raised on an
entry (`entrys_alert`), and the text a match was made of (`matched_text`)."""

from __future__ import annotations

from typing import Literal

from rq import Queue

from common import defaults
from common.alert_raising import RaisedAlert
from common.alerts import ALERT_BODY_VERSION, Alert
from common.types import Observation, Sighting
from common.watchlist_index import WatchMatch
from sighting_worker.alert_ids import alert_id
from sighting_worker.match_evidence import Evidence


def alert_id_key(alert_queue: Queue) -> str | None:
    """The chain's job key, which this stage's alert jobs are signed with: alert ids are keyed with it."""
    return getattr(alert_queue, "job_key", None)


def key_parts(match: WatchMatch) -> tuple[str, str]:
    return match.entry.list_name, match.entry.plate


def watch_key(match: WatchMatch) -> str:
    return ":".join(key_parts(match))


def make_alert(
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


def entrys_alert(alert: RaisedAlert, match: WatchMatch, id_key: str | None) -> bool:
    """Whether the `alert` was raised on the match's watch-list entry (list and plate): its id is the
    one `alert_id` gives that entry (with this worker's key, `id_key`; one raised under another key is not
    recognised, and the match alerts again: the safer failure)."""
    parts = key_parts(match)
    if alert.kind == "sighting":
        return alert.alert_id == alert_id("sighting", alert.sighting_id, *parts, key=id_key)
    return any(
        alert.alert_id == alert_id("read", alert.frame_id, index, *parts, key=id_key) for index in alert.plate_indexes
    )


def matched_text(read: Observation | None, box: Sighting | None) -> str | None:
    """The text a match was made of: the read's, or the sighting's voted plate."""
    return read.text if read is not None else box.plate if box is not None else None
