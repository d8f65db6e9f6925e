"""Listing what anyone with access to the queues' Redis may have added: the keys of a pattern, the members
of a set, the fields of a hash. A name, field or entry over its bound is counted, never sent, and a
listing stops after the names it may hold. `alpr status` read every `alpr:camera-wanted:*` key, every
member of a queue's worker set and every field of the cameras' counts: 300,000 forged keys took it 17 s
and 500 MB, 100,000 forged members 23 s (a review). (The alert pool looks for its due jobs' ids one by
one: alert_worker/waiting.py.)"""

from __future__ import annotations

from dataclasses import dataclass

import redis

SCAN_WITHIN_BOUNDS = """
local reply
if #KEYS == 1 then
    reply = redis.call('SSCAN', KEYS[1], ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
else
    reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
end
local out = {reply[1], 0, #reply[2]}
local bound = tonumber(ARGV[4])
for _, name in ipairs(reply[2]) do
    if #name > bound then
        out[2] = out[2] + 1
    elseif ARGV[5] == '' or redis.call('TYPE', name).ok == ARGV[5] then
        out[#out + 1] = name
    end
end
return out
"""
"""One step of SCAN (no KEYS) or of SSCAN of set KEYS[1]; ARGV the cursor, the pattern, the step's COUNT,
the longest name sent, and a type ('' for any): with one, only the names of keys of that type are sent (a
set's members naming keys). Returns the next cursor, how many names were over the bound, how many were
looked at, then the names sent."""

SCAN_STEP = 1000
"""Names Redis looks at per step (SCAN's COUNT: a hint, each step a short script)."""


@dataclass(frozen=True)
class Names:
    """What a bounded listing found: the names within the bound (each once, in the order found), how many
    it passed over as too long, and whether it looked at every name (False: it stopped at its most)."""

    names: list[bytes]
    too_long: int
    complete: bool


def scan_within_bounds(
    connection: redis.Redis,
    match: str,
    max_name_bytes: int,
    most: int,
    set_key: str | None = None,
    of_type: str = "",
    most_looked_at: int | None = None,
) -> Names:
    """The keys matching `match` (with `set_key`, the members of that set matching it), each at most
    `max_name_bytes` long, at most `most` of them; with `of_type`, only names of keys of that type (a
    set's members that name no such key are passed over in Redis, never sent), looking at no more than
    `most_looked_at` names. A `set_key` that is not a set raises ResponseError (WRONGTYPE), as SSCAN does."""
    found: dict[bytes, None] = {}
    too_long, looked_at, cursor = 0, 0, b"0"
    while True:
        step: list[bytes | str | int] = [cursor, match, SCAN_STEP, max_name_bytes, of_type]
        reply = connection.eval(SCAN_WITHIN_BOUNDS, *([1, set_key] if set_key else [0]), *step)
        cursor, too_long, looked_at = reply[0], too_long + int(reply[1]), looked_at + int(reply[2])
        for raw in reply[3:]:
            name = raw if isinstance(raw, bytes) else str(raw).encode()
            if name not in found and len(found) >= most:
                return Names(list(found), too_long, False)
            found[name] = None
        if int(cursor) == 0:
            return Names(list(found), too_long, True)
        if most_looked_at is not None and looked_at >= most_looked_at:
            return Names(list(found), too_long, False)


HASH_SCAN_WITHIN_BOUNDS = """
local reply = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {reply[1], 0}
local field_bound, value_bound = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #reply[2], 2 do
    if #reply[2][i] > field_bound or #reply[2][i + 1] > value_bound then
        out[2] = out[2] + 1
    else
        out[#out + 1] = reply[2][i]
        out[#out + 1] = reply[2][i + 1]
    end
end
return out
"""
"""One step of HSCAN of hash KEYS[1]; ARGV the cursor, the step's COUNT, the longest field and the longest
value sent. Returns the next cursor, how many fields were passed over (either over its bound), then the
others' fields and values."""


@dataclass(frozen=True)
class Fields:
    """What a bounded reading of a hash found: its fields within their bounds and their values, how many it
    passed over as too long, and whether it looked at every field (False: it stopped at its most)."""

    values: dict[bytes, bytes]
    too_long: int
    complete: bool


def hash_within_bounds(
    connection: redis.Redis, key: str, max_field_bytes: int, max_value_bytes: int, most: int
) -> Fields:
    """The fields of hash `key` and their values, each field at most `max_field_bytes` and each value at
    most `max_value_bytes` long (others passed over, never sent), at most `most` of them. A `key` that is
    not a hash raises ResponseError (WRONGTYPE), as HSCAN does."""
    found: dict[bytes, bytes] = {}
    too_long, cursor = 0, b"0"
    while True:
        step: list[bytes | str | int] = [cursor, SCAN_STEP, max_field_bytes, max_value_bytes]
        reply = connection.eval(HASH_SCAN_WITHIN_BOUNDS, 1, key, *step)
        cursor, too_long = reply[0], too_long + int(reply[1])
        for field, value in zip(reply[2::2], reply[3::2], strict=True):
            name = field if isinstance(field, bytes) else str(field).encode()
            if name not in found and len(found) >= most:
                return Fields(found, too_long, False)
            found[name] = value if isinstance(value, bytes) else str(value).encode()
        if int(cursor) == 0:
            return Fields(found, too_long, True)
