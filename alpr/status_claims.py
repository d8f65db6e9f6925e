"""The camera claims as `alpr status` reads them: a camera counts as held only by a claim a node could have
written (ingest/claims.py), a string within the claims' bound that lapses within CAMERA_CLAIM_TTL_S. Any
client of the queues' Redis may write a claim key: one with no expiry (`SET alpr:camera-claim:cam-a
ghost`), one past the claims' TTL, of another type or past their bound is no node's, and ingest takes it at
its next round (ingest/claim_scripts.py); status counted the camera as held by its mere existence (EXISTS),
so a camera sampled by none was listed nowhere, and one whose node had died showed `connected` for ever.
Each claim is read in Redis, its owner sent only for one that is no node's, cut short."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from common import defaults
from common.credentials import escape_controls

CLAIMS_READ = """
local out = {}
local lapse_ms, bound, preview = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key)['ok']
    local pttl = redis.call('PTTL', key)
    local length, owner = 0, ''
    if kind == 'string' then
        length = redis.call('STRLEN', key)
        if length > bound or pttl <= 0 or pttl > lapse_ms then
            owner = redis.call('GETRANGE', key, 0, preview - 1)
        end
    end
    out[i] = {kind, pttl, length, owner}
end
return out
"""
"""Per claim key of KEYS: its type, its PTTL, its length (a string's) and, where it is no node's claim
(ARGV: the claims' TTL in milliseconds, their bound in bytes), its first ARGV[3] bytes: its owner."""

STEP = 1000
"""Claims read per call of the script."""

OWNER_SHOWN_BYTES = 100
"""Bytes of an owner that is no node's sent back, to name it."""

TAKEN = "no node's claim; a node naming the camera takes it at its next round"
"""What a claim that is no node's means, as told."""


@dataclass(frozen=True)
class Claim:
    """A camera's claim key as read: its type ('none': no claim), milliseconds until it lapses (PTTL: -1
    with no expiry, -2 with no key), its length and, for one that is no node's, the start of its owner."""

    kind: str
    lapses_ms: int
    length: int
    owner: bytes

    @property
    def held(self) -> bool:
        """Whether a node could have written it (ingest/claim_scripts.py takes any other at its next round)."""
        from ingest.claim_scripts import FIELD_BOUND

        in_ttl = 0 < self.lapses_ms <= defaults.CAMERA_CLAIM_TTL_S * 1000
        return self.kind == "string" and self.length <= FIELD_BOUND and in_ttl

    def words(self) -> str | None:
        """Why the camera is not held although its claim key is there, in words; None where it is held or
        there is none."""
        if self.kind == "none" or self.held:
            return None
        if self.kind != "string":
            return f"its claim key holds a {self.kind}: {TAKEN}"
        owner = escape_controls(self.owner.decode(errors="replace"))
        by = f"claimed by '{owner}'" + ("..." if self.length > len(self.owner) else "")
        if self.lapses_ms == -1:
            return f"{by} with no expiry: {TAKEN}"
        if self.lapses_ms > defaults.CAMERA_CLAIM_TTL_S * 1000:
            return (f"{by} for {self.lapses_ms / 1000:.0f} s (a node's claim lapses within"
                    f" {defaults.CAMERA_CLAIM_TTL_S} s): {TAKEN}")  # fmt: skip
        if self.lapses_ms > 0:
            return f"{by}, {self.length} bytes long (a node's id is far shorter): {TAKEN}"
        return None  # lapsing as it was read: as good as none


def read_claims(connection: redis.Redis, claim_keys: Sequence[bytes]) -> list[Claim]:
    """The claims at `claim_keys`, in their order, STEP a call."""
    from ingest.claim_scripts import FIELD_BOUND

    claims: list[Claim] = []
    lapse_ms = defaults.CAMERA_CLAIM_TTL_S * 1000
    for first in range(0, len(claim_keys), STEP):
        keys = claim_keys[first : first + STEP]
        reply = connection.eval(CLAIMS_READ, len(keys), *keys, lapse_ms, FIELD_BOUND, OWNER_SHOWN_BYTES)
        for kind, lapses_ms, length, owner in reply:
            text = kind.decode() if isinstance(kind, bytes) else str(kind)
            claims.append(Claim(text, int(lapses_ms), int(length), owner if isinstance(owner, bytes) else b""))
    return claims
