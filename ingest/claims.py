"""Which ingest node samples a camera: each node claims each of its cameras apart in the queues' Redis for
CAMERA_CLAIM_TTL_S (common/defaults.py), samples those it wins, and at every renewal (CAMERA_CLAIM_RENEW_S)
renews them and tries the others again: a node given a camera another live node holds stands by for it and
takes it over within one renewal of that claim lapsing (its holder stopped, died or froze). Two nodes given
one camera (`docker compose up --scale ingest=2`, two hosts with one cameras file) sampled it twice, and
their watermarks for it overwrote each other; claimed all or nothing, nodes with overlapping cameras files
left the cameras only the loser named dark for as long as the winner lived, and a standby node took over
only by crash-looping (a review: 31-47 s without frames per camera, 90 s under Docker's restart backoff).

A node that finds a camera it sampled claimed by another (its claims lapsed through a long Redis outage or
a freeze, and another node took it) stops sampling that camera alone (ingest/node.py: IngestNode.lose) and
stands by for it as for any camera another node holds: it stopped whole, its other cameras dark until an
operator restarted it. A node releases its claims once it has stopped and closed its frames log; a node
that died leaves them to lapse, unless a node started on its host finds its process verifiably ended
(ingest/node_process.py) and takes them over at once.

Beside each claim, its holder's record (HOLDER_PREFIX: the node, its settings for the camera as
ingest/camera_fingerprint.py writes them, its last renewal, whether it gave the camera up), kept
HOLDER_TTL_S: a node taking a camera over names its previous holder and tells settings that differ; and
per camera the last node that wanted it (WANTED_PREFIX): `alpr status` lists cameras no node claims."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from common import defaults
from common.credentials import mask_url
from common.queues import INGEST_NODES_KEY, beat_member, leave
from ingest.camera_fingerprint import differing
from ingest.node_process import NodeProcess

log = logging.getLogger(__name__)

CLAIM_PREFIX = "alpr:camera-claim:"
"""Redis key of a camera's claim (its id after the prefix); its value is the claiming node's id."""

NODE_PREFIX = "alpr:ingest-node:"
"""Redis key of a claiming node's process (its node id after the prefix; NodeProcess as JSON), set and
renewed with its claims and lapsing with them: what a node started later on its host reads to tell
whether the holder of its cameras has ended."""

HOLDER_PREFIX = "alpr:camera-holder:"
"""Redis hash of a camera's last holder: `node`, `settings` (its fingerprint), `renewed` (its last renewal,
epoch seconds by its clock) and `released` (1: it gave the camera up)."""

WANTED_PREFIX = "alpr:camera-wanted:"
"""Redis key per camera a node's cameras file names (enabled): `node|epoch seconds` of the last node that
tried to claim it; kept HOLDER_TTL_S."""

HOLDER_TTL_S = 86400
"""How long a camera's holder record and wanted mark outlive their last write: a camera named in no
cameras file for a day is forgotten by `alpr status`."""

LAPSE_SLACK_S = 0.2
"""How long after a claim held elsewhere should lapse a standby node tries it again."""

CLAIM_EACH = """
local n = (#KEYS - 1) / 3
local node, ttl, holder_ttl, now = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local ended = {}
for i = 6 + n, #ARGV do
    ended[ARGV[i]] = true
end
local result, won = {}, false
for i = 1, n do
    local owner = redis.call('GET', KEYS[i])
    local before = redis.call('HMGET', KEYS[n + i], 'node', 'settings', 'renewed', 'released')
    redis.call('SET', KEYS[2 * n + i], node .. '|' .. now, 'EX', holder_ttl)
    local state, lapses = 'held', 0
    if not owner or owner == node or ended[owner] then
        state = (owner == node) and 'renewed' or 'claimed'
        redis.call('SET', KEYS[i], node, 'EX', ttl)
        redis.call('HSET', KEYS[n + i], 'node', node, 'settings', ARGV[5 + i], 'renewed', now, 'released', '0')
        redis.call('EXPIRE', KEYS[n + i], holder_ttl)
        won = true
    else
        lapses = redis.call('PTTL', KEYS[i])
    end
    table.insert(result, {state, owner or '', before[1] or '', before[2] or '', before[3] or '', before[4] or '',
                          lapses})
end
if won then
    redis.call('SET', KEYS[#KEYS], ARGV[3], 'EX', ttl)
end
return result
"""
"""Each camera's claim apart: set (or renewed) where it is free, this node's, or held by a node named from
ARGV[6 + n] on (whose process has ended: taken over); per camera its state (claimed, renewed or held), its
owner before, its holder record before, and for one held the milliseconds until that claim lapses. KEYS: the
claims, their holder records, their wanted marks, the node's process record (NODE_PREFIX, set with any
claim); ARGV: the node's id, the claims' TTL, its process as JSON, HOLDER_TTL_S, now (epoch seconds), each
camera's settings fingerprint, the ids of nodes ended."""

RELEASE_ALL = """
local n = (#KEYS - 1) / 2
for i = 1, n do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
        redis.call('DEL', KEYS[i])
        redis.call('HSET', KEYS[n + i], 'released', '1')
    end
end
redis.call('DEL', KEYS[#KEYS])
return 0
"""
"""A node's claims deleted, those still its own only (their holder records marked released), and its
process record (the last key)."""


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Claimed:
    """A camera this node has just claimed, and who held it before (`previous`; empty: none known)."""

    camera: str
    previous: str = ""
    taken_over: bool = False
    """The previous holder never gave it up: it died, froze or lost Redis (its claim lapsed or it ended)."""
    previous_renewed_s: float = 0.0
    """The previous holder's last renewal (epoch seconds; 0: unknown)."""
    settings_differ: list[str] = field(default_factory=list)
    """The settings (ingest/camera_fingerprint.COMPARED) the previous holder gave it otherwise."""


@dataclass
class ClaimRound:
    """What one round of claims found: cameras newly this node's, those other nodes hold (camera -> node),
    and those this node sampled that another node holds now (its claims lapsed)."""

    won: list[Claimed] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)


class CameraClaims:
    """One node's claims on its cameras; `held`: those it holds (or, Redis away at its start, presumes)."""

    def __init__(
        self, connection: redis.Redis, node_id: str, camera_ids: list[str], settings_entry: str | None = None,
        fingerprints: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.connection, self.node_id, self.camera_ids = connection, node_id, camera_ids
        self.settings_entry = settings_entry
        """The node's settings that change its results (common/role_settings.py), published with each claim
        (its heartbeat) in INGEST_NODES_KEY: `alpr status` tells nodes that disagree."""
        self.fingerprints = fingerprints or {}
        n = len(camera_ids)
        self.keys = [CLAIM_PREFIX + c for c in camera_ids] + [HOLDER_PREFIX + c for c in camera_ids]
        self.keys += [WANTED_PREFIX + c for c in camera_ids]
        self.node_key = NODE_PREFIX + node_id
        process = NodeProcess.this_process()  # None: no other node can tell this one has ended
        self.process_record = process.as_json() if process else "{}"
        self.renewed_at = 0.0
        self.answered_at = 0.0  # monotonic: the start of the last round Redis answered (0: none yet)
        self.next_round_at = 0.0  # monotonic: the next renewal, or sooner where a claim held elsewhere lapses
        self.held: set[str] = set()
        self.told: dict[str, str] = {}  # camera -> the other node it was said to be held by (said once)
        self.count = n

    @property
    def all_held(self) -> bool:
        return len(self.held) == self.count

    def _eval(self, ended: tuple[str, ...]) -> list[Any]:
        args = [self.node_id, defaults.CAMERA_CLAIM_TTL_S, self.process_record, HOLDER_TTL_S, f"{time.time():.3f}"]
        args += [self.fingerprints.get(c, "") for c in self.camera_ids]
        keys = [*self.keys, self.node_key]
        return list(self.connection.eval(CLAIM_EACH, len(keys), *keys, *args, *ended))  # type: ignore[arg-type]

    def _round(self) -> ClaimRound:
        """One round: every camera claimed or renewed where it may be, those of holders of this host found
        ended taken over (ingest/node_process.py); raises redis.RedisError."""
        self.renewed_at = time.monotonic()  # (tried again in CAMERA_CLAIM_RENEW_S when Redis fails it)
        self.next_round_at = self.renewed_at + defaults.CAMERA_CLAIM_RENEW_S
        rows = [[text(v) for v in row] for row in self._eval(())]
        holders = {row[1] for row in rows if row[0] == "held"}
        if ended := self._ended(holders):
            rows = [[text(v) for v in row] for row in self._eval(tuple(ended))]
        beat_member(self.connection, INGEST_NODES_KEY, self.node_id, defaults.CAMERA_CLAIM_TTL_S, self.settings_entry)
        found, differ_held = ClaimRound(), {}
        for camera, (state, owner, before, settings, renewed, released, lapses) in zip(self.camera_ids, rows,
                                                                                     strict=True):  # fmt: skip
            if state == "held":
                found.held[camera] = owner
                differ_held[camera] = differing(self.fingerprints.get(camera, ""), settings)
                if lapses.isdigit():  # tried again just after the holder's claim lapses, not up to a renewal later
                    self.next_round_at = min(self.next_round_at, time.monotonic() + int(lapses) / 1000 + LAPSE_SLACK_S)
                if camera in self.held:  # said by the node (IngestNode.lose), not again as held
                    found.lost[camera] = owner
                    self.held.discard(camera)
                    self.told[camera] = owner
                continue
            if camera in self.held:
                continue
            self.held.add(camera)
            self.told.pop(camera, None)
            if before in ("", self.node_id):
                found.won.append(Claimed(camera))
                continue
            renewed_s = float(renewed) if renewed.replace(".", "", 1).isdigit() else 0.0
            differ = differing(self.fingerprints.get(camera, ""), settings)
            found.won.append(Claimed(camera, before, released != "1", renewed_s, differ))
            self._tell_claimed(found.won[-1], ended.get(owner))
        self._tell_held(found.held, differ_held)
        self.answered_at = self.renewed_at  # (once `held` tells the cameras lost: IngestNode.claim_unsure)
        return found

    def _ended(self, holders: set[str]) -> dict[str, int]:
        """Of `holders`, those of this host whose process has verifiably ended (a crash, a kill: their claims
        not released), with its pid."""
        ended = {}
        for holder in sorted(holders):
            process = NodeProcess.from_json(self.connection.get(NODE_PREFIX + holder))
            if process is not None and process.ended():
                ended[holder] = process.pid
        return ended

    def _tell_claimed(self, claimed: Claimed, ended_pid: int | None) -> None:
        camera, previous = claimed.camera, claimed.previous
        if ended_pid is not None:
            log.warning("camera %s: taken over from ingest node %r, of this host, which ended (its process, pid"
                        " %d, is gone) without giving it up", camera, previous, ended_pid)  # fmt: skip
        elif claimed.taken_over:
            log.warning("camera %s: taken over from ingest node %r, which stopped renewing its claim %.0f s ago"
                        " without giving it up (it died, froze or lost Redis)", camera, previous,
                        max(0.0, time.time() - claimed.previous_renewed_s))  # fmt: skip
        else:
            log.info("camera %s: claimed (ingest node %r, which sampled it before, gave it up)", camera, previous)
        if claimed.settings_differ:
            log.warning("camera %s: this node's settings for it differ from those of ingest node %r, which sampled"
                        " it before: %s (one camera id, other settings: check the nodes' cameras files)", camera,
                        previous, ", ".join(claimed.settings_differ))  # fmt: skip

    def _tell_held(self, held: dict[str, str], differ: dict[str, list[str]]) -> None:
        """One WARNING per change: the cameras other nodes hold, by node id, that this node stands by for, and
        the settings the holder gives one otherwise."""
        new = {camera: owner for camera, owner in held.items() if self.told.get(camera) != owner}
        self.told = {camera: owner for camera, owner in held.items()}
        if not new:
            return
        whom = ", ".join(f"{camera} (ingest node {owner!r}" + (f"; its settings differ: {', '.join(differ[camera])}"
                         if differ.get(camera) else "") + ")" for camera, owner in sorted(new.items()))  # fmt: skip
        scope = "every camera of this node is" if not self.held else "cameras"
        log.warning("%s held by another live node: %s; this node stands by for %s and takes %s over within"
                    " %.0f s of its holder stopping or dying", scope, whom, *(("them", "each") if len(new) > 1
                    else ("it", "it")), defaults.CAMERA_CLAIM_TTL_S + defaults.CAMERA_CLAIM_RENEW_S)  # fmt: skip

    def unconfirmed(self) -> bool:
        """No round has answered for CAMERA_CLAIM_TTL_S (this node frozen, or its renewals stalled): its
        claims may have lapsed and another node taken a camera. False before any round has answered."""
        return self.answered_at > 0 and time.monotonic() - self.answered_at > defaults.CAMERA_CLAIM_TTL_S

    def claim(self) -> ClaimRound | None:
        """The first round: the cameras this node wins, and those other nodes hold (it stands by for them).
        With Redis away (the node waits it out), None: every camera is presumed this node's until the first
        renewal Redis answers, which finds those another node holds lost."""
        if not self.camera_ids:
            return ClaimRound()
        try:
            return self._round()
        except redis.RedisError as error:
            log.warning("cameras not claimed yet (%s): claimed once Redis answers", mask_url(str(error)))
            self.held = set(self.camera_ids)
            return None

    def renew(self) -> ClaimRound | None:
        """Once CAMERA_CLAIM_RENEW_S has passed, or a claim held elsewhere has just lapsed: renew the claims
        and try the cameras not held again; None when not due or Redis cannot say now."""
        if not self.camera_ids or time.monotonic() < self.next_round_at:
            return None
        try:
            return self._round()
        except redis.RedisError:  # tried again at the next renewal; the outage is logged by the node
            return None

    def release(self) -> None:
        """Give the cameras up (a node that cannot reach Redis leaves its claims to lapse)."""
        if self.camera_ids:
            n = len(self.camera_ids)
            keys = [*self.keys[: 2 * n], self.node_key]
            with contextlib.suppress(redis.RedisError):
                self.connection.eval(RELEASE_ALL, len(keys), *keys, self.node_id)
                leave(self.connection, INGEST_NODES_KEY, self.node_id)
