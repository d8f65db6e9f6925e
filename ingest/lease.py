"""Camera leases: one ingest node at a time samples a camera. A lease is a Redis key naming the node
that holds it, with a TTL the node renews while it runs and deletes when the camera ends; a node that
dies lets it lapse. A second node given the same camera (the same cameras file on two hosts, the
overlap of a rolling restart) waits for the lease instead of sampling too: both nodes ingested the
camera, every car twice, and each published the camera's watermark, so the sighting pool grouped past
frames the other node had not recorded yet (found by an audit)."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

LEASE_PREFIX = "alpr:camera-lease:"
"""Redis key prefix of a camera's lease (the camera id follows)."""

LEASE_TTL_S = 30
"""How long a lease outlives its last renewal: a node that dies frees its cameras within this."""

LEASE_RENEW_S = 10.0
"""How often a node renews its leases, and a waiting camera tries for its lease again."""

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def lease_key(camera_id: str) -> str:
    return LEASE_PREFIX + camera_id


class CameraLeases:
    """The leases of one node (`holder`, its node id) on the queues' Redis. Thread-safe as redis-py is."""

    def __init__(self, connection: redis.Redis, holder: str) -> None:
        self.connection, self.holder = connection, holder
        self.held: set[str] = set()

    def acquire(self, camera_id: str) -> str | None:
        """Take the camera's lease: None when this node holds it now, else the node that does. Redis
        unreachable: taken (a camera is not held back by an outage; renewal takes the key later)."""
        key = lease_key(camera_id)
        try:
            holder = None
            for _ in range(2):  # a lease that lapses between the two commands is tried for once more
                if self.connection.set(key, self.holder, nx=True, ex=LEASE_TTL_S):
                    break
                if (holder := self.connection.get(key)) is not None:
                    break
        except redis.RedisError:
            holder = None
        held_by = holder.decode(errors="replace") if isinstance(holder, bytes) else holder
        if held_by is not None and held_by != self.holder:
            return str(held_by)
        self.held.add(camera_id)
        return None

    def renew(self) -> None:
        """Renew every lease held; one found lapsed (a Redis restarted without persistence) is taken
        again, one another node has taken meanwhile is warned of."""
        cameras = sorted(self.held)
        try:
            pipe = self.connection.pipeline(transaction=False)
            for camera_id in cameras:
                pipe.eval(_RENEW, 1, lease_key(camera_id), self.holder, LEASE_TTL_S)
            renewed = pipe.execute()
            for camera_id, kept in zip(cameras, renewed, strict=True):
                if not kept and not self.connection.set(lease_key(camera_id), self.holder, nx=True, ex=LEASE_TTL_S):
                    log.warning("camera %s: another ingest node took its lease while Redis was away; both"
                                " sample it until one stops", camera_id)  # fmt: skip
        except redis.RedisError:
            return  # the node reports the outage; the leases are renewed when Redis answers

    def release(self, camera_id: str) -> None:
        """Give the camera's lease up (if still this node's)."""
        self.held.discard(camera_id)
        try:
            self.connection.eval(_RELEASE, 1, lease_key(camera_id), self.holder)
        except redis.RedisError:
            return  # it lapses within LEASE_TTL_S
