"""Whether a Redis writes what it holds to disk: RDB snapshots (`save`), an append-only file
(`appendonly`), a replica's sync through a file (`repl-diskless-sync no`), or replicas (whose disks
this cannot see: a replica loads its sync through a file by default, and keeps it). The frame store
holds raw frames and plate crops, unblurred, so every role that reaches it checks its Redis at start. The
roles that write pixels there (the ingest node: frames; the detector worker: crops) refuse to start on one
that persists, unless the operator has said its disk is safe for them (ALPR_FRAME_STORE_MAY_PERSIST: then a
warning); the roles that only read or delete them warn. Where CONFIG is refused (a managed Redis), all warn."""

from __future__ import annotations

import logging

import redis

from common.credentials import mask_url
from common.errors import ConfigError

log = logging.getLogger(__name__)

ADVICE = (
    'point ALPR_FRAME_STORE_URL at a Redis of its own with `save ""` and `appendonly no` (the queues\' Redis'
    " may keep its append-only file)"
)
"""What an operator does about a frame store that persists."""

OPT_IN = (
    "or, where that disk is safe for them (encrypted, readable by the Redis user alone), set"
    " ALPR_FRAME_STORE_MAY_PERSIST=true"
)
"""The other way out: an opt-in for a frame store whose disk has been made safe (the roles then warn)."""


def persistence(connection: redis.Redis) -> list[str]:
    """What makes this Redis write its data to disk ('RDB snapshots (save ...)', 'an append-only file');
    empty when nothing does. Raises redis.ResponseError where CONFIG is refused (renamed, disabled, or
    not granted to this ACL user)."""
    settings = {**connection.config_get("save"), **connection.config_get("appendonly")}
    settings.update(connection.config_get("repl-diskless-sync"))
    found = []
    if str(settings.get("save", "")).strip():
        found.append(f"RDB snapshots (save {settings['save']})")
    if str(settings.get("appendonly", "no")).lower() == "yes":
        found.append("an append-only file (appendonly yes)")
    replicas = int(connection.info("replication").get("connected_slaves", 0))
    if replicas:  # a sync through a file (Redis 6's default) writes nothing while no replica syncs
        through_file = str(settings.get("repl-diskless-sync", "yes")).lower() == "no"
        found.append(
            f"{replicas} replica(s), which write what they are sent to disk unless each runs with"
            " repl-diskless-load swapdb, rdb-del-sync-files yes and no save or appendonly"
            + (", and an RDB file here for each one's sync (repl-diskless-sync no)" if through_file else "")
        )
    return found


def check_frames_persist(
    connection: redis.Redis, url: str, shared_with_queues: bool, writer: str | None = None, may_persist: bool = False
) -> None:
    """Refuse (ConfigError) a `writer` (the role that writes pixels to the frame store: 'ingest node',
    'detector worker') whose frame store's Redis at `url` writes to disk, unless `may_persist`
    (ALPR_FRAME_STORE_MAY_PERSIST); else log one WARNING when it does, or when it cannot be told."""
    shared = "; the queues' Redis too (ALPR_FRAME_STORE_URL unset or the same)" if shared_with_queues else ""
    where = f"the frame store's Redis ({mask_url(url)}{shared})"
    try:
        found = persistence(connection)
    except redis.RedisError as error:
        log.warning("cannot check whether %s writes frames to disk (CONFIG GET refused: %s); make sure it runs"
                    " with `save \"\"` and `appendonly no`", where, mask_url(str(error)))  # fmt: skip
        return
    if not found:
        return
    if writer is not None and not may_persist:
        raise ConfigError(
            f"{where} persists to disk with {' and '.join(found)}: raw frames and plate crops, unblurred, would be"
            f" written to disk by Redis, so the {writer} does not start; {ADVICE}, {OPT_IN}"
        )
    log.warning("%s persists to disk with %s: raw frames and plate crops, unblurred, will be written to"
                " disk by Redis%s; %s", where, " and ".join(found),
                " (ALPR_FRAME_STORE_MAY_PERSIST set)" if may_persist else "", ADVICE)  # fmt: skip
