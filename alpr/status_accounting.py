"""`alpr status`'s frames-log part, with a database (--database-url or ALPR_DATABASE_URL): per camera the
window's frames by outcome and their reads, the sightings begun and the alert deliveries, read once
(`read_accounting`) and shown as text (`print_accounting`) or, for `--json`, as `accounting_document`
(`--json` ignored the database without a word: a monitoring script asking for the accounting got none)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from alpr.connections import database_pool
from common import defaults
from common.config import Settings
from common.credentials import escape_controls
from common.errors import AlprError
from common.frame_counts import RecentCounts, recent_per_camera

RECENT_SIGHTINGS = recent_per_camera("sightings", "first_seen")
"""Sightings per camera begun within a window (sightings_by_camera_time)."""

FRAME_OUTCOMES = ("done", "skipped", "expired", "corrupt", "lost")
"""The outcomes a sampled frame's record ends with, in the order shown (`pending`: still in the chain)."""

READ_OUTCOMES = ("pending", "expired", "corrupt", "lost", "refused", "skipped")
"""The outcomes of a frame's plate reads, in the order shown."""

DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed", "rejected")
"""An alert delivery's statuses, in the order shown."""


class UnansweredError(AlprError):
    """A statement of the frames-log part ran past STATUS_STATEMENT_TIMEOUT_S (common/db.STATUS_SESSION_SETTINGS)."""


@dataclass
class Accounting:
    """What the frames log holds of a window (`read_accounting`)."""

    window_s: float
    recent: RecentCounts
    unmerged: int = 0
    """Per-minute count changes waiting to be merged (Postgres's statistics: an estimate)."""
    deliveries: dict[str, int] = field(default_factory=dict)
    sightings: dict[str, int] = field(default_factory=dict)


def unmerged_backlog(unmerged: int) -> str:
    """What to say of `unmerged` per-minute count changes waiting to be merged (common/frame_counts.py's
    UNMERGED_CHANGES_WARNED)."""
    return (
        f"about {unmerged:,} changes to the per-minute counts wait to be merged, and this count reads each (about"
        f" 12 million pass its {defaults.STATUS_STATEMENT_TIMEOUT_S:g} s): the redactor and OCR pools merge them"
        f" every {defaults.WORKER_MAINTENANCE_S:g} s, `alpr db prune` at each round; are both pools down?"
    )


def read_accounting(settings: Settings, window_s: float) -> Accounting:
    """Per camera from the frames log, of the frames captured in the last `window_s` seconds: frames
    sampled, how they ended, those not yet accounted for, and the frames whose reads are pending, expired
    (crops gone) or lost (no OCR job recorded them); the sightings begun and alert deliveries of that window
    (those pending: all). Each count reads an index's range: counting the whole log read every row (0.46 s
    a 2 million; a city's 30 days hold billions, past the statements' 5 s: a soak review). A count that
    times out is UnansweredError, naming a backlog of count changes past UNMERGED_CHANGES_WARNED: it reads
    each."""
    import psycopg

    from common.alert_log import AlertLog
    from common.db import STATUS_SESSION_SETTINGS
    from common.frame_counts import UNMERGED_CHANGES_WARNED, FrameCounts

    pool, unmerged = None, 0
    try:
        pool = database_pool(settings, "status", session_settings=STATUS_SESSION_SETTINGS)
        unmerged = FrameCounts(pool).unmerged_changes()
        recent = FrameCounts(pool).recent_outcome_counts(window_s)
        deliveries = AlertLog(pool, 0).recent_counts(window_s)
        with pool.connection() as connection:
            sightings: dict[str, int] = dict(connection.execute(RECENT_SIGHTINGS, (window_s,)).fetchall())
    except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
        backlog = f"; {unmerged_backlog(unmerged)}" if unmerged > UNMERGED_CHANGES_WARNED else ""
        raise UnansweredError(f"frames log not answered in {defaults.STATUS_STATEMENT_TIMEOUT_S:g} s"
                              f" (a lock? see pg_locks){backlog}") from None  # fmt: skip
    finally:
        if pool is not None:
            pool.close()
    return Accounting(window_s, recent, unmerged, deliveries, sightings)


