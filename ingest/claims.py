"""Which ingest node samples a camera: each node claims its cameras in the queues' Redis for
CAMERA_CLAIM_TTL_S (common/defaults.py) and renews the claims while it runs; a node naming a camera
another live node holds refuses to start, and one that finds a claim of its own taken (its claims lapsed
through a long Redis outage, and another node started meanwhile) stops. Two nodes given one camera
(`docker compose up --scale ingest=2`, two hosts with one cameras file) sampled it twice, and their
watermarks for it overwrote each other: the sighting pool grouped past frames one node had not recorded
yet, and their reads were never grouped. A node releases its claims once it has stopped and closed its
frames log; a node that died leaves them to lapse, unless a node started on its host finds its process
verifiably ended (ingest/node_process.py) and takes them over: a node restarted right after a crash was
refused for up to CAMERA_CLAIM_TTL_S, and systemd's default start limit (5 starts in 10 s) then gave the
unit up."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from common import defaults
from common.credentials import mask_url
from common.errors import ConfigError
from common.queues import INGEST_NODES_KEY, beat_member, leave
from ingest.node_process import NodeProcess

log = logging.getLogger(__name__)

CLAIM_PREFIX = "alpr:camera-claim:"
"""Redis key of a camera's claim (its id after the prefix); its value is the claiming node's id."""

NODE_PREFIX = "alpr:ingest-node:"
"""Redis key of a claiming node's process (its node id after the prefix; NodeProcess as JSON), set and
renewed with its claims and lapsing with them: what a node started later on its host reads to tell
whether the holder of its cameras has ended."""

CLAIM_ALL = """
local cameras = #KEYS - 1
local ended = {}
for i = 4, #ARGV do
    ended[ARGV[i]] = true
end
local taken = {}
for i = 1, cameras do
    local owner = redis.call('GET', KEYS[i])
    if owner and owner ~= ARGV[1] and not ended[owner] then
        table.insert(taken, i)
        table.insert(taken, owner)
    end
end
if #taken == 0 then
    for i = 1, cameras do
        redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2])
    end
    redis.call('SET', KEYS[#KEYS], ARGV[3], 'EX', ARGV[2])
end
return taken
"""
"""All of a node's claims at once, or none: the (1-based) index and owner of each held by another node,
but those held by a node named from ARGV[4] on (whose process has ended: taken over). KEYS: the claims, then
the node's process record (NODE_PREFIX), set with them; ARGV: the node's id, the claims' TTL, its process
as JSON, the ids of nodes found ended."""

RELEASE_ALL = """
for i = 1, #KEYS - 1 do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
        redis.call('DEL', KEYS[i])
    end
end
redis.call('DEL', KEYS[#KEYS])
return 0
"""
"""A node's claims deleted, those still its own only, and its process record (the last key)."""


class CameraClaims:
    """One node's claims on its cameras."""

    def __init__(
        self, connection: redis.Redis, node_id: str, camera_ids: list[str], settings_entry: str | None = None
    ) -> None:
        self.connection, self.node_id, self.camera_ids = connection, node_id, camera_ids
        self.settings_entry = settings_entry
        """The node's settings that change its results (common/role_settings.py), published with each claim
        (its heartbeat) in INGEST_NODES_KEY: `alpr status` tells nodes that disagree."""
        self.keys = [CLAIM_PREFIX + camera_id for camera_id in camera_ids]
        self.node_key = NODE_PREFIX + node_id
        process = NodeProcess.this_process()  # None: no other node can tell this one has ended
        self.process_record = process.as_json() if process else "{}"
        self.renewed_at = 0.0

    def _claim(self, ended: tuple[str, ...] = ()) -> list[Any]:
        """Claim every camera, taking over those of the nodes `ended`; which are held by other nodes."""
        self.renewed_at = time.monotonic()  # (tried again in CAMERA_CLAIM_RENEW_S when Redis fails it)
        keys = [*self.keys, self.node_key]
        taken = self.connection.eval(CLAIM_ALL, len(keys), *keys, self.node_id, defaults.CAMERA_CLAIM_TTL_S,
                                     self.process_record, *ended)  # fmt: skip
        if not taken:
            beat_member(self.connection, INGEST_NODES_KEY, self.node_id, defaults.CAMERA_CLAIM_TTL_S,
                        self.settings_entry)  # fmt: skip
        return list(taken)  # type: ignore[arg-type]

    def _ended_holders(self, taken: list[Any]) -> dict[str, int]:
        """Of the nodes holding `taken`, those of this host whose process has verifiably ended (a crash, a
        kill: their claims not released), with its pid; empty unless every holder has."""
        holders = {owner.decode(errors="replace") if isinstance(owner, bytes) else str(owner) for owner in taken[1::2]}
        ended = {}
        for holder in sorted(holders):
            process = NodeProcess.from_json(self.connection.get(NODE_PREFIX + holder))
            if process is None or not process.ended():
                return {}
            ended[holder] = process.pid
        return ended

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
            if taken and (ended := self._ended_holders(taken)):
                taken = self._claim(tuple(ended))  # (a node started meanwhile took them first: refused as ever)
                for holder, pid in ended.items():
                    if not taken:
                        log.warning("ingest node %r, of this host, ended (its process, pid %d, is gone) holding"
                                    " cameras of this node: taken over", holder, pid)  # fmt: skip
        except redis.RedisError as error:
            log.warning("cameras not claimed yet (%s): claimed once Redis answers", mask_url(str(error)))
            return
        if taken:
            raise ConfigError(
                f"{self._taken(taken)}: one camera is sampled by one node (a node that stopped or died gives its"
                f" cameras up within {defaults.CAMERA_CLAIM_TTL_S} s); give each node its own cameras"
            )

    def renew(self) -> str | None:
        """Renew the claims when CAMERA_CLAIM_RENEW_S has passed: None while they are this node's (or Redis
        cannot say now), else which camera another node has claimed since."""
        if not self.keys or time.monotonic() - self.renewed_at < defaults.CAMERA_CLAIM_RENEW_S:
            return None
        try:
            taken = self._claim()
        except redis.RedisError:  # tried again at the next renewal; the outage is logged by the node
            return None
        return self._taken(taken) if taken else None

    def release(self) -> None:
        """Give the cameras up (a node that cannot reach Redis leaves its claims to lapse)."""
        if self.keys:
            keys = [*self.keys, self.node_key]
            with contextlib.suppress(redis.RedisError):
                self.connection.eval(RELEASE_ALL, len(keys), *keys, self.node_id)
                leave(self.connection, INGEST_NODES_KEY, self.node_id)
