"""Defaults of the services every role talks to: where Redis, SQLite and the data sets are, Postgres's
and Redis's timeouts and outage back-off, the metrics server's address and bounds.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

SQLITE_PATH = "alpr_reads.sqlite"
"""Where the standalone pipeline logs reads when no database URL is set."""

DATASETS_DIR = "../shared/datasets"
"""Where the evaluation photographs live, relative to the working directory."""

REDIS_URL = "redis://127.0.0.1:6379/0"
"""Redis holding the job queues and the frame store."""

DB_PATIENCE_S = 90
"""How long a worker waits out a Postgres outage inside one job before failing it (RQ then retries it)."""

METRICS_ADDRESS = "127.0.0.1"
"""Address the metrics server binds to: this host only unless set (0.0.0.0 for a scraper elsewhere)."""

METRICS_SOCKET_TIMEOUT_S = 10.0
"""How long the metrics server serves a connection from its accept, its request and answer together: one
still unanswered is closed then (a scrape sends its request at once; prometheus_client's server waited for
ever, a thread held each time; a per-read timeout let one byte every 9 s hold a slot for ever)."""

METRICS_MAX_REQUEST_BYTES = 8192
"""The most of a request the metrics server reads (its line and headers): a longer one is closed unanswered."""

METRICS_MAX_CONNECTIONS = 16
"""Connections the metrics server serves at once, a thread each (Prometheus and the healthcheck need one
each); one more is closed at once."""

DB_OUTAGE_BACKOFF_S = (0.5, 5.0)
"""First and longest wait between attempts while Postgres is unreachable inside a job."""

DB_ATTEMPT_S = 2.0
"""Longest wait for a pooled Postgres connection in one attempt (a healthy pool answers at once)."""

DB_CHECK_S = 5.0
"""While a process's `alpr_database_up` says 0 (a statement met an outage: common/db_watch.py), how long it waits
for one of its own statements to say whether Postgres is back before it asks itself (SELECT): a worker idle
since the outage said 0 until its next job."""

DB_CONNECT_TIMEOUT_S = 5
"""libpq's connect_timeout for every Postgres connection, unless the URL or PGCONNECT_TIMEOUT gives one: a
port where no Postgres answers (Redis's) was waited on for ever (libpq has no default)."""

DB_OPEN_WAIT_S = 10.0
"""Longest wait for a new Postgres pool's first connection (a server starting up) before a role or command
says it cannot connect; a login refused for good is told at once."""

DB_LOCK_TIMEOUT_S = 10.0
"""Longest a pooled session's statement waits for a lock (Postgres's `lock_timeout`) before it is cancelled
(LockNotAvailable) and the write is tried again as through an outage, the log naming the lock: a table an
operator locked (`LOCK TABLE frames`) held the OCR and redaction jobs silently until RQ's job timeout."""

UPGRADE_TURN_WAIT_S = 60.0
"""How long `alpr db upgrade` waits for its turn (a Postgres advisory lock, common/schema_upgrade.wait_for_turn)
at each step that takes it (a migration, a grant, the audit retention) before it gives up naming the lock's
holder (`--lock-wait`; 0: no limit). Any login may take an advisory lock, no right needed, and the owner's
upgrade waited behind one for ever, silently (a review); another upgrade or grant holds it one step at a time."""

STATUS_STATEMENT_TIMEOUT_S = 5.0
"""Longest any statement of `alpr status`'s frames-log part may run (Postgres's `statement_timeout`): behind
a lock it hung until killed."""

REDIS_TIMEOUT_S = 30.0
"""How long a Redis command may wait for its answer (a worker's dequeue blocks for less)."""

REDIS_OPEN_PROBE_TIMEOUT_S = 2.0
"""How long a role's start waits on the one connection without credentials by which it asks whether its
Redis needs a password at all (common/redis_open.py)."""

QUEUE_DEPTH_TIMEOUT_S = 1.0
"""How long a scrape waits on Redis for the queue depths (common/metrics.py), connecting and reading each: a
hung Redis (paused, or a partition dropping its packets) held every role's scrape for the role's own Redis
timeout (30 s a worker, 10 s an ingest node), past Prometheus's scrape_timeout (deploy/prometheus.yml), so
every process read as down and alpr_redis_up was never scraped as 0 (a review)."""
