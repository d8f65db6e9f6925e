"""Reading the fields of a Redis hash that anyone with Redis access may write, each only when it is within
its bound, in one atomic step: each field's length and its value are taken by one script, so no field
can grow between the two. (Asking the lengths first and the values after left a window: a field swapped
for 400 MB in between was fetched whole.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

READ_WITHIN_BOUNDS = """
local out = {redis.call('EXISTS', KEYS[1])}
for i = 1, #ARGV, 2 do
    local length = redis.call('HSTRLEN', KEYS[1], ARGV[i])
    if length > tonumber(ARGV[i + 1]) then
        out[#out + 1] = length
    else
        out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i])
    end
end
return out
"""
"""KEYS[1] the hash; ARGV pairs of a field and its bound in bytes. Returns whether the hash exists, then
per field its value (nil when absent) or, over its bound, its length (an integer: never the value)."""


@dataclass(frozen=True)
class BoundedFields:
    """What `read_within_bounds` found: the fields within their bounds (absent ones left out), those over
    them with their lengths, and whether the hash exists at all."""

    values: dict[str, bytes]
    over: dict[str, int]
    exists: bool


def read_within_bounds(connection: redis.Redis, key: str, bounds: Mapping[str, int]) -> BoundedFields:
    """The fields of hash `key` that `bounds` names (field -> most bytes it may hold to be read), read
    atomically: a field over its bound is never sent by Redis, whatever another client does meanwhile."""
    reply = connection.eval(READ_WITHIN_BOUNDS, 1, key, *arguments(bounds))
    return bounded_fields(list(bounds), reply)


READ_MANY_WITHIN_BOUNDS = """
local out = {}
for k = 1, #KEYS do
    local kind = redis.call('TYPE', KEYS[k]).ok
    if kind ~= 'hash' and kind ~= 'none' then
        out[#out + 1] = -1
        for i = 1, #ARGV, 2 do
            out[#out + 1] = false
        end
    else
        out[#out + 1] = kind == 'hash' and 1 or 0
        for i = 1, #ARGV, 2 do
            local length = redis.call('HSTRLEN', KEYS[k], ARGV[i])
            if length > tonumber(ARGV[i + 1]) then
                out[#out + 1] = length
            else
                out[#out + 1] = redis.call('HGET', KEYS[k], ARGV[i])
            end
        end
    end
end
return out
"""
"""READ_WITHIN_BOUNDS for each hash of KEYS (the same fields and bounds): per key whether it exists (1, 0;
-1 for a key of another type, its fields then nil), then each field as READ_WITHIN_BOUNDS returns it."""

KEYS_PER_SCRIPT = 1000
"""Hashes read by one run of READ_MANY_WITHIN_BOUNDS (Redis runs nothing else meanwhile)."""


def read_many_within_bounds(
    connection: redis.Redis, keys: Sequence[str | bytes], bounds: Mapping[str, int]
) -> list[BoundedFields | None]:
    """`read_within_bounds` of each of `keys` (the same fields), KEYS_PER_SCRIPT in a round trip: a round
    trip a key made 1000 workers' registrations a second's reading. None for a key that is not a hash."""
    found: list[BoundedFields | None] = []
    stride = 1 + len(bounds)
    for start in range(0, len(keys), KEYS_PER_SCRIPT):
        chunk = keys[start : start + KEYS_PER_SCRIPT]
        reply = connection.eval(READ_MANY_WITHIN_BOUNDS, len(chunk), *chunk, *arguments(bounds))
        for at in range(0, len(reply), stride):
            found.append(None if reply[at] == -1 else bounded_fields(list(bounds), reply[at : at + stride]))
    return found


def arguments(bounds: Mapping[str, int]) -> list[str | int]:
    """The script's ARGV: each field and its bound."""
    found: list[str | int] = []
    for name, bound in bounds.items():
        found += [name, int(bound)]
    return found


def bounded_fields(names: list[str], reply: list[Any]) -> BoundedFields:
    """The script's reply for fields `names`, as BoundedFields."""
    values: dict[str, bytes] = {}
    over: dict[str, int] = {}
    for name, found in zip(names, reply[1:], strict=True):
        if isinstance(found, int):
            over[name] = found
        elif found is not None:
            values[name] = found.encode() if isinstance(found, str) else bytes(found)
    return BoundedFields(values, over, bool(reply[0]))
