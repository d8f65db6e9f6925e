"""The plans Postgres makes for the exports and the plate search, on a small real log: an export streams
from its first row in an order an index gives (it sorted the whole log first: 24.5 s to the first of 7.9
million reads) and looks up each sighting's snapshot as it goes (it hashed every frame: 14.9 s); a search
looks up the snapshots of the sightings it found alone, and a window with no camera is an index range (a
last hour read every sighting). Plans are asked as the code runs them (a cursor declared), with the
alternatives to an index costed out of reach, so that the shape is the schema's doing, not the statistics'."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from common.plate_log import EXPORT_POSTGRES as EXPORT_READS
from common.plate_search import BY_KEY, CANDIDATES_POSTGRES, PlateSearch, search_postgres
from common.sighting_log import EXPORT_POSTGRES as EXPORT_SIGHTINGS

SIGHTINGS = 3000

FILL = f"""
INSERT INTO sightings (sighting_id, camera_id, plate, confidence, first_seen, last_seen, reads, best_frame_id,
    best_confidence, x1, y1, x2, y2, texts, snapshot_path)
SELECT 'cam' || n % 7 || ':' || n, 'cam' || n % 7, 'ABC' || lpad(n::text, 4, '0'), 0.9,
    now() - make_interval(secs => {SIGHTINGS} - n), now() - make_interval(secs => {SIGHTINGS} - n) + interval '1 s',
    1, 'frame' || n, 0.9, 1, 2, 3, 4, jsonb_build_array(jsonb_build_array('ABC' || lpad(n::text, 4, '0'), 1)),
    CASE WHEN n % 2 = 0 THEN 'own' || n END
FROM generate_series(1, {SIGHTINGS}) n;
INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, kept_path, outcome)
SELECT 'frame' || n, 'cam' || n % 7, n, n, now() - make_interval(secs => {SIGHTINGS} - n), 1, '{{}}',
    'kept' || n, 'done'
FROM generate_series(1, {SIGHTINGS}) n;
INSERT INTO plate_reads (camera_id, frame_id, frame_index, source_time_s, captured_at, plate_index, plate_text,
    confidence, format_name, format_match, candidates, x1, y1, x2, y2, detection_confidence, stage_ms)
SELECT 'cam' || n % 7, 'frame' || n, n, n, now() - make_interval(secs => {SIGHTINGS} - n), 0,
    'ABC' || lpad(n::text, 4, '0'), 0.9, 'us', true, '[]', 1, 2, 3, 4, 0.9, '{{}}'
FROM generate_series(1, {SIGHTINGS}) n;
ANALYZE sightings; ANALYZE frames; ANALYZE plate_reads;
"""

COSTED_OUT = ("enable_sort", "enable_hashjoin", "enable_mergejoin", "enable_seqscan", "enable_bitmapscan")
"""Plan nodes made dear (never forbidden: a plan that needs one still gets it, and shows it)."""


@pytest.fixture()
def log(postgres_url: str) -> str:
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(FILL.encode())
    return postgres_url


def declared_plan(
    url: str, query: str, values: dict[str, Any] | None = None, costed_out: tuple[str, ...] = COSTED_OUT
) -> dict[str, Any]:
    """The plan of `query` as a cursor declared for it (as the code's named cursors are), costed so."""
    with psycopg.connect(url) as connection:
        for setting in costed_out:
            connection.execute(f"SET LOCAL {setting} = off")
        sql = psycopg.sql.SQL("EXPLAIN (FORMAT JSON) DECLARE planned NO SCROLL CURSOR FOR {}").format(
            psycopg.sql.SQL(query)  # type: ignore[arg-type]
        )
        found = connection.execute(sql, values).fetchone()
        assert found is not None
        plan = found[0] if isinstance(found[0], list) else json.loads(found[0])
        return plan[0]["Plan"]  # type: ignore[no-any-return]


def nodes(plan: dict[str, Any], under_subplan: bool = False) -> list[tuple[dict[str, Any], bool]]:
    """Every node of the plan, and whether it runs as a subplan (once per row asked for)."""
    inside = under_subplan or plan.get("Parent Relationship") == "SubPlan"
    found = [(plan, inside)]
    for child in plan.get("Plans", []):
        found += nodes(child, inside)
    return found


def shape(plan: dict[str, Any]) -> str:
    return " / ".join(f"{node['Node Type']} {node.get('Relation Name', '')}".strip() for node, _ in nodes(plan))


def test_the_reads_export_streams_in_the_primary_keys_order(log: str) -> None:
    plan = declared_plan(log, EXPORT_READS)
    kinds = {node["Node Type"] for node, _ in nodes(plan)}
    assert not kinds & {"Sort", "Incremental Sort", "Hash"}, shape(plan)
    assert plan["Node Type"] == "Index Scan" and plan["Index Name"] == "plate_reads_pkey", shape(plan)


def test_the_sightings_export_streams_by_first_seen_and_looks_up_each_snapshot(log: str) -> None:
    plan = declared_plan(log, EXPORT_SIGHTINGS)
    kinds = {node["Node Type"] for node, _ in nodes(plan)}
    assert not kinds & {"Sort", "Incremental Sort", "Hash", "Hash Join", "Merge Join"}, shape(plan)
    assert plan["Node Type"] == "Index Scan" and plan["Index Name"] == "sightings_by_first_seen", shape(plan)
    frames = [inside for node, inside in nodes(plan) if node.get("Relation Name") == "frames"]
    assert frames == [True], shape(plan)  # once per sighting given, by its primary key
    with psycopg.connect(log) as connection:  # what it gives: a sighting's own snapshot, else its frame's
        rows = connection.execute(EXPORT_SIGHTINGS.encode()).fetchall()
    assert [row[-1] for row in rows[:4]] == ["kept1", "own2", "kept3", "own4"]


@pytest.mark.parametrize("keyed", [False, True])
def test_a_search_reads_no_frame_for_its_candidates_and_a_window_without_camera_is_an_index_range(
    log: str, keyed: bool
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=10)  # a last few seconds: a few sightings of thousands
    values = {"since": since, "until": datetime(9999, 12, 30, tzinfo=UTC), "camera": None, "keys": ["ABC2995"]}
    query = CANDIDATES_POSTGRES.format(sightings=BY_KEY if keyed else "sightings")
    plan = declared_plan(log, query, values, ("enable_seqscan",))  # a few rows sorted: never costed out
    assert not [node for node, _ in nodes(plan) if node.get("Relation Name") == "frames"], shape(plan)
    if not keyed:
        ranges = [node for node, _ in nodes(plan) if "last_seen" in node.get("Index Cond", "")]
        assert ranges and ranges[0]["Index Name"] == "sightings_by_last_seen", shape(plan)


def test_a_search_gives_each_sighting_found_its_snapshot(log: str) -> None:
    from common.db import open_pool

    pool = open_pool(log)
    try:
        asked = {"reason": "case 1", "searched_by": "tester", "within": 2.0, "limit": 4}
        found = search_postgres(pool, PlateSearch(plate="ABC0010", **asked))  # type: ignore[arg-type]
        keyed = search_postgres(pool, PlateSearch(plate="ABC0011", **asked | {"within": 0.0}))  # type: ignore[arg-type]
    finally:
        pool.close()
    snapshots = {row["sighting_id"]: row["snapshot_path"] for row in found}
    assert len(snapshots) == 4 and all(
        path == (f"own{n}" if int(n) % 2 == 0 else f"kept{n}")
        for sighting, path in snapshots.items()
        for n in [sighting.split(":")[1]]
    ), snapshots
    assert [row["snapshot_path"] for row in keyed] == ["kept11"]
