"""`alpr status`'s view of each pool's settings: whether its live members publish the same settings that
change results (common/role_settings.py), and where they do not, which members hold which, and the
settings that differ. Read from the heartbeats: an RQ worker's registration (SETTINGS_FIELD), the
sighting workers' and ingest nodes' sorted sets with their entries beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from rq.worker import Worker

from common import defaults
from common.bounded_hash import read_many_within_bounds, read_within_bounds
from common.credentials import escape_controls
from common.queues import (
    INGEST_NODES_KEY,
    MAX_MEMBERS_READ,
    SETTINGS_SUFFIX,
    SIGHTING_WORKERS_KEY,
    live_members,
)
from common.role_settings import MAX_ENTRY_BYTES, ROLE_SETTINGS, RoleSettings, parse_entry, variable
from common.worker import SETTINGS_FIELD

POOLS = tuple(ROLE_SETTINGS)
"""The pools compared, in the order shown."""

BEATING = {"ingest": (INGEST_NODES_KEY, defaults.CAMERA_CLAIM_TTL_S),
           "sight": (SIGHTING_WORKERS_KEY, defaults.SIGHTING_HEARTBEAT_TTL_S)}  # fmt: skip
"""The pools with no queue: their members' sorted set (entries beside it) and how long a beat counts."""

NAMES_SHOWN = 4
"""Members named per fingerprint in the text (the rest counted; the JSON names them all)."""

MAX_VALUE_CHARS = 40
"""A differing value is shown in the text up to this long."""


NOT_PUBLISHED = object()
"""A setting a member's entry does not name."""


@dataclass(frozen=True)
class PoolSettings:
    """A pool's live members and the settings each publishes (None: it publishes none, an older version)."""

    pool: str
    members: dict[str, RoleSettings | None]

    def groups(self) -> dict[str, list[str]]:
        """Fingerprint -> its members, the most held first."""
        found: dict[str, list[str]] = {}
        for name, published in sorted(self.members.items()):
            if published is not None:
                found.setdefault(published.fingerprint, []).append(name)
        return dict(sorted(found.items(), key=lambda item: (-len(item[1]), item[0])))

    def unknown(self) -> list[str]:
        return sorted(name for name, published in self.members.items() if published is None)

    @property
    def mixed(self) -> bool:
        return len(self.groups()) > 1

    def values(self) -> dict[str, dict[str, Any]]:
        """Fingerprint -> the settings published with it (one member's: they share the fingerprint)."""
        first = {fingerprint: names[0] for fingerprint, names in self.groups().items()}
        return {fingerprint: self.members[name].values for fingerprint, name in first.items()}  # type: ignore[union-attr]

    def differing(self) -> list[str]:
        """The settings whose values are not the same for every fingerprint (one published by some only
        included)."""
        values = list(self.values().values())
        names = sorted({name for published in values for name in published})
        return [name for name in names if len({repr(published.get(name, NOT_PUBLISHED)) for published in values}) > 1]

    def line(self) -> str:
        """One line of the text: `sight    3 members agree: 1a2b3c4d5e6f`, or MIXED with who holds what."""
        groups, unknown = self.groups(), self.unknown()
        count = len(self.members)
        members = f"{count} member{'s' if count != 1 else ''}"
        older = f"{len(unknown)} publish{'es' if len(unknown) == 1 else ''} no settings (an older version?)"
        if not groups:
            return f"{self.pool:<8} {members}, none publishes its settings (an older version?)"
        if not self.mixed:
            ((fingerprint, names),) = groups.items()
            if unknown:
                return f"{self.pool:<8} {members}: {len(names)} with {fingerprint}; {older}"
            return f"{self.pool:<8} {members} {'agree' if count > 1 else 'with'}: {fingerprint}"
        held = ", ".join(f"{fingerprint} x{len(names)} ({shown_names(names)})" for fingerprint, names in groups.items())
        values = self.values()
        differ = "; ".join(
            f"{variable(name)} " + " | ".join(shown_value(values[fingerprint], name) for fingerprint in groups)
            for name in self.differing()
        )
        return f"{self.pool:<8} MIXED: {members}, {len(groups)} settings: {held}; differing: {differ}" + (
            f"; {older}" if unknown else ""
        )

    def as_dict(self) -> dict[str, Any]:
        groups, values = self.groups(), self.values()
        return {
            "members": len(self.members),
            "agree": not self.mixed,
            "fingerprints": {
                fingerprint: {"count": len(names), "members": names, "settings": values[fingerprint]}
                for fingerprint, names in groups.items()
            },
            "differing": [variable(name) for name in self.differing()],
            "without_settings": self.unknown(),
        }


def shown_names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def shown_value(published: dict[str, Any], name: str) -> str:
    """A setting's value as the text shows it: `unset`, or `-` where a member publishes no such setting
    (another version's list)."""
    value = published.get(name, NOT_PUBLISHED)
    text = "-" if value is NOT_PUBLISHED else "unset" if value is None else str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def rq_members(connection: redis.Redis, pool: str, worker_keys: list[str]) -> PoolSettings:
    """An RQ pool's settings, from its live workers' registrations (`worker_keys`, `rq:worker:NAME`), read
    in a round trip (a round trip each took a second for 1000); a registration no longer a hash is
    passed over as one that publishes none."""
    keys = worker_keys[:MAX_MEMBERS_READ]
    members: dict[str, RoleSettings | None] = {}
    for key, found in zip(
        keys, read_many_within_bounds(connection, keys, {SETTINGS_FIELD: MAX_ENTRY_BYTES}), strict=True
    ):
        entry = None if found is None else found.values.get(SETTINGS_FIELD)
        members[escape_controls(key.removeprefix(Worker.redis_worker_namespace_prefix))] = parse_entry(pool, entry)
    return PoolSettings(pool, members)


def beating_members(connection: redis.Redis, pool: str) -> PoolSettings:
    """A queueless pool's settings (ingest nodes, sighting workers), from its live members' entries."""
    members_key, ttl_s = BEATING[pool]
    names = live_members(connection, members_key, ttl_s)
    found = read_within_bounds(connection, members_key + SETTINGS_SUFFIX, dict.fromkeys(names, MAX_ENTRY_BYTES))
    return PoolSettings(pool, {escape_controls(name): parse_entry(pool, found.values.get(name)) for name in names})


def pool_settings(connection: redis.Redis, worker_keys: dict[str, list[str]]) -> list[PoolSettings]:
    """Every pool's settings, RQ pools' from `worker_keys` (pool -> its live workers' keys)."""
    return [one_pool(connection, pool, worker_keys) for pool in POOLS]


def one_pool(connection: redis.Redis, pool: str, worker_keys: dict[str, list[str]]) -> PoolSettings:
    """Pool `pool`'s settings (`pool_settings`)."""
    return beating_members(connection, pool) if pool in BEATING else rq_members(connection, pool, worker_keys[pool])


def pool_keys(pool: str, worker_keys: dict[str, list[str]]) -> dict[str | bytes, str]:
    """The keys `one_pool` reads for `pool`, each with the type the chain writes there."""
    if pool in BEATING:
        members_key = BEATING[pool][0]
        return {members_key: "zset", members_key + SETTINGS_SUFFIX: "hash"}
    return dict.fromkeys(worker_keys[pool][:MAX_MEMBERS_READ], "hash")
