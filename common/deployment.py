"""Which deployment a role belongs to: the Postgres it logs to (that server's system identifier, the
database, the schema its tables are in) and ALPR_DEPLOYMENT where set. Every member of a pool publishes it
with its heartbeat, beside its settings (common/role_settings.py). Two deployments pointed at one Redis did
each other's work, silently: one's workers logged the other's frames and reads in their own Postgres,
matched them against their own watch list and raised alerts under the other's camera ids, while the
other's frames stayed pending, then `lost` (a review).

Each part is published as a digest (a label and the value, SHA-256): it tells two values apart and names
neither a database nor a schema; ALPR_DEPLOYMENT, a name chosen to be shown, is published as it is set.
Two identities are compared part by part, on the parts both know: a detector worker, with no Postgres,
differs from another only by ALPR_DEPLOYMENT.

Where a job key is set (ALPR_JOB_KEY), a member signs the identity it publishes (`signature`, an HMAC with
that key, its pool bound in): anyone who can write to Redis can publish an identity, and one forged entry
made every role refuse to start (a review); a role refuses only for an entry signed with its own key."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.credentials import escape_controls

if TYPE_CHECKING:  # imported where a connection is read (a detector worker's settings need no psycopg)
    import psycopg

log = logging.getLogger(__name__)

PARTS: dict[str, str] = {
    "name": "ALPR_DEPLOYMENT",
    "server": "Postgres server",
    "database": "database",
    "schema": "schema",
}
"""The parts of an identity, each with how a message names it, in the order they are compared."""

DIGEST_LABEL = "alpr deployment v1"
"""Prefix of what a part's digest is made from (never the job key's nor the jobs' own format)."""

DIGEST_CHARS = 12
"""Hex characters of a part's digest (48 bits: two schemas never share one by chance)."""

MAX_NAME_CHARS = 64
"""Longest ALPR_DEPLOYMENT published or read back."""

SIGNATURE_LABEL = "alpr deployment signature v1"
"""What the job key is an HMAC key for, to sign a published identity (never the jobs' own format, nor the
key's fingerprint)."""

SIGNATURE = re.compile("[0-9a-f]{64}")
"""A signature as the chain writes it (hex SHA-256 HMAC)."""


def digest(part: str, value: str) -> str:
    """The published digest of `part`'s `value`."""
    return hashlib.sha256(f"{DIGEST_LABEL}\0{part}\0{value}".encode()).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True)
class Deployment:
    """A role's deployment, as published (None: a part the role does not know); `shown` says what this
    process knows of its own in words, for its own messages only (never published)."""

    name: str | None = None
    server: str | None = None
    database: str | None = None
    schema: str | None = None
    shown: str = field(default="", compare=False)

    def parts(self) -> dict[str, str]:
        """The parts known, as published."""
        return {part: value for part in PARTS if (value := getattr(self, part)) is not None}

    def differing(self, other: Deployment) -> list[str]:
        """The parts both know whose values differ, named as a message names them."""
        mine, theirs = self.parts(), other.parts()
        return [PARTS[part] for part in PARTS if part in mine and part in theirs and mine[part] != theirs[part]]

    def describe(self) -> str:
        """`ALPR_DEPLOYMENT north, Postgres a1b2c3d4e5f6/...`: the parts known, for a message."""
        parts = self.parts()
        name = f"ALPR_DEPLOYMENT {parts.pop('name')}" if "name" in parts else ""
        digests = "/".join(parts.get(part, "-") for part in ("server", "database", "schema"))
        postgres = f"Postgres {digests}" if parts else ""
        return ", ".join(text for text in (name, postgres) if text) or "no deployment known"


def parse(value: Any) -> Deployment | None:
    """A published identity as read back (a dict of parts); None for one the chain did not write."""
    if not isinstance(value, dict):
        return None
    found = {part: value.get(part) for part in PARTS}
    parts = {part: escape_controls(text[:MAX_NAME_CHARS]) for part, text in found.items() if isinstance(text, str)}
    return Deployment(**parts) if parts else None


def signature(key: str, pool: str, deployment: Deployment) -> str:
    """The HMAC with job key `key` of `deployment`'s parts as pool `pool`'s member publishes them (its pool
    bound in: an entry copied into another pool's is no longer signed)."""
    text = json.dumps({"pool": pool, "parts": deployment.parts()}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key.encode(), f"{SIGNATURE_LABEL}\0{text}".encode(), hashlib.sha256).hexdigest()


def signed_with(key: str, pool: str, deployment: Deployment, published: str | None) -> bool:
    """Whether `published` is the signature with `key` of pool `pool`'s member's `deployment`."""
    return published is not None and hmac.compare_digest(published, signature(key, pool, deployment))


def parse_signature(value: Any) -> str | None:
    """A published identity's signature as read back (its `signature` field); None for none or one the
    chain did not write."""
    found = value.get("signature") if isinstance(value, dict) else None
    return found if isinstance(found, str) and SIGNATURE.fullmatch(found) else None


def deployment_of(name: str | None, connection: psycopg.Connection[Any] | None) -> Deployment:
    """This role's identity: ALPR_DEPLOYMENT `name`, and with a `connection` to the Postgres it logs to,
    that server's system identifier (left out where this login may not read it), the current database
    and the schema of the chain's tables (schema_migrations; the current schema before the first
    migration)."""
    from psycopg.errors import InsufficientPrivilege

    name = name[:MAX_NAME_CHARS] if name else None
    if connection is None:
        return Deployment(name, shown=f"ALPR_DEPLOYMENT {name}" if name else "no Postgres, no ALPR_DEPLOYMENT")
    row = connection.execute(
        "SELECT current_database(), coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.oid = to_regclass('schema_migrations')), current_schema())"
    ).fetchone()
    database, schema = (str(row[0]), str(row[1] or "")) if row else ("", "")
    server = None
    try:
        with connection.transaction():
            found = connection.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        server = digest("server", str(found[0])) if found else None
    except InsufficientPrivilege:  # the server then goes uncompared: database and schema are
        log.debug("pg_control_system() not readable by this login: the Postgres server is not compared")
    shown = f"database {escape_controls(database)}, schema {escape_controls(schema)}"
    return Deployment(
        name,
        server,
        digest("database", database),
        digest("schema", schema),
        shown=(f"ALPR_DEPLOYMENT {name}, " if name else "") + shown,
    )
