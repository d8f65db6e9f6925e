"""The Lua scripts of the camera claims (ingest/claims.py), each one atomic step in the queues' Redis, and
what a round of claims returns per camera. Anyone who can reach that Redis can write the claims' keys (a
review): a key of another type than the claims write is treated as free and replaced, a claim no node
could have written (no expiry, or one past the claims' TTL; past FIELD_BOUND) is taken, and no field past
its bound is sent: a wrong-typed key switched the claims off on every node, a claim with no expiry kept a
camera dark for ever, and a 200 MB holder field was fetched with every round."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FIELD_BOUND = 4096
"""The most bytes of a claim or of a holder record's field the round of claims reads: past it Redis sends a
field's length instead (a forged 200 MB `settings` field was sent with every round: 728 MB at its peak)."""

NODE_RECORD_BOUND = 1024
"""The most bytes of a node record (NODE_PREFIX) read: a larger one is none of a node's."""

CLAIM_EACH = """
local n = (#KEYS - 1) / 3
local node, ttl, holder_ttl, now, bound = ARGV[1], tonumber(ARGV[2]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local ended = {}
for i = 7 + n, #ARGV do
    ended[ARGV[i]] = true
end
local function kind(key)
    return redis.call('TYPE', key)['ok']
end
local function field(key, name)
    local length = redis.call('HSTRLEN', key, name)
    if length > bound then
        return length
    end
    return redis.call('HGET', key, name) or ''
end
local result, won = {}, false
for i = 1, n do
    local claim, holder, owner, lapses, note = KEYS[i], KEYS[n + i], false, 0, ''
    local claim_kind = kind(claim)
    if claim_kind == 'string' then
        local length = redis.call('STRLEN', claim)
        lapses = redis.call('PTTL', claim)
        if length > bound then
            note = 'claim-size:' .. length
        else
            owner = redis.call('GET', claim)
            if lapses < 0 or lapses > ttl * 1000 then
                note = 'claim-ttl:' .. lapses
            end
        end
    elseif claim_kind ~= 'none' then
        note = 'claim-kind:' .. claim_kind
    end
    local before = {'', '', '', ''}
    local holder_kind = kind(holder)
    if holder_kind == 'hash' then
        before = {field(holder, 'node'), field(holder, 'settings'), field(holder, 'renewed'), field(holder, 'released')}
    elseif holder_kind ~= 'none' then
        redis.call('DEL', holder)
        note = note .. ' holder-kind:' .. holder_kind
    end
    redis.call('SET', KEYS[2 * n + i], node .. '|' .. now, 'EX', holder_ttl)
    local state = 'held'
    if not owner or owner == node or ended[owner] or note:sub(1, 6) == 'claim-' then
        state = (owner == node and note == '') and 'renewed' or 'claimed'
        redis.call('SET', claim, node, 'EX', ttl)
        redis.call('HSET', holder, 'node', node, 'settings', ARGV[6 + i], 'renewed', now, 'released', '0')
        redis.call('EXPIRE', holder, holder_ttl)
        won = true
    end
    table.insert(result, {state, owner or '', before[1], before[2], before[3], before[4], lapses, note})
end
if won then
    redis.call('SET', KEYS[#KEYS], ARGV[3], 'EX', ttl)
end
return result
"""
"""Each camera's claim apart: set (or renewed) where it is free, this node's, held by a node named from
ARGV[7 + n] on (whose process has ended: taken over), or no node's (a claim of another type, past
FIELD_BOUND, with no expiry or one past the claims' TTL: a node's claim lapses within it); a holder record
of another type is deleted. Per camera its state (claimed, renewed or held), its owner before, its holder
record before (a field past FIELD_BOUND: its length), the milliseconds until its claim lapses, and what
was not a node's (`note`). KEYS: the claims, their holder records, their wanted marks, the node's process
record (NODE_PREFIX, set with any claim); ARGV: the node's id, the claims' TTL, its process as JSON,
HOLDER_TTL_S, now (epoch seconds), FIELD_BOUND, each camera's settings fingerprint, the ids of nodes
ended."""

RELEASE_ALL = """
local n = (#KEYS - 1) / 2
for i = 1, n do
    if redis.call('TYPE', KEYS[i])['ok'] == 'string' and redis.call('GET', KEYS[i]) == ARGV[1] then
        redis.call('DEL', KEYS[i])
        if redis.call('TYPE', KEYS[n + i])['ok'] == 'hash' then
            redis.call('HSET', KEYS[n + i], 'released', '1')
        end
    end
end
redis.call('DEL', KEYS[#KEYS])
return 0
"""
"""A node's claims deleted, those still its own only (their holder records marked released), and its
process record (the last key)."""

NODE_RECORD = """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' or redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then
    return false
end
return redis.call('GET', KEYS[1])
"""
"""A node record (KEYS[1]) of at most ARGV[1] bytes; nil where there is none, or another type, or larger."""


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def epoch_seconds(value: str) -> float:
    """A time a holder record gives (epoch seconds), or 0.0 where it is none (`float` took '²', which
    `str.isdigit` passed, and raised)."""
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


@dataclass(frozen=True)
class ClaimRow:
    """One camera's row of CLAIM_EACH: the holder record's fields are empty where absent or past FIELD_BOUND."""

    state: str
    owner: str
    before: str
    settings: str
    renewed: str
    released: str
    lapses_ms: int
    note: str

    @classmethod
    def parse(cls, row: list[Any]) -> ClaimRow:
        state, owner, *fields, lapses, note = row
        node, settings, renewed, released = (text(v) if isinstance(v, bytes | str) else "" for v in fields)
        return cls(text(state), text(owner), node, settings, renewed, released,
                   lapses if isinstance(lapses, int) else -1, text(note))  # fmt: skip
