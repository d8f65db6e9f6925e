"""Which ingest node samples a camera: each node claims each of its cameras apart in the queues' Redis for
CAMERA_CLAIM_TTL_S (common/defaults_ingest.py), samples those it wins, and at every renewal (CAMERA_CLAIM_RENEW_S)
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
per camera the last node that wanted it (WANTED_PREFIX): `alpr status` lists cameras no node claims.

Whoever reaches the queues' Redis may write these keys: the scripts (ingest/claim_scripts.py) replace a key
of another type, take a claim no node could have written, and send no field past its bound; a round Redis
refuses with an error (not an outage) takes no camera and is said once (ERROR), where every camera was
presumed held on every node; a record that cannot be read is none."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import redis

from common import defaults
from common.credentials import mask_url
from common.queues import INGEST_NODES_KEY, beat_member, leave
from ingest.camera_fingerprint import differing
from ingest.claim_scripts import (
    CLAIM_EACH,
    FIELD_BOUND,
    NODE_RECORD,
    NODE_RECORD_BOUND,
    RELEASE_ALL,
    ClaimRow,
    epoch_seconds,
)
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

HURRY_GAP_S = 1.0
"""The least time between the starts of two rounds a camera in doubt asks for (CameraClaims.hurry)."""


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
    and those this node sampled that another node holds now (its claims lapsed, or were `overwritten`
    while they had not: another node judged this one ended, or a client of Redis wrote them); `differ_held`:
    of the cameras other nodes hold, the settings their holder gives them otherwise (its cameras file and
    this node's disagree while both live)."""

    won: list[Claimed] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    differ_held: dict[str, list[str]] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)
    overwritten: set[str] = field(default_factory=set)


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
        self.alive_at = 0.0  # monotonic: the start of the last round Redis answered, or refused with an error
        self.next_round_at = 0.0  # monotonic: the next renewal, or sooner where a claim held elsewhere lapses
        self.held: set[str] = set()
        self.told: dict[str, str] = {}  # camera -> the other node it was said to be held by (said once)
        self.lapse_at: dict[str, float] = {}  # camera held elsewhere -> when that claim lapses (monotonic)
        self.refused = False  # the last round failed with an error Redis answered (said once: ERROR)
        self.beat_failed = False  # the last heartbeat failed (said once)
        self.count = n

    @property
    def all_held(self) -> bool:
        return len(self.held) == self.count

    def _eval(self, ended: tuple[str, ...]) -> list[ClaimRow]:
        args = [self.node_id, defaults.CAMERA_CLAIM_TTL_S, self.process_record, HOLDER_TTL_S, f"{time.time():.3f}"]
        args.append(FIELD_BOUND)
        args += [self.fingerprints.get(c, "") for c in self.camera_ids]
        keys = [*self.keys, self.node_key]
        rows = self.connection.eval(CLAIM_EACH, len(keys), *keys, *args, *ended)  # type: ignore[arg-type]
        return [ClaimRow.parse(row) for row in rows]  # type: ignore[union-attr]

    def _round(self) -> ClaimRound:
        """One round: every camera claimed or renewed where it may be, those of holders of this host found
        ended taken over (ingest/node_process.py); raises redis.RedisError."""
        self.renewed_at = time.monotonic()  # (tried again in CAMERA_CLAIM_RENEW_S when Redis fails it)
        self.next_round_at = self.renewed_at + defaults.CAMERA_CLAIM_RENEW_S
        # renewed within their TTL: this node's claims cannot have lapsed since
        unlapsed = self.answered_at > 0 and self.renewed_at - self.answered_at < defaults.CAMERA_CLAIM_TTL_S
        rows = self._eval(())
        if ended := self._ended({row.owner for row in rows if row.state == "held"}):
            rows = self._eval(tuple(ended))
        self._beat()
        found = ClaimRound()
        for camera, row in zip(self.camera_ids, rows, strict=True):
            self._tell_foreign(camera, row)
            if row.state == "held":
                found.held[camera] = row.owner
                found.differ_held[camera] = differing(self.fingerprints.get(camera, ""), row.settings)
                if row.lapses_ms >= 0:  # tried again just after the holder's claim lapses, not up to a renewal later
                    self.lapse_at[camera] = time.monotonic() + row.lapses_ms / 1000
                    self.next_round_at = min(self.next_round_at, self.lapse_at[camera] + LAPSE_SLACK_S)
                if camera in self.held:  # said by the node (IngestNode.lose), not again as held
                    found.lost[camera] = row.owner
                    if unlapsed:
                        found.overwritten.add(camera)
                    self.held.discard(camera)
                    self.told[camera] = row.owner
                continue
            if camera in self.held:
                continue
            self.held.add(camera)
            found.won.append(self._won(camera, row))
            self._tell_claimed(found.won[-1], ended.get(row.owner))
        self._tell_held(found.held, found.differ_held)
        self.answered_at = self.alive_at = self.renewed_at  # (once `held` tells the cameras lost: claim_unsure)
        if self.refused:
            log.info("cameras claimed and renewed again: Redis answers the round of claims")
            self.refused = False
        return found

    def _won(self, camera: str, row: ClaimRow) -> Claimed:
        """A camera just claimed, and from whom: its holder record's node, or, where that names another (a
        node of an earlier version writes none), the node whose claim this one replaced or saw hold it at
        the round before (taken over where that claim lapsed: its last renewal one TTL before)."""
        seen, lapse_at = self.told.pop(camera, None), self.lapse_at.pop(camera, None)
        replaced = row.owner if not row.note.startswith("claim-") else ""  # ended; none of a node's: no holder
        previous = replaced or seen or ""
        if previous not in ("", self.node_id, row.before):
            now = time.monotonic()
            lapsed = lapse_at is not None and now >= lapse_at - LAPSE_SLACK_S
            renewed_s = time.time() - (now - lapse_at) - defaults.CAMERA_CLAIM_TTL_S if lapse_at and lapsed else 0.0
            return Claimed(camera, previous, bool(replaced) or lapsed, max(0.0, renewed_s))
        if row.before in ("", self.node_id):
            return Claimed(camera)
        differ = differing(self.fingerprints.get(camera, ""), row.settings)
        return Claimed(camera, row.before, row.released != "1", epoch_seconds(row.renewed), differ)

    def _beat(self) -> None:
        """The node's heartbeat (INGEST_NODES_KEY), apart from its claims: a failed beat stopped the round."""
        try:
            beat_member(self.connection, INGEST_NODES_KEY, self.node_id, defaults.CAMERA_CLAIM_TTL_S,
                        self.settings_entry)  # fmt: skip
        except redis.RedisError as error:
            if not self.beat_failed:
                log.warning("this node's heartbeat (%s) not written: %s; its claims go on", INGEST_NODES_KEY,
                            mask_url(str(error)))  # fmt: skip
            self.beat_failed = True
        else:
            self.beat_failed = False

    def _ended(self, holders: set[str]) -> dict[str, int]:
        """Of `holders`, those of this host whose process has verifiably ended (a crash, a kill: their claims
        not released), with its pid. A node record past NODE_RECORD_BOUND is none of a node's: not read."""
        ended = {}
        for holder in sorted(holders):
            record = self.connection.eval(NODE_RECORD, 1, NODE_PREFIX + holder, NODE_RECORD_BOUND)
            process = NodeProcess.from_json(record)  # type: ignore[arg-type]
            if process is not None and process.ended():
                ended[holder] = process.pid
        return ended

    def _tell_foreign(self, camera: str, row: ClaimRow) -> None:
        """A WARNING per key of the camera's that no node wrote (CLAIM_EACH's note), naming it."""
        for note in row.note.split():
            what, _, value = note.partition(":")
            claim, holder = CLAIM_PREFIX + camera, HOLDER_PREFIX + camera
            if what == "claim-kind":
                said = f"its claim {claim} was a {value}, not a node's claim (a string): replaced by this node's"
            elif what == "claim-size":
                said = f"its claim {claim} held {value} bytes, no node's id: not a node's claim; taken"
            elif what == "claim-ttl":
                life = "had no expiry" if int(value) < 0 else f"had {int(value) / 1000:.0f} s to live"
                said = (f"its claim {claim}, by {row.owner!r}, {life}: not a node's claim (a node's lapses within"
                        f" {defaults.CAMERA_CLAIM_TTL_S} s of its last renewal); taken")  # fmt: skip
            else:
                said = f"its holder record {holder} was a {value}, not a hash: deleted"
            log.warning("camera %s: %s (written by a client of Redis, not by an ingest node)", camera, said)

    def _tell_claimed(self, claimed: Claimed, ended_pid: int | None) -> None:
        camera, previous = claimed.camera, claimed.previous
        if not previous:
            return
        if ended_pid is not None:
            log.warning("camera %s: taken over from ingest node %r, of this host, which ended (its process, pid"
                        " %d, is gone) without giving it up", camera, previous, ended_pid)  # fmt: skip
        elif claimed.taken_over:
            ago = (f" {max(0.0, time.time() - claimed.previous_renewed_s):.0f} s ago" if claimed.previous_renewed_s
                   else "")  # fmt: skip
            log.warning("camera %s: taken over from ingest node %r, which stopped renewing its claim%s without"
                        " giving it up (it died, froze or lost Redis)", camera, previous, ago)  # fmt: skip
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

    def stalled(self) -> bool:
        """Whether the last round got no answer (Redis away, or silent past the connection's timeout)."""
        return self.renewed_at > self.alive_at

    def unconfirmed(self) -> bool:
        """No round has answered for CAMERA_CLAIM_TTL_S (this node frozen, or its renewals stalled): its
        claims may have lapsed and another node taken a camera. False before any round has answered. A
        round Redis refused with an error answered too: the node is not frozen, and no node takes a camera
        while Redis refuses the rounds (its memory full: a review measured every camera at 0.1 frame/s,
        each frame waiting for the next renewal); it confirms no claim newly (`answered_at` stays)."""
        return self.alive_at > 0 and time.monotonic() - self.alive_at > defaults.CAMERA_CLAIM_TTL_S

    def hurry(self) -> None:
        """A camera found its claim in doubt: the next round at once (the packing runs it within its poll),
        not at the renewal (up to CAMERA_CLAIM_RENEW_S on: a camera waited that long for it), unless one
        began within HURRY_GAP_S (a doubt no round ends, Redis timing out, tries one a second at most)."""
        self.next_round_at = min(self.next_round_at, self.renewed_at + HURRY_GAP_S)

    def claim(self) -> ClaimRound | None:
        """The first round: the cameras this node wins, and those other nodes hold (it stands by for them).
        With Redis away (the node waits it out), None: every camera is presumed this node's until the first
        renewal Redis answers, which finds those another node holds lost. A round Redis refuses (an error
        it answers) takes no camera: tried again at each renewal."""
        if not self.camera_ids:
            return ClaimRound()
        try:
            return self._round()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("cameras not claimed yet (%s): claimed once Redis answers", mask_url(str(error)))
            self.held = set(self.camera_ids)
            return None
        except redis.RedisError as error:
            self._refused(error)
            return ClaimRound()

    def renew(self) -> ClaimRound | None:
        """Once CAMERA_CLAIM_RENEW_S has passed, or a claim held elsewhere has just lapsed: renew the claims
        and try the cameras not held again; None when not due or Redis cannot say now."""
        if not self.camera_ids or time.monotonic() < self.next_round_at:
            return None
        try:
            return self._round()
        except (redis.ConnectionError, redis.TimeoutError):  # tried again at the next renewal; the outage is
            return None  # logged by the node
        except redis.RedisError as error:
            self._refused(error)
            return None

    def _refused(self, error: redis.RedisError) -> None:
        """A round Redis answered with an error (it is no outage: presumed one, every camera was presumed this
        node's on every node): said once, as an ERROR, until a round succeeds. It shows this node alive
        (`unconfirmed`)."""
        self.alive_at = self.renewed_at
        if not self.refused:
            log.error("cameras not claimed nor renewed: Redis refused the round of claims (%s): this node takes no"
                      " camera it does not hold, and those it holds lapse %d s after their last renewal unless a"
                      " round succeeds; tried again every %.0f s", mask_url(str(error)) or type(error).__name__,
                      defaults.CAMERA_CLAIM_TTL_S, defaults.CAMERA_CLAIM_RENEW_S)  # fmt: skip
        self.refused = True

    def release(self) -> None:
        """Give the cameras up (a node that cannot reach Redis leaves its claims to lapse)."""
        if self.camera_ids:
            n = len(self.camera_ids)
            keys = [*self.keys[: 2 * n], self.node_key]
            with contextlib.suppress(redis.RedisError):
                self.connection.eval(RELEASE_ALL, len(keys), *keys, self.node_id)
            with contextlib.suppress(redis.RedisError):
                leave(self.connection, INGEST_NODES_KEY, self.node_id)
