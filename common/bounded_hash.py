"""Reading the fields of a Redis hash that anyone with Redis access may write, each only when it is within
its bound, in one atomic step: each field's length and its value are taken by one script, so no field
can grow between the two. (Asking the lengths first and the values after left a window: a field swapped
for 400 MB in between was fetched whole.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    names = list(bounds)
    arguments: list[str | int] = []
    for name in names:
        arguments += [name, int(bounds[name])]
    reply = connection.eval(READ_WITHIN_BOUNDS, 1, key, *arguments)
    values: dict[str, bytes] = {}
    over: dict[str, int] = {}
    for name, found in zip(names, reply[1:], strict=True):
        if isinstance(found, int):
            over[name] = found
        elif found is not None:
            values[name] = found.encode() if isinstance(found, str) else bytes(found)
    return BoundedFields(values, over, bool(reply[0]))
