"""The raiser's side of the alerts log (tables `alerts` and `alert_deliveries`): the sighting pool logs
the alerts it raises, each with a pending delivery to every receiver that takes its list, inside the
transaction that raised them (`insert_alerts`: the outbox, so no alert is lost to a crash between raising
and queuing it), and looks up the alerts a camera already raised on a listed plate (`alerts_raised`,
`RaisedAlert`). Both run on the caller's connection. The alert pool's side, claiming and recording each
delivery, is common/alert_log.py's (`AlertLog`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from common import defaults
from common.alerts import Alert, ListFilter, routed

INSERT_ALERT = """
INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""

INSERT_DELIVERY = """
INSERT INTO alert_deliveries (alert_id, receiver, queued_at)
VALUES (%s, %s, statement_timestamp() - make_interval(secs => %s)) ON CONFLICT DO NOTHING
"""
"""A delivery to make, queued by the raiser right after its commit, which then says so (`AlertLog.queued`).
Until it does, the delivery counts as queued ALERT_REQUEUE_AFTER_S - ALERT_UNCONFIRMED_S ago: a raiser killed
between its commit and its queueing left it to `AlertLog.due` ALERT_REQUEUE_AFTER_S later (a review: 40 s).
By the statement's clock, not the transaction's: a round of more than ALERT_UNCONFIRMED_S committed them due."""


def insert_alerts(
    connection: psycopg.Connection, alerts: Sequence[Alert], receivers: Mapping[str, ListFilter] | Sequence[str]
) -> list[Alert]:
    """Log alerts with a pending delivery to each receiver that takes its list (`receivers`: name -> the lists
    it takes, or names that take every list), inside the caller's transaction; returns those that are new
    (an alert raised again, by a group done twice, is not)."""
    routes = receivers if isinstance(receivers, Mapping) else dict.fromkeys(receivers)
    new = []
    with connection.cursor() as cursor:
        for alert in alerts:
            captured_at = datetime.fromtimestamp(alert.captured_at_s, UTC)
            body = Jsonb(alert.model_dump(mode="json"))
            cursor.execute(INSERT_ALERT, (alert.alert_id, alert.kind, alert.camera_id, captured_at, body))
            if cursor.rowcount:
                new.append(alert)
                unconfirmed_age_s = defaults.ALERT_REQUEUE_AFTER_S - defaults.ALERT_UNCONFIRMED_S
                deliveries = [(alert.alert_id, r, unconfirmed_age_s) for r in routed(alert, routes)]
                cursor.executemany(INSERT_DELIVERY, deliveries)
    return new


RAISED_AT = """
SELECT a.alert_id, a.kind, extract(epoch FROM a.captured_at), (a.body ->> 'distance')::float8,
    a.body ->> 'frame_id', a.body ->> 'sighting_id', r.plate_index, r.x1, r.y1, r.x2, r.y2
FROM alerts a LEFT JOIN plate_reads r ON r.camera_id = a.camera_id
    AND r.captured_at BETWEEN a.captured_at - interval '1 millisecond' AND a.captured_at + interval '1 millisecond'
    AND r.frame_id = a.body ->> 'frame_id' AND r.plate_text = a.body ->> 'plate'
WHERE a.camera_id = %s AND a.body ->> 'watch_plate' = %s
    AND a.captured_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)
ORDER BY a.captured_at, a.alert_id, r.plate_index
"""
"""The alerts a camera raised on a listed plate within a window of capture times (the index on camera and
capture time), each with the read its body names (its frame's read of that text: index and box)."""


@dataclass(frozen=True)
class RaisedAlert:
    """An alert already raised, as the sighting pool looks it up (`alerts_raised`): its id, kind, capture
    time, match distance, the frame and sighting it names, and the read it names, when still logged: its
    plate indexes in the frame (a frame may read the same text twice) and its box."""

    alert_id: str
    kind: str
    captured_at_s: float
    distance: float
    frame_id: str
    sighting_id: str | None
    plate_indexes: tuple[int, ...]
    box_xyxy: tuple[float, float, float, float] | None


def alerts_raised(
    connection: psycopg.Connection, camera_id: str, watch_plate: str, from_s: float, until_s: float
) -> list[RaisedAlert]:
    """The alerts raised at `camera_id` on the listed plate `watch_plate`, captured in [from_s, until_s]."""
    found: dict[str, RaisedAlert] = {}
    for row in connection.execute(RAISED_AT, (camera_id, watch_plate, from_s, until_s)):
        identifier, kind, at_s, distance, frame_id, sighting_id, plate_index, *box = row
        earlier = found.get(identifier)
        indexes = (earlier.plate_indexes if earlier else ()) + (() if plate_index is None else (int(plate_index),))
        x1, y1, x2, y2 = box
        box_xyxy = earlier.box_xyxy if earlier else None
        if box_xyxy is None and x1 is not None:
            box_xyxy = (float(x1), float(y1), float(max(x1, x2)), float(max(y1, y2)))
        found[identifier] = RaisedAlert(
            str(identifier), str(kind), float(at_s), float(distance), str(frame_id), sighting_id, indexes, box_xyxy
        )
    return list(found.values())
