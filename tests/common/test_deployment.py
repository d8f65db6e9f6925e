"""A deployment's identity (common/deployment.py): read from the real Postgres, compared part by part on
the parts both roles know, published beside a role's settings without changing their fingerprint, and
read back only as the chain writes it."""

from __future__ import annotations

import json

import psycopg
import pytest

from common.config import Settings
from common.deployment import Deployment, deployment_of, digest, parse
from common.role_settings import parse_entry, role_settings


@pytest.mark.parametrize(
    ("mine", "theirs", "differing"),
    [
        (Deployment("north"), Deployment("south"), ["ALPR_DEPLOYMENT"]),
        (Deployment("north"), Deployment(None, "s", "d", "x"), []),  # nothing both know: no difference
        (Deployment(None, "s", "d", "x"), Deployment(None, "s", "d", "y"), ["schema"]),
        (Deployment(None, "s", "d", "x"), Deployment(None, None, "e", "x"), ["database"]),  # server unread
        (Deployment("n", "s", "d", "x"), Deployment("m", "t", "d", "x"), ["ALPR_DEPLOYMENT", "Postgres server"]),
        (Deployment(), Deployment("north"), []),
        (Deployment("n", shown="a"), Deployment("n", shown="b"), []),  # what a process shows is its own
    ],
)
def test_identities_differ_in_the_parts_both_know(mine, theirs, differing):
    assert mine.differing(theirs) == differing
    assert theirs.differing(mine) == differing


def test_the_identity_is_the_server_database_and_schema_as_digests(postgres_url):
    base = postgres_url.split("?")[0]
    with psycopg.connect(postgres_url) as a, psycopg.connect(postgres_url) as again, psycopg.connect(base) as b:
        mine, same, public = deployment_of(None, a), deployment_of(None, again), deployment_of("north", b)
        schema = a.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
    assert mine == same and mine.server is not None
    assert mine.differing(public) == ["schema"]
    assert mine.schema == digest("schema", schema) and public.name == "north"
    assert mine.shown == f"database test, schema {schema}"
    assert schema not in json.dumps(mine.parts()) and "test" not in json.dumps(mine.parts())


def test_the_identity_is_published_beside_the_settings_and_read_back_as_the_chain_writes_it():
    settings = Settings.load({})
    plain = role_settings(settings, "sight")
    with_it = role_settings(settings, "sight", deployment=Deployment("north", "s", "d", "x", shown="local"))
    assert with_it.fingerprint == plain.fingerprint  # the pool's settings compare as before
    assert "local" not in with_it.entry()
    read = parse_entry("sight", with_it.entry())
    assert read is not None and read.deployment == Deployment("north", "s", "d", "x")
    assert parse_entry("sight", plain.entry()).deployment is None  # type: ignore[union-attr]  # an older member
    assert parse(["north"]) is None and parse({"name": 5}) is None and parse({}) is None
    assert parse({"name": "a\x1b[2J" + "x" * 100}) == Deployment("a\\x1b[2J" + "x" * 59)  # cut, then written out
