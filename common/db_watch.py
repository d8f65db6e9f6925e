"""Whether a role's Postgres takes its statements, as its `alpr_database_up{pool}` says: 1 once the role has
opened its pool, 0 from a statement that met an outage (common/db_writes.OUTAGES: unreachable, read-only, a
lock waited past lock_timeout), 1 again at the first that goes through. The paths that meet outages already
say so (common/db.WatchedPool.answered: every log's writes, the sighting rounds); while Postgres answers
the watch makes no statement of its own. While 0 and no statement of the process's has said anything for
DB_CHECK_S (a worker idle since the outage: no job, no write), it asks Postgres itself, on a thread of
its own, whether it takes writes again; otherwise such a worker said 0, and its alert fired, until its
next job. A Postgres outage had no alert of its own: a 12-minute one raised only a stale watch-list at 7
minutes and failing jobs at 11.5 (a review)."""

from __future__ import annotations

import logging
import threading
import time

from psycopg_pool import ConnectionPool, PoolClosed

from common import defaults
from common.db import WatchedPool
from common.metrics import Metrics

log = logging.getLogger(__name__)

TAKES_WRITES = "SELECT current_setting('transaction_read_only') = 'off'"
"""Whether this session may write: not on a server in recovery (a standby), nor with default_transaction_read_only."""


class DatabaseWatch:
    """One pool's `alpr_database_up{pool=name}` (its series appears with the watch, at 1: the pool is open)."""

    def __init__(self, pool: ConnectionPool, metrics: Metrics, name: str, check_s: float = defaults.DB_CHECK_S):
        self.pool, self.check_s = pool, check_s
        self.gauge = metrics.database_up.labels(pool=name)
        self.lock = threading.Lock()
        self.up = True
        self.told_at = time.monotonic()
        self.checking: threading.Thread | None = None
        """The thread asking Postgres while it is away and no statement says (None: none)."""
        self.gauge.set(1)
        if isinstance(pool, WatchedPool):
            pool.watcher = self.answered

    def answered(self, up: bool) -> None:
        """A statement of the process went through (`up`) or met an outage; the first outage starts the check."""
        with self.lock:
            self.up, self.told_at = up, time.monotonic()
            self.gauge.set(1 if up else 0)
            if up or self.checking is not None:
                return
            self.checking = threading.Thread(target=self.check_until_up, name="database-check", daemon=True)
            self.checking.start()

    def check_until_up(self) -> None:
        """While 0: every `check_s` without a statement saying anything, ask Postgres; end once it is up again."""
        while True:
            time.sleep(self.check_s)
            with self.lock:
                if self.up:
                    self.checking = None
                    return
                if time.monotonic() - self.told_at < self.check_s:
                    continue  # the process's own statements say: they are the ones that count
            try:
                with self.pool.connection(timeout=defaults.DB_ATTEMPT_S) as connection:
                    row = connection.execute(TAKES_WRITES).fetchone()
            except PoolClosed:  # the process is ending
                with self.lock:
                    self.checking = None
                return
            except Exception as error:  # noqa: BLE001 - still away, whatever it says: asked again later
                log.debug("Postgres still away: %s", type(error).__name__)
                continue
            if row and row[0]:
                self.answered(True)