def print_accounting(settings: Settings, window_s: float) -> None:
    """`read_accounting`'s counts as text; a backlog of count changes past UNMERGED_CHANGES_WARNED said."""
    from common.frame_counts import OLDER_FRAMES_COUNTED, UNMERGED_CHANGES_WARNED

    accounting = read_accounting(settings, window_s)
    recent, window = accounting.recent, f"the last {window_s / 3600:g} h"
    begun = ", ".join(f"{escape_controls(c)} {n}" for c, n in sorted(accounting.sightings.items()))
    print(f"\nsightings begun in {window}: {begun or 'none'}")
    shown_deliveries = " ".join(f"{s} {accounting.deliveries.get(s, 0)}" for s in DELIVERY_STATUSES)
    print(f"alert deliveries (pending: all; the others of alerts raised in {window}): {shown_deliveries}")
    counts, reads = recent.outcomes, recent.reads
    print(f"\nframes log: frames captured in {window} (--hours)")
    if accounting.unmerged > UNMERGED_CHANGES_WARNED:
        print(f"  {unmerged_backlog(accounting.unmerged)}")
    if recent.counted_from is not None:
        print(f"  counted from {recent.counted_from.astimezone(UTC):%Y-%m-%d %H:%M} UTC only, not the window's start:"
              " the per-minute counts begin then (`alpr db upgrade` to migration 21), and the frames captured"
              f" before it are more than {OLDER_FRAMES_COUNTED:,} to count one by one")  # fmt: skip
    print(
        f"{'':<12}{'camera':<20} {'sampled':>8} " + " ".join(f"{o:>8}" for o in FRAME_OUTCOMES) + f" {'in chain':>8}"
        " | frames' reads " + " ".join(f"{o:>8}" for o in READ_OUTCOMES)
    )
    for camera, by_outcome in sorted(counts.items()):
        sampled = sum(by_outcome.values())
        cells = " ".join(f"{by_outcome.get(o, 0):>8}" for o in FRAME_OUTCOMES)
        read_cells = " ".join(f"{reads.get(camera, {}).get(o, 0):>8}" for o in READ_OUTCOMES)
        shown = escape_controls(camera)
        print(f"{'':<12}{shown:<20} {sampled:>8} {cells} {by_outcome.get('pending', 0):>8} | {'':>14}{read_cells}")


def accounting_document(settings: Settings, window_s: float) -> dict[str, Any]:
    """`read_accounting`'s counts for `alpr status --json`: `window_hours`; `counted_from` (ISO 8601 UTC,
    where the counts begin after the window's start; else null); `unmerged_count_changes`; per camera (as
    stored: JSON escapes what it must) `sampled`, each outcome, `in_chain` and its frames' `reads`;
    `sightings_begun` per camera; `alert_deliveries` per status."""
    accounting = read_accounting(settings, window_s)
    recent = accounting.recent
    cameras = {
        camera: {
            "sampled": sum(by_outcome.values()),
            **{outcome: by_outcome.get(outcome, 0) for outcome in FRAME_OUTCOMES},
            "in_chain": by_outcome.get("pending", 0),
            "reads": {outcome: recent.reads.get(camera, {}).get(outcome, 0) for outcome in READ_OUTCOMES},
        }
        for camera, by_outcome in sorted(recent.outcomes.items())
    }
    counted_from = recent.counted_from
    return {
        "window_hours": window_s / 3600,
        "counted_from": counted_from.astimezone(UTC).isoformat() if counted_from is not None else None,
        "unmerged_count_changes": accounting.unmerged,
        "cameras": cameras,
        "sightings_begun": dict(sorted(accounting.sightings.items())),
        "alert_deliveries": {status: accounting.deliveries.get(status, 0) for status in DELIVERY_STATUSES},
    }
