"""The entries between a queue and its jobs that RQ cannot fetch, found and dropped in Redis within a bound
per registry cleaning: a queue's intermediate list (a job taken, not yet started) and its started-jobs
registry. RQ raises on such an entry (an id it does not allow, one that is not ASCII, a job key that is no
hash): a worker dequeuing it quit, and every registry cleaning after failed on it. They were found by
reading both whole (LRANGE and ZRANGE 0 -1) with a TYPE round trip per entry, in every worker at every
cleaning, where any client of Redis may add entries: 200,000 forged in each took a cleaning 50 s and 11 MB
sent (a review), every 15 s (every second in the alert pool). Now a script looks at a window of each in
Redis and drops what RQ cannot fetch there, sending back only what it dropped, cut short: the end a
dequeue pushes to (the intermediate list's tail) or the entries RQ's cleaning reads next (the started
registry's lowest scores), then a window that moves on at each cleaning, so a bad entry further in is
reached within a bounded number of cleanings. (What a job RQ's cleaning of the intermediate list fails is:
common/stuck_jobs.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import redis
from rq.job import Job

DROP_UNFETCHABLE = """
local key, kind = KEYS[1], ARGV[1]
local start, count, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if redis.call('TYPE', key)['ok'] ~= kind then
    return {0}
end
local entries
if kind == 'list' then
    entries = redis.call('LRANGE', key, start, start + count - 1)
else
    entries = redis.call('ZRANGE', key, start, start + count - 1)
end
local out, bad = {0}, {}
for _, entry in ipairs(entries) do
    local reason = false
    local id = string.match(entry, '^[^:]*')
    if string.find(entry, '[\\128-\\255]') then
        reason = 'not ascii'
    elseif not string.find(id, '^[%w_%-]+$') then
        reason = 'id'
    else
        local found = redis.call('TYPE', prefix .. id)['ok']
        if found ~= 'hash' and found ~= 'none' then
            reason = 'not hash'
        end
    end
    if reason then
        bad[#bad + 1] = entry
        out[#out + 1] = reason
        out[#out + 1] = string.sub(entry, 1, tonumber(ARGV[5]))
    end
end
for _, entry in ipairs(bad) do
    if kind == 'list' then
        redis.call('LREM', key, 0, entry)
    else
        redis.call('ZREM', key, entry)
    end
end
out[1] = kind == 'list' and redis.call('LLEN', key) or redis.call('ZCARD', key)
return out
"""
"""KEYS[1] a list or sorted set (by ARGV[1], 'list' or 'zset'; another type is left alone); ARGV the first
index or rank looked at, how many, the job keys' prefix and the longest piece of an entry sent back. Each
entry whose id (before its first ':': the started registry adds the execution) is not one RQ allows, that
holds a byte past ASCII, or whose job key holds another type than a hash, is removed. Returns the key's
length after, then per entry removed its reason and its first bytes."""

REASONS = {
    "not ascii": "an id that is not ASCII",
    "id": "an id RQ does not allow",
    "not hash": "a job key that is not a hash",
}
"""The script's reasons, as the worker's log line says them."""

STEP = 1000
"""Entries the script looks at per call (a step of a few milliseconds in Redis)."""

MOST_PER_CLEANING = 10_000
"""Entries looked at per key at each cleaning: its hot end, then the moving window."""

PREVIEW_BYTES = 80
"""Bytes of a dropped entry sent back, for the log line."""

Kind = Literal["list", "zset"]


@dataclass(frozen=True)
class Dropped:
    """An entry dropped: why (REASONS' words) and its first PREVIEW_BYTES bytes."""

    reason: str
    preview: bytes


@dataclass
class EntryWindows:
    """Where the moving window of each key looked last: it goes on from there at the next cleaning, back to
    the start once it passed the end."""

    cursors: dict[str, int] = field(default_factory=dict)

    def drop_unfetchable(self, connection: redis.Redis, key: str, kind: Kind) -> list[Dropped]:
        """Drop the entries of `key` that RQ cannot fetch among its hot end (a list's last STEP entries, a
        sorted set's STEP lowest-scored) and the next MOST_PER_CLEANING - STEP of the moving window."""
        hot = -STEP if kind == "list" else 0
        dropped, length = step(connection, key, kind, hot)
        cursor = self.cursors.get(key, 0)
        for _ in range(MOST_PER_CLEANING // STEP - 1):
            if cursor >= length:
                cursor = 0
                break
            found, length = step(connection, key, kind, cursor)
            dropped += found
            cursor += STEP - len(found)  # those dropped no longer hold their places
        self.cursors[key] = cursor
        return dropped


def step(connection: redis.Redis, key: str, kind: Kind, start: int) -> tuple[list[Dropped], int]:
    """One call of the script from index or rank `start`: the entries dropped and the key's length after
    (0 where it holds another type: RQ's own reading of it fails, and says so)."""
    reply = connection.eval(DROP_UNFETCHABLE, 1, key, kind, start, STEP, Job.redis_job_namespace_prefix, PREVIEW_BYTES)
    found = [
        Dropped(REASONS.get(reason.decode() if isinstance(reason, bytes) else str(reason), "?"), preview)
        for reason, preview in zip(reply[1::2], reply[2::2], strict=True)
    ]
    return found, int(reply[0])
