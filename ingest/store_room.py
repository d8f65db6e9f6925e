"""An ingest node's view of the room in the frame store (`StoreRoom`): the store's memory read from its Redis
every QUEUE_DEPTH_REFRESH_S (INFO memory: used, maxmemory), plus the bytes the node has stored since, so that
the node stops storing frames at the crops' reserve below the maxmemory (`store_reserve_bytes`) without a
round trip per frame. A store within its reserve is full to the node, exactly as one refusing a write for
its maxmemory is (JobPacker: live cameras' frames skipped as back-pressure, recorded footage held). A node
that filled the store to its maxmemory while the detectors were behind or down left them no room for their
plate crops: no detect job could finish, so no redaction freed a frame, and the chain stood still until the
frames expired (a review: 0 of 77 frames processed)."""

from __future__ import annotations

import logging
import time

import redis

from common.frame_store import StoreMemory, store_memory

log = logging.getLogger("ingest.node")
"""The node's logger: what it says of the frame store's room is the node's."""

KEY_OVERHEAD_BYTES = 96
"""Bytes a stored frame is taken to cost in Redis beyond its JPEG and key (its entry, its TTL): an estimate
between two reads, each read replacing it with what Redis counts."""


UNREACHED_RETRY_S = 15.0
"""After a read that found the store's Redis away or stalled (a timeout of up to INGEST_REDIS_TIMEOUT_S), how long
before the next: read again each turn of the packer's loop, a frozen store held the node's loop 10 s a turn and its
stop for minutes (a diff review: not stopped after 300 s, where it stopped in 11 s before the reserve)."""


class ReserveReached(redis.exceptions.OutOfMemoryError):
    """The frame store is within the crops' reserve: the node stores no frame, as if Redis had refused it."""


class StoreRoom:
    """The frame store's memory as last read, and what this node stored since (`full`: within the reserve)."""

    def __init__(self, frames: redis.Redis) -> None:
        self.frames = frames
        self.memory = StoreMemory(used_bytes=0, max_bytes=0)  # unread: nothing held back
        self.stored_bytes = 0  # stored since the last read
        self.unreadable = False  # INFO refused (an ACL): never asked again; the maxmemory's own refusal tells
        self.next_read_at = 0.0  # monotonic: no read before (the store's Redis was away at the last)

    def read(self) -> bool:
        """Read the store's memory; the last known is kept while its Redis is away (the writes say so), and
        not asked again for UNREACHED_RETRY_S; True where it was asked and did not answer (away, or stalled
        past the connection's timeout). A Redis that refuses INFO (an ACL) is never asked again: each
        refusal is counted by the connection's watch, and AlprRedisRefusing (critical) fired for ever on a
        node that only could not keep the reserve (a diff review: 240 refusals in 2 minutes)."""
        if self.unreadable or time.monotonic() < self.next_read_at:
            return False
        try:
            self.memory = store_memory(self.frames)
        except redis.ResponseError as error:
            log.warning("the frame store refuses INFO memory (%s): this node cannot keep room for the detectors'"
                        " plate crops, and stores frames until its maxmemory (not asked again)", error)  # fmt: skip
            self.unreadable = True
            self.memory = StoreMemory(used_bytes=0, max_bytes=0)
            return False
        except redis.RedisError:
            self.next_read_at = time.monotonic() + UNREACHED_RETRY_S
            return True
        self.stored_bytes = 0
        return False

    def stored(self, frames: list[tuple[str, bytes]]) -> None:
        """Frames (key, JPEG) this node has just stored: counted until the next read."""
        self.stored_bytes += sum(len(key) + len(data) + KEY_OVERHEAD_BYTES for key, data in frames)

    @property
    def full(self) -> bool:
        """Whether the store, as far as this node knows, is within the crops' reserve."""
        return self.memory.within_reserve(self.stored_bytes)

    def describe(self) -> str:
        """The store's state for the node's log: its use against its maxmemory, and the reserve."""
        memory, mib = self.memory, 1024 * 1024
        if not memory.max_bytes:
            return "its maxmemory"
        return (
            f"{(memory.used_bytes + self.stored_bytes) / mib:.1f} of its maxmemory of {memory.max_bytes / mib:.1f}"
            f" MiB used, {memory.reserve_bytes / mib:.1f} MiB kept for the detectors' plate crops"
        )
