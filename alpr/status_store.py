"""`alpr status`'s line on the frame store's room (`store_room`; `--json`: `store_document`): shown while
its Redis is at, or near, its maxmemory, with the reserve the ingest nodes leave for the detectors' plate
crops (`store_reserve_bytes`). A store full with detection behind said nothing: status showed one detect
job waiting and one running, the oldest waiting frame two minutes old, while every detect job was refused
room for its crops (a soak review)."""

from __future__ import annotations

from typing import Any

import redis

from common.credentials import mask_url
from common.frame_store import store_memory

NEAR_FULL_SHARE = 0.5
"""The store is said to be nearly full once less than this share of its room above the crops' reserve is left,
and at most one reserve's worth (two reserves below its maxmemory, as before, said a store of 64 MiB or less,
whose reserve is half of it, nearly full empty: a diff review)."""

AT_MAXMEMORY_SLACK_BYTES = 64 * 1024
"""How close to its maxmemory the store reads as at it: a write refused, the client's buffer that held it is
let go, and the store reads a little below its maxmemory while refusing every write that needs room."""

MIB = 1024 * 1024


def store_room(store: redis.Redis | None) -> str | None:
    """The frame store's line, or None: no maxmemory, room to spare, or its Redis not reached (said above)."""
    if store is None:
        return None
    try:
        memory = store_memory(store)
    except redis.RedisError as error:
        return f"frame store memory: unread ({mask_url(str(error))})"
    above_reserve = memory.max_bytes - memory.reserve_bytes
    near = min(memory.reserve_bytes, NEAR_FULL_SHARE * above_reserve)
    if not memory.max_bytes or memory.used_bytes < above_reserve - near:
        return None
    used = f"{memory.used_bytes / MIB:.1f} of its maxmemory of {memory.max_bytes / MIB:.1f} MiB used"
    reserve = f"{memory.reserve_bytes / MIB:.1f} MiB kept for the detectors' plate crops"
    if memory.used_bytes >= memory.max_bytes - AT_MAXMEMORY_SLACK_BYTES:
        return (f"frame store FULL at its maxmemory: {used} ({reserve}, spent): its writes are refused, the"
                " detectors' crops among them, and the chain stalls until frames expire")  # fmt: skip
    if memory.within_reserve():
        return (f"frame store full: {used}, within the {reserve}: ingest nodes store no frame (live cameras"
                " skip as backpressure, recorded footage waits) until redaction frees room")  # fmt: skip
    return f"frame store nearly full: {used}, {reserve}"


def store_document(store: redis.Redis | None) -> dict[str, Any] | None:
    """`alpr status --json`'s `frame_store`: bytes used, its maxmemory (0: none) and the crops' reserve, and
    whether the ingest nodes hold frames back (`full`); None where its memory could not be read."""
    if store is None:
        return None
    try:
        memory = store_memory(store)
    except redis.RedisError:
        return None
    return {"used_bytes": memory.used_bytes, "max_bytes": memory.max_bytes, "reserve_bytes": memory.reserve_bytes,
            "full": memory.within_reserve()}  # fmt: skip
