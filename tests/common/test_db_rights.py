"""common/db_rights.py on the real Postgres: a role given exactly the rights an OCR worker's start check
asks for does an OCR job's writes (its reads' ids drawn too), the start check names what a role lacks,
sequences included, and the workers' role of `alpr db upgrade --grant` passes every role's check. The
other roles' constants are tried by running each role's own work: tests/alpr/test_ingest_command.py,
tests/sighting_worker/test_worker_rights.py, tests/alert_worker/test_worker.py."""

from __future__ import annotations

import time

import psycopg
import pytest

from alpr.cli import main
from common import db_rights
from common.db import open_pool
from common.db_rights import OCR_WORKER_RIGHTS, REDACT_WORKER_RIGHTS, require_rights
from common.errors import ConfigError
from common.frame_log import FrameLog
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.plate_log import PostgresPlateLog
from common.types import PlateCandidate, PlateRead
from tests.helpers import role_with_rights, without, workers_role


def read_frame(index: int) -> tuple[FrameRef, list[PlateRead]]:
    frame_id = f"gate:run1:{index}"
    ref = FrameRef(frame_id=frame_id, camera_id="gate", seq=index, frame_index=index, captured_at_s=time.time(),
                   source_time_s=index / 5, key=frame_key(frame_id), region="us")  # fmt: skip
    return ref, [PlateRead((100.0, 400.0, 190.0, 440.0), 0.9, (PlateCandidate("KPX4721", 0.95, "us"),))]


def test_a_role_with_exactly_the_ocr_workers_rights_logs_its_reads(postgres_url):
    """OCR_WORKER_RIGHTS left out the reads' id sequence: a role given exactly them passed the start check,
    then every job failed (`permission denied for sequence plate_reads_id_seq`)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    frames = [read_frame(0), read_frame(1)]
    with role_with_rights(postgres_url, OCR_WORKER_RIGHTS) as (_, url):
        pool = open_pool(url)
        try:
            require_rights(pool, "the OCR worker", OCR_WORKER_RIGHTS)
            assert PostgresPlateLog(pool).record_many(frames) == 2  # as an OCR job: its reads, its camera
            FrameLog(pool, 0).record_reads([(ref, "done") for ref, _ in frames])  # then how they ended
        finally:
            pool.close()
    admin = open_pool(postgres_url)
    try:
        with admin.connection() as connection:
            assert connection.execute("SELECT count(*) FROM plate_reads").fetchone() == (2,)
            assert connection.execute("SELECT camera_id FROM sighting_cursors").fetchall() == [("gate",)]
            assert connection.execute("SELECT DISTINCT read_outcome FROM frames").fetchall() == [("done",)]
    finally:
        admin.close()


def test_a_role_without_the_reads_id_sequence_is_refused_naming_it(postgres_url):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    lacking = without(OCR_WORKER_RIGHTS, "plate_reads_id_seq", "USAGE")
    with role_with_rights(postgres_url, lacking) as (role, url):
        pool = open_pool(url)
        try:
            with pytest.raises(ConfigError) as refused:
                require_rights(pool, "the OCR worker", OCR_WORKER_RIGHTS)
        finally:
            pool.close()
    assert str(refused.value).startswith(f"the OCR worker: Postgres role {role} may not USAGE plate_reads_id_seq: ")


def test_the_workers_role_passes_every_roles_start_check(postgres_url):
    """Compose runs every role as the one `--grant` role: a check asking for more than the grant gives would
    stop the chain at start."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    roles = [
        name for name in dir(db_rights) if name.endswith("_RIGHTS") and name not in ("TABLE_RIGHTS", "SEQUENCE_RIGHTS")
    ]
    assert len(roles) == 5, roles
    with workers_role(postgres_url) as (_, url):
        pool = open_pool(url)
        try:
            for name in roles:
                require_rights(pool, name, getattr(db_rights, name))
        finally:
            pool.close()


@pytest.mark.parametrize("who, needs", [("the OCR worker", OCR_WORKER_RIGHTS), ("the redactor", REDACT_WORKER_RIGHTS)])
def test_a_role_that_may_not_merge_the_frame_counts_is_refused_at_start_naming_it(who, needs, postgres_url):
    """The OCR and redactor pools merge the frames' per-minute counts (frame_counts_merged): a database that
    took EXECUTE back from PUBLIC passed their start check, then every merge round failed, a WARNING a minute
    (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("REVOKE EXECUTE ON FUNCTION frame_counts_merged() FROM PUBLIC")
    tables_only = {name: rights for name, rights in needs.items() if name != "frame_counts_merged"}
    with role_with_rights(postgres_url, tables_only) as (role, url):
        pool = open_pool(url)
        try:
            with pytest.raises(ConfigError) as refused:
                require_rights(pool, who, needs)
        finally:
            pool.close()
    assert str(refused.value).startswith(f"{who}: Postgres role {role} may not EXECUTE frame_counts_merged: ")
    with role_with_rights(postgres_url, needs) as (_, url):  # given it by name, as `--grant` does
        pool = open_pool(url)
        try:
            require_rights(pool, who, needs)
            with pool.connection() as connection:
                connection.execute("SELECT frame_counts_merged()")
        finally:
            pool.close()
