"""`alpr status`'s line on orphaned frames (common/orphans.py): of the window's frames in the chain, those
no job holds — lost with the queues' Redis (restarted without persistence) or never queued by a node
killed — per camera, with when the sweep records them `lost`. Without it, status showed every queue
empty and the same frames `in chain` for 12 minutes (a fault review). Told, never an error: the exit
status stays as the rest of status set it. `--json`: `orphans_document`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from alpr.connections import database_pool, reach_redis
from common.config import Settings
from common.credentials import escape_controls, mask_url
from common.errors import ConfigError
from common.orphans import Orphans, find_orphans


def clock(seconds: float) -> str:
    """A Unix time as a UTC clock time to read (HH:MM)."""
    return f"{datetime.fromtimestamp(seconds, UTC):%H:%M} UTC"


def orphan_lines(found: Orphans, lost_after_s: float) -> list[str]:
    """What status prints of `found` (nothing when every pending frame is in a job)."""
    if found.unknown:
        return [f"  frames in no job: not counted ({escape_controls(found.unknown)})"]
    lines = []
    if found.per_camera and found.recorded_s:
        first, last = (t + lost_after_s for t in found.recorded_s)
        when = clock(first) if last - first < 60 else f"{clock(first)} to {clock(last)}"
        total = sum(found.per_camera.values())
        lines.append(
            f"  of the frames in chain, {total:,} are in no job (no queue, running job or failed job holds them:"
            " the queues' Redis lost them, restarted without persistence?, or their ingest node was killed"
            f" before queueing them); nothing will finish them unless `alpr replay --orphans` queues them again while"
            f" their frames are stored: the sweep records them lost at {when}"
        )
        lines += [f"{'':<12}{escape_controls(c):<20} {n:>8} in no job" for c, n in sorted(found.per_camera.items())]
    if found.per_camera and found.unreadable_jobs:
        lines.append(f"  ({found.unreadable_jobs:,} jobs could not be read: frames of theirs are counted in no job)")
    if not found.all_examined:
        lines.append(f"  (frames in no job: the oldest {found.examined:,} frames in chain examined only)")
    return lines


def read_orphans(settings: Settings, window_s: float) -> Orphans:
    """The frames of the last `window_s` seconds in the chain that no job holds, per camera; where the
    queues' Redis or the frames log cannot be read, `unknown` says why (URL credentials masked)."""
    from common.db import STATUS_SESSION_SETTINGS

    pool = None
    try:
        connection = reach_redis(settings)
        pool = database_pool(settings, "status", session_settings=STATUS_SESSION_SETTINGS)
        return find_orphans(pool, connection, window_s)
    except (ConfigError, redis.RedisError, psycopg.Error) as error:
        return Orphans(unknown=mask_url(str(error)).splitlines()[0])
    finally:
        if pool is not None:
            pool.close()


def print_orphans(settings: Settings, window_s: float) -> None:
    """`read_orphans`' count as status prints it, or a line saying it was not counted."""
    for line in orphan_lines(read_orphans(settings, window_s), settings.frame_ttl_s + settings.job_timeout_s):
        print(line)


def orphans_document(settings: Settings, window_s: float) -> dict[str, Any]:
    """`print_orphans`'s count for `alpr status --json`: per camera the frames in no job, `lost_at` (ISO
    8601 UTC: when the sweep records the first of them lost; null with none), `all_examined`,
    `unreadable_jobs`, and `unknown`: why none were counted (null when they were)."""
    found = read_orphans(settings, window_s)
    lost_after_s = settings.frame_ttl_s + settings.job_timeout_s
    first_lost = datetime.fromtimestamp(found.recorded_s[0] + lost_after_s, UTC) if found.recorded_s else None
    return {
        "cameras": {} if found.unknown else dict(sorted(found.per_camera.items())),
        "lost_at": first_lost.isoformat() if first_lost and found.per_camera else None,
        "all_examined": found.all_examined,
        "unreadable_jobs": found.unreadable_jobs,
        "unknown": found.unknown,
    }
