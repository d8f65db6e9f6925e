"""RQ's controls through Redis, refused by the chain's workers (a base of common/worker.py's StageWorker):
RQ obeys the commands any client of its Redis publishes on a worker's control channel (`shutdown`: one
PUBLISH per worker stopped every pool), and parks every worker while `rq:suspended` exists. The chain's
workers obey neither, and warn of each: a worker of the chain is stopped by a signal. The thread that reads
the control channel is stopped, and its connection closed, even when RQ's teardown fails on Redis."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from rq import SimpleWorker
from rq.suspension import WORKERS_SUSPENDED, is_suspended

from common.log_throttle import Throttle
from common.redis_json import json_object

log = logging.getLogger("common.worker")  # the name its lines were told under before this module was split off

MAX_COMMAND_BYTES = 1024
"""Longest RQ control message read (RQ's own are some 40 bytes: `{"command": "shutdown"}`)."""


def rq_command(message: Any) -> str:
    """The command an RQ control message names, for a log line (quoted and shortened: any client of
    Redis may publish one)."""
    payload = json_object(message.get("data") if isinstance(message, dict) else None, MAX_COMMAND_BYTES)
    if payload is None or "command" not in payload:  # not JSON, not UTF-8, too deeply nested, not RQ's shape
        return "(an unreadable message)"
    return repr(str(payload["command"])[:40])


class RefusedControls(SimpleWorker):
    """An RQ worker that obeys no control through Redis: its commands and its suspension are refused."""

    commands_refused: Throttle  # (each set and told by StageWorker.__init__)
    suspension_seen: bool

    def handle_payload(self, message: Any) -> None:
        """A message on RQ's control channel (`rq:pubsub:<worker name>`), refused. RQ's worker obeys the
        `shutdown`, `kill-horse` and `stop-job` any Redis client publishes there: one PUBLISH per worker
        (their names are in `rq:workers`) stopped every pool of the chain for good, each exiting 0 and
        logging nothing, jobs signed or not (a review). The chain stops a worker by a signal (SIGTERM:
        `docker compose stop`), which only the host can send. A WARNING names the command, at most once a
        minute with the count (RQ's thread reads the channel; a crafted message must not end it)."""
        if count := self.commands_refused.note():
            log.warning("worker %s: RQ command %s refused (%d since the last such line): the chain's workers obey"
                        " no command through Redis, where any client of it can publish one; stop a worker with a"
                        " signal (SIGTERM)", self.name, rq_command(message), count)  # fmt: skip

    def check_for_suspension(self, burst: bool) -> None:
        """RQ parks every worker while the key `rq:suspended` exists (`rq suspend`), saying so only at INFO,
        below the workers' level: any Redis client parked every pool unseen, while the frames waiting
        expired. The chain's workers are never suspended (a pool parked past the frames' TTL loses them;
        stop the ingest nodes, or the workers by a signal): the key is ignored, with a WARNING each time it
        appears. Checked as RQ checks it, with the worker's heartbeat."""
        suspended = bool(is_suspended(self.connection, self))
        if suspended and not self.suspension_seen:
            log.warning("worker %s: %s is set in the queues' Redis (RQ's `rq suspend`, or any client of it):"
                        " ignored, the worker goes on taking jobs (a suspended pool loses the frames that wait"
                        " past their TTL); stop workers with a signal (SIGTERM) instead", self.name,
                        WORKERS_SUSPENDED)  # fmt: skip
        self.suspension_seen = suspended

    def release_control_channel(self) -> None:
        """Stop the thread that listens on RQ's control channel and close its connection. RQ's teardown
        does so last, after registering the worker's death, which a full or read-only Redis refuses: each
        worker the pool started again after such an error left its thread behind, retrying every 2 s for
        ever (a diff review found the tests' leftovers logging into later tests)."""
        thread = getattr(self, "pubsub_thread", None)
        if thread is not None:  # not by is_alive(): it said False of one still retrying (a test's leftover)
            thread.stop()
            thread.join(timeout=1)
            if self.pubsub is not None:
                with contextlib.suppress(Exception):  # its connection may be gone with Redis
                    self.pubsub.close()
