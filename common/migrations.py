"""The Postgres schema as numbered migrations, applied in order by `alpr db upgrade` (common/schema_upgrade.py):
the frames log, the plate reads, the watch-lists, the sightings and their cursors, the alerts and
their deliveries, and the audit records of plate searches and exports (common/audit.py). Each migration's SQL
is a file of common/migration_sql/ named by its version (0001.sql, ...), read here as it is: a deployed
migration is never edited, only followed by a new file; what each takes of the chain's tables is
MIGRATION_LOCKS, below."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

SQL_FOLDER = "migration_sql"
"""The folder of the `common` package holding one file of SQL per migration, NNNN.sql."""


LATEST_MIGRATION = 26
"""The newest migration's version, raised with each new file: a build missing the newest files (which no gap
shows) is refused at import, not upgraded to a schema `alpr db upgrade` reports current."""


def load_migrations(folder: Traversable | None = None, latest: int = LATEST_MIGRATION) -> list[tuple[int, str]]:
    """(version, SQL) of every file of `folder` (the package's SQL_FOLDER), in order of version; ValueError
    where a file whose name ends in .sql (in any case) is not named NNNN.sql or the versions are not 1, 2, 3, ...
    `latest` without a gap (a migration missing from a build would otherwise leave a schema that `alpr db
    upgrade` reports current)."""
    found: list[tuple[int, str]] = []
    for entry in (folder or resources.files("common").joinpath(SQL_FOLDER)).iterdir():
        if not entry.name.lower().endswith(".sql"):
            continue
        stem = entry.name[:-4]
        if len(stem) != 4 or not stem.isdigit() or not entry.name.endswith(".sql"):
            raise ValueError(f"{entry.name}: a migration's file is named NNNN.sql")
        found.append((int(stem), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _ in found]
    if versions != list(range(1, latest + 1)):
        raise ValueError(f"the migrations' versions are not 1 to {latest}: {versions}")
    return found


MIGRATIONS: list[tuple[int, str]] = load_migrations()
"""(version, SQL) in order; a deployed migration is never edited, only followed by a new one."""

LOCK_MODES = ("SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE")
"""The table locks that make a migration wait for the chain: SHARE and above conflict with the workers'
writes (ROW EXCLUSIVE), ACCESS EXCLUSIVE with every reader too (ACCESS SHARE)."""

MIGRATION_LOCKS: dict[int, dict[str, str]] = {
    2: {"frames": "ACCESS EXCLUSIVE"},
    3: {"frames": "ACCESS EXCLUSIVE"},
    4: {"plate_reads": "ACCESS EXCLUSIVE"},
    5: {"frames": "ACCESS EXCLUSIVE"},
    7: {"frames": "SHARE", "plate_reads": "SHARE"},
    8: {"frames": "ACCESS EXCLUSIVE"},
    9: {"watchlist": "SHARE ROW EXCLUSIVE"},
    11: {"frames": "ACCESS EXCLUSIVE"},
    12: {"alerts": "SHARE", "sightings": "SHARE"},
    14: {"alerts": "SHARE"},
    15: {
        "alerts": "ACCESS EXCLUSIVE",
        "frames": "ACCESS EXCLUSIVE",
        "plate_reads": "ACCESS EXCLUSIVE",
        "sightings": "ACCESS EXCLUSIVE",
    },
    16: {"watchlist": "SHARE ROW EXCLUSIVE"},
    17: {"plate_exports": "ACCESS EXCLUSIVE", "plate_searches": "ACCESS EXCLUSIVE"},
    18: {"frames": "ACCESS EXCLUSIVE"},
    19: {"alerts": "SHARE"},
    20: {"sightings": "SHARE"},
    21: {"frames": "SHARE ROW EXCLUSIVE"},
    22: {"alert_deliveries": "ACCESS EXCLUSIVE"},
    23: {"frames": "ACCESS EXCLUSIVE"},
    24: {"frames": "SHARE ROW EXCLUSIVE"},
}
"""Version -> {table: the strongest of LOCK_MODES the migration takes on it}, for the tables there before
it (tests/common/test_migrations.py checks each against what Postgres records the migration holding).
`alpr db upgrade` asks for each in turn before the migration's SQL runs (common/schema_upgrade.py's
_apply_next), so a table held by a long reader makes the attempt fail before any of its work is done:
migration 15's full scans of the frames log and the plate reads were run again on every attempt while it
waited for the frames lock (a review). A new migration that locks a table the chain uses is added here
with it."""
