"""Which ingest node samples a camera: each node claims its cameras in the queues' Redis for CLAIM_TTL_S
and renews the claims while it runs; a node naming a camera another live node holds refuses to start,
and one that finds a claim of its own taken (its claims lapsed through a long Redis outage, and another
node started meanwhile) stops. Two nodes given one camera (`docker compose up --scale ingest=2`, two
hosts with one cameras file) sampled it twice, and their watermarks for it overwrote each other: the
sighting pool grouped past frames one node had not recorded yet, and their reads were never grouped.
A node releases its claims once it has stopped and closed its frames log; a node that died leaves them
to lapse."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from common.credentials import mask_url
from common.errors import ConfigError

log = logging.getLogger(__name__)

CLAIM_PREFIX = "alpr:camera-claim:"
"""Redis key of a camera's claim (its id after the prefix); its value is the claiming node's id."""

CLAIM_TTL_S = 30
"""How long a claim outlives its last renewal: a node that died holds its cameras this long at most."""

RENEW_S = 10.0
"""How often a running node renews its claims."""

CLAIM_ALL = """
local taken = {}
for i, key in ipairs(KEYS) do
    local owner = redis.call('GET', key)
    if owner and owner ~= ARGV[1] then
        table.insert(taken, i)
        table.insert(taken, owner)
    end
end
if #taken == 0 then
    for _, key in ipairs(KEYS) do
        redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
    end
end
return taken
"""
"""All of a node's claims at once, or none: the (1-based) index and owner of each held by another node."""

RELEASE_ALL = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
    end
end
return 0
"""
"""A node's claims deleted, those still its own only."""


class CameraClaims:
    """One node's claims on its cameras."""

    def __init__(self, connection: redis.Redis, node_id: str, camera_ids: list[str]) -> None:
        self.connection, self.node_id, self.camera_ids = connection, node_id, camera_ids
        self.keys = [CLAIM_PREFIX + camera_id for camera_id in camera_ids]
        self.renewed_at = 0.0

    def _claim(self) -> list[Any]:
        self.renewed_at = time.monotonic()  # (tried again in RENEW_S when Redis fails it)
        taken = self.connection.eval(CLAIM_ALL, len(self.keys), *self.keys, self.node_id, CLAIM_TTL_S)
        return list(taken)  # type: ignore[arg-type]

    def _taken(self, taken: list[Any]) -> str:
        """Which camera another node holds, in words."""
        camera, owner = self.camera_ids[int(taken[0]) - 1], taken[1]
        owner = owner.decode(errors="replace") if isinstance(owner, bytes) else str(owner)
        return f"camera {camera} is sampled by ingest node {owner!r}"

    def claim(self) -> None:
        """Claim every camera, or raise ConfigError naming one another live node holds. With Redis away
        (the node waits it out), claimed at the first renewal it answers."""
        if not self.keys:
            return
        try:
            taken = self._claim()
        except redis.RedisError as error:
            log.warning("cameras not claimed yet (%s): claimed once Redis answers", mask_url(str(error)))
            return
        if taken:
            raise ConfigError(
                f"{self._taken(taken)}: one camera is sampled by one node (a node that stopped or died gives its"
                f" cameras up within {CLAIM_TTL_S} s); give each node its own cameras"
            )

    def renew(self) -> str | None:
        """Renew the claims when RENEW_S has passed: None while they are this node's (or Redis cannot say
        now), else which camera another node has claimed since."""
        if not self.keys or time.monotonic() - self.renewed_at < RENEW_S:
            return None
        try:
            taken = self._claim()
        except redis.RedisError:  # tried again at the next renewal; the outage is logged by the node
            return None
        return self._taken(taken) if taken else None

    def release(self) -> None:
        """Give the cameras up (a node that cannot reach Redis leaves its claims to lapse)."""
        if self.keys:
            with contextlib.suppress(redis.RedisError):
                self.connection.eval(RELEASE_ALL, len(self.keys), *self.keys, self.node_id)
