"""How every command opens `alpr run`'s SQLite log (its reads, sightings and audit records): made
private first (common/private_files.keep_private, the files SQLite keeps beside it too), then opened
in write-ahead-log mode with a long busy timeout, so one command never ends another that shares the
file.

A review found `alpr export --sqlite` and `alpr db prune --sqlite` killing a running `alpr run`: the
log used SQLite's rollback journal and Python's 5 s busy timeout. An export streams the whole log in
one SELECT (25 s for 2 million reads) and held its SHARED lock throughout, which no writer may commit
past; the prune deleted a month of backlog in one 14.8 s transaction. The run's next write of reads
failed `database is locked` after 5 s, and the run ended. Now:

- the log is in WAL mode (`PRAGMA journal_mode=WAL`, which the file keeps): a reader reads the
  snapshot it began with and never holds a writer back, so an export of any length streams while the
  run writes on;
- a prune deletes in short batches, each its own transaction (common/retention.prune_sqlite_log), so
  a writer waits at most for one batch;
- every connection waits up to BUSY_TIMEOUT_S for a lock another holds, far past any batch;
- a write that still finds the log locked after all that ends `alpr run` with an OutputError that
  says what held it (`reporting_locks`), not a bare `database is locked`.

WAL keeps two more files beside the log while it is open, `<log>-wal` (the pages written since the
last checkpoint: plates) and `<log>-shm` (an index of them), which SQLite creates with the log's own
mode and deletes when the last connection closes; keep_private makes them private and refuses a link
or another user's file at their names, as at the log's. WAL needs every process that opens the log to
share memory through `<log>-shm`: the log must be on a local disk of the host that runs them, never on a
network file system (NFS, SMB), where SQLite's locks are not to be trusted either way."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from common.errors import ConfigError, OutputError
from common.private_files import SQLITE_LOG_NAMED, check_sqlite_file, keep_private

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 60.0
"""How long a connection waits for a lock another one holds before SQLite gives up (`database is
locked`). Python's default, 5 s, was shorter than an export's read or a prune's delete: the waiting
`alpr run` failed and ended. In WAL mode only a write waits, and only for another write: a batch of a
prune (common/retention.SQLITE_BATCH_ROWS rows, well under a second), a frame's reads, an export's or a
search's record. Waiting longer than this means a transaction left open elsewhere (an `sqlite3` shell
inside BEGIN): `reporting_locks` says so."""

MODE_SWITCH_TIMEOUT_S = 2.0
"""How long the switch to WAL waits for the readers of a log still in the rollback journal's mode (one an
older version made, read by an old export or an sqlite3 shell): past it the log stays as it is for now,
with a warning, and is switched at a later open (waited 60 s, the command failed with `database is
locked`: a review)."""

JOURNAL_MODE = "wal"
"""The log's journal mode: write-ahead, so that readers and the writer never block one another."""


def connect_log(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite log at `path`: the log and the files SQLite keeps beside it made
    private first (keep_private: created 0600 when missing; a link, another user's file or what is not
    an SQLite file refused), then in WAL mode, waiting up to BUSY_TIMEOUT_S for a lock. Every command
    that opens the log opens it here: one opened in the rollback journal's mode with a 5 s timeout, as
    before, held the running `alpr run` back until it failed (a review)."""
    keep_private(path)
    connection = sqlite3.connect(path, timeout=MODE_SWITCH_TIMEOUT_S)
    try:
        try:
            (mode,) = connection.execute(f"PRAGMA journal_mode = {JOURNAL_MODE}").fetchone()
        except sqlite3.OperationalError as error:  # a log of an older version another process reads (an old
            if not is_busy(error):  # export, an sqlite3 shell): it waited 60 s, then failed the command
                raise
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()  # switched at a later open
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except BaseException:
        connection.close()
        raise
    if str(mode).lower() != JOURNAL_MODE:  # a file system without shared memory, or a reader of an older
        log.warning("the SQLite log %s stays in journal mode %s (not WAL) for now: a long export blocks `alpr run`",
                    path, mode)  # fmt: skip
    return connection


RUN_LOG_TABLES = ("plate_reads", "sightings", "plate_exports", "plate_searches")
"""The tables of an SQLite log `alpr run` writes (common/plate_log, sighting_log, export_record, plate_search):
a file with none of them is no log (a log of sightings alone is searched)."""


def check_run_log(path: Path) -> None:
    """ConfigError unless the file at `path` is an SQLite log `alpr run` wrote (check_sqlite_file, and a
    table of RUN_LOG_TABLES), before anything is changed: `alpr search|export|db prune --sqlite` on an empty
    file or another program's database wrote the log's tables into it, then failed with `no such table` (a
    review). Read without a write: as it lies on disk (immutable) when no `-wal` file is beside it, else
    read-only through that file, where a running `alpr run`'s newest pages are."""
    check_sqlite_file(path)
    beside = path.with_name(path.name + "-wal").exists()
    uri = f"{path.absolute().as_uri()}?{'mode=ro' if beside else 'immutable=1'}"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            marks = ", ".join("?" * len(RUN_LOG_TABLES))
            query = f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"
            found = connection.execute(query, RUN_LOG_TABLES).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ConfigError(f"{path} cannot be read as an SQLite log ({error}): {SQLITE_LOG_NAMED}") from None
    if found is None:
        raise ConfigError(f"{path} is not an alpr run log (it has none of its tables): {SQLITE_LOG_NAMED}")


def is_busy(error: sqlite3.Error) -> bool:
    """Whether `error` is SQLite's `database is locked` (or `database table is locked`): a lock another
    connection held past the busy timeout."""
    code = getattr(error, "sqlite_errorcode", None)  # none on the errors the module raises itself
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # BUSY_SNAPSHOT too


@contextlib.contextmanager
def reporting_locks(path: Path, what: str) -> Iterator[None]:
    """The block's write of `what` (`the reads of 2 frames were`) to the log at `path`, an SQLite error
    of a lock another connection held past BUSY_TIMEOUT_S turned into an OutputError that names the log
    and what may hold it, so `alpr run` ends with a line that says why and what to do (it ended with a
    bare `OperationalError: database is locked`, a review); any other error as it is (a full disk says
    so already). The reads in hand are not logged: the run stops there rather than go on without them."""
    try:
        yield
    except sqlite3.Error as error:
        if not is_busy(error):
            raise
        raise OutputError(
            f"the SQLite log {path} stayed locked by another process for {BUSY_TIMEOUT_S:g} s ({error}): {what}"
            " not logged, so the run stops here; what was logged before is kept. Is a transaction left open"
            " there (an `sqlite3` shell inside BEGIN)?"
        ) from error
