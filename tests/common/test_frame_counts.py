"""`alpr status`'s per-camera counts of a window (common/frame_counts.py's RECENT_OUTCOME_COUNTS) against a
real Postgres: the same counts as counting the window's frames one by one (as it did before migration 21),
through frames added, finished, read, swept, pruned, written by concurrent writers, and on a database
upgraded with frames already there; and the count reads the frames of the window's first part-minute only,
not the window's every frame (4.6 us each: 9 million an hour at 500 cameras x 5 frames/s ran past the
statement's 5 s, a scale review)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from common.db import open_pool
from common.frame_counts import FrameCounts, RecentCounts, recent_per_camera
from common.frame_log import FrameLog, FrameRecord, ReadOutcome
from common.frame_store import frame_key
from common.jobs import FrameOutcome, FrameRef
from common.migrations import MIGRATIONS
from common.retention import prune_logs

COUNTED_ONE_BY_ONE = recent_per_camera("frames", "captured_at", "outcome")
READS_COUNTED_ONE_BY_ONE = recent_per_camera("frames", "captured_at", "read_outcome", "read_outcome IS NOT NULL")
"""The counts as `alpr status` made them before migration 21: every frame of the window visited."""

Counts = tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]


def frame(camera_id: str, index: int, captured_at_s: float) -> FrameRef:
    frame_id = f"{camera_id}:1:{index}"
    return FrameRef(frame_id=frame_id, camera_id=camera_id, seq=index, frame_index=index, captured_at_s=captured_at_s,
                    source_time_s=0.0, key=frame_key(frame_id), region="us")  # fmt: skip


def counted_one_by_one(pool: ConnectionPool, window_s: float) -> Counts:
    found: list[dict[str, dict[str, int]]] = []
    with pool.connection() as connection:
        for query in (COUNTED_ONE_BY_ONE, READS_COUNTED_ONE_BY_ONE):
            counts: dict[str, dict[str, int]] = {}
            for camera_id, outcome, number in connection.execute(query, (window_s,)):
                counts.setdefault(camera_id, {})[outcome] = int(number)
            found.append(counts)
    return found[0], found[1]


def assert_counts_agree(pool: ConnectionPool, tally: FrameCounts, window_s: float) -> Counts:
    """The window's counts, merged or not yet, are those of the frames counted one by one."""
    expected = counted_one_by_one(pool, window_s)
    assert tally.recent_outcome_counts(window_s) == RecentCounts(*expected)  # with the changes not yet merged
    tally.merge_counts()
    assert tally.recent_outcome_counts(window_s) == RecentCounts(*expected)
    with pool.connection() as connection:
        assert connection.execute("SELECT count(*) FROM frame_count_changes").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM frame_counts WHERE frames <= 0").fetchone() == (0,)
    return expected


def test_the_counts_follow_every_change_to_the_frames_log(postgres_url):
    """Frames sampled across 40 minutes (the window's start falls inside a minute), finished, their reads
    recorded, swept as lost, a frame's skip processed after all, then the oldest pruned: after each, the
    per-minute counts give the window's counts frame by frame, per camera, outcome and read outcome."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        log = FrameLog(pool, patience_s=0)
        tally = FrameCounts(pool)
        now = time.time()
        refs = [frame(camera, index, now - 2400 + index * 7.3) for camera in ("gate", "yard") for index in range(330)]
        log.record_sampled([FrameRecord(ref, "skipped" if ref.frame_index % 11 == 0 else "pending") for ref in refs])
        window_s = 1800 + 17.5  # starts mid-minute: its first part-minute is counted from the frames themselves
        assert_counts_agree(pool, tally, window_s)

        outcomes: list[FrameOutcome] = ["done", "expired", "corrupt", "done"]
        finished = [
            FrameRecord(ref, outcomes[ref.frame_index % 4], plates=ref.frame_index % 3)
            for ref in refs
            if ref.frame_index % 5 and ref.frame_index % 11
        ]
        log.record_final(finished)  # pending -> done (reads pending where plates), expired, corrupt
        assert_counts_agree(pool, tally, window_s)

        read_outcomes: list[ReadOutcome] = ["done", "expired", "refused", "skipped"]
        log.record_reads([(record.frame, read_outcomes[record.frame.frame_index % 4]) for record in finished
                          if record.plates])  # fmt: skip
        log.record_final([FrameRecord(refs[11], "done")])  # a skip processed after all by a re-read
        log.sweep_lost(0.0)  # every frame still pending: lost
        counts, reads = assert_counts_agree(pool, tally, window_s)
        assert counts["gate"]["lost"] and counts["yard"]["done"] and reads["gate"]["refused"]  # the test saw each

        pruned = prune_logs(pool, datetime.fromtimestamp(now - 2000, UTC))  # a window reaching back past it
        assert pruned.rows["frames"]
        assert_counts_agree(pool, tally, 2400)
        with pool.connection() as connection:  # the minutes pruned are no longer held, even as zeros
            oldest = connection.execute("SELECT extract(epoch FROM min(minute)) FROM frame_counts").fetchone()
        assert oldest is not None and float(oldest[0]) >= now - 2000 - 60
    finally:
        pool.close()


def test_concurrent_writers_of_one_camera_minute_lose_no_change_and_wait_for_no_lock(postgres_url):
    """Six writers finishing and reading frames of the same camera-minutes at once, while two merge the
    changes: no deadlock, no lock waited for past the writes' own, and no change lost."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=10)
    try:
        log = FrameLog(pool, patience_s=0)
        tally = FrameCounts(pool)
        now = time.time()
        refs = [frame(camera, index, now - 90 + index * 0.05) for camera in ("gate", "yard") for index in range(1200)]
        log.record_sampled([FrameRecord(ref, "pending") for ref in refs])
        failures: list[BaseException] = []
        writing = threading.Event()

        def writer(part: int) -> None:
            try:
                mine = [ref for ref in refs if ref.frame_index % 6 == part]
                for start in range(0, len(mine), 40):
                    batch = mine[start : start + 40]
                    log.record_final([FrameRecord(ref, "done", plates=1) for ref in batch])
                    log.record_reads([(ref, "done") for ref in batch])
            except BaseException as error:  # noqa: BLE001 - reported by the test
                failures.append(error)

        def merger() -> None:
            try:
                while writing.is_set():
                    tally.merge_counts()
            except BaseException as error:  # noqa: BLE001 - reported by the test
                failures.append(error)

        writing.set()
        mergers = [threading.Thread(target=merger) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(part,)) for part in range(6)]
        for thread in (*mergers, *writers):
            thread.start()
        for thread in writers:
            thread.join(timeout=120)
        writing.clear()
        for thread in mergers:
            thread.join(timeout=60)
        assert not failures
        counts, reads = assert_counts_agree(pool, tally, 3600)
        assert counts == {"gate": {"done": 1200}, "yard": {"done": 1200}}
        assert reads == {"gate": {"done": 1200}, "yard": {"done": 1200}}
    finally:
        pool.close()


def upgraded_with_frames(pool: ConnectionPool, monkeypatch) -> None:
    """3,000 frames of three cameras over the last 85 minutes written before migration 21, then it."""
    import common.schema_upgrade
    from common.schema_upgrade import upgrade

    with monkeypatch.context() as before:
        before.setattr(common.schema_upgrade, "MIGRATIONS", [m for m in MIGRATIONS if m[0] < 21])
        assert upgrade(pool)[-1] == 20
    with pool.connection() as connection:
        connection.execute(
            "INSERT INTO frames (frame_id, camera_id, seq, frame_index, captured_at, plates, stage_ms, outcome,"
            " read_outcome) SELECT 'cam' || (i %% 3) || ':' || i, 'cam' || (i %% 3), i, i,"
            " now() - make_interval(secs => i * 1.7), i %% 2, %s,"
            " (ARRAY['done', 'pending', 'skipped', 'lost'])[1 + i %% 4],"
            " CASE WHEN i %% 2 = 1 THEN (ARRAY['done', 'pending', 'expired'])[1 + i %% 3] END"
            " FROM generate_series(0, 2999) AS i",
            (json.dumps({}),),
        )
    assert upgrade(pool) == [version for version, _ in MIGRATIONS if version >= 21]  # 21 and any after it


def test_a_merge_under_way_leaves_the_others_to_return_at_once(postgres_url):
    """Every OCR and redactor worker and each prune round merge: one at a time (an advisory lock), the others
    returning 0 at once, their changes left for the next round. Deleting the same changes concurrently, a
    large backlog's merges could each hold rows the other needed next (a deadlock) or wait out the lock
    timeout (a review)."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        log = FrameLog(pool, patience_s=0)
        tally = FrameCounts(pool)
        now = time.time()
        log.record_sampled([FrameRecord(frame("gate", index, now - 60 + index), "pending") for index in range(30)])
        with psycopg.connect(postgres_url) as first:
            assert first.execute("SELECT frame_counts_merged()").fetchone()[0] > 0  # its transaction open
            started = time.monotonic()
            assert tally.merge_counts() == 0  # another merge holds the lock: none waited for
            assert time.monotonic() - started < 2
            first.commit()
        log.record_sampled([FrameRecord(frame("gate", index, now - 60 + index), "pending") for index in range(30, 40)])
        assert tally.merge_counts() > 0  # the lock let go with its transaction
        assert_counts_agree(pool, tally, 120)
    finally:
        pool.close()


def test_a_database_upgraded_with_frames_there_counts_them(postgres_url, monkeypatch):
    """Frames written before migration 21 (no counts kept then) are counted one by one, up to
    OLDER_FRAMES_COUNTED of them."""
    pool = open_pool(postgres_url, max_size=2)
    try:
        upgraded_with_frames(pool, monkeypatch)
        tally = FrameCounts(pool)
        for window_s in (600.5, 3600, 7200):
            counts, _ = assert_counts_agree(pool, tally, window_s)
        assert sum(sum(by_outcome.values()) for by_outcome in counts.values()) == 3000
    finally:
        pool.close()


def test_past_so_many_frames_before_the_counts_begin_the_counts_begin_there_and_say_so(
    postgres_url, monkeypatch, capsys
):
    """A window reaching back before the per-minute counts begin (the upgrade's next minute), over more
    frames than OLDER_FRAMES_COUNTED: counted from where the counts begin, never those before, and `alpr
    status` says where its counts begin (counting them one by one ran past the statement's 5 s at city
    rates the hour after the upgrade)."""
    import common.frame_counts
    from alpr.status_accounting import print_accounting
    from common.config import Settings

    pool = open_pool(postgres_url, max_size=2)
    try:
        upgraded_with_frames(pool, monkeypatch)
        with pool.connection() as connection:
            row = connection.execute("SELECT counted_from FROM frame_counts_since").fetchone()
        assert row is not None
        counted_from: datetime = row[0]
        log = FrameLog(pool, patience_s=0)
        tally = FrameCounts(pool)
        later = [frame("cam9", index, counted_from.timestamp() + index) for index in range(5)]  # counted
        log.record_sampled([FrameRecord(ref, "pending") for ref in later])
        older_in_window = sum(sum(n.values()) for n in counted_one_by_one(pool, 3600)[0].values()) - len(later)
        assert 1000 < older_in_window < 3000

        assert tally.recent_outcome_counts(3600, older_counted=older_in_window) == RecentCounts(
            *counted_one_by_one(pool, 3600)
        )  # as many as it may count: all counted
        fewer = tally.recent_outcome_counts(3600, older_counted=older_in_window - 1)
        assert fewer == RecentCounts({"cam9": {"pending": 5}}, {}, counted_from)

        monkeypatch.setattr(common.frame_counts, "OLDER_FRAMES_COUNTED", 100)
        print_accounting(Settings(database_url=postgres_url), 3600)
        out = capsys.readouterr().out
        assert f"counted from {counted_from.astimezone(UTC):%Y-%m-%d %H:%M} UTC only" in out
        assert "more than 100 to count one by one" in out
        rows = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["cam0"], ["cam1"], ["cam9"])]
        assert rows == [["cam9", "5"]]  # the older cameras' frames not counted
    finally:
        pool.close()


def test_the_count_reads_the_frames_of_the_windows_first_part_minute_only(postgres_url):
    """An hour of two cameras' frames, one a second: the count reads from the frames table only those of
    the window's first part-minute (and a probe a camera), not the hour's 7,200 (their counts' changes not
    merged yet: those are read from frame_count_changes)."""
    from alpr.cli import main
    from common.frame_counts import RECENT_OUTCOME_COUNTS

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        log = FrameLog(pool, patience_s=0)
        now = time.time()
        log.record_sampled([FrameRecord(frame(camera, index, now - 3599 + index), "pending")
                            for camera in ("gate", "yard") for index in range(3600)])  # fmt: skip
        with pool.connection() as connection:
            values: dict | tuple = (3600,)  # the count before migration 21: seconds back
            if "%(since)s" in RECENT_OUTCOME_COUNTS:
                from common.frame_counts import WINDOW_BOUNDS

                since, whole_from, _ = connection.execute(WINDOW_BOUNDS, (3600,)).fetchone()  # type: ignore[misc]
                values = {"since": since, "whole_from": whole_from}
            row = connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {RECENT_OUTCOME_COUNTS}", values).fetchone()
        assert row is not None
        assert frames_rows_read(row[0][0]["Plan"]) <= 2 * 60 + 2 * 3  # a part-minute a camera, and the probes
    finally:
        pool.close()


def frames_rows_read(plan: dict) -> int:
    """Rows the plan's scans of the frames table returned, over all their loops."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == "frames" else 0
    return own + sum(frames_rows_read(child) for child in plan.get("Plans", []))


def test_the_workers_and_pruners_logins_cannot_forge_counts_and_their_writes_are_counted(postgres_url, capsys):
    """A review: the workers' login, granted INSERT on every table, added a million frames done to a camera's
    minute. The counts are Postgres's to write (its triggers and merge run as the owner): no login the
    project grants may add to, change or empty them, yet each reads them (`alpr status`), and the frames the
    workers add and finish, and those the pruner deletes, are counted and merged as those logins. A role
    given INSERT on them through PUBLIC is refused the workers' grant, naming it. Both logins merge by a grant of
    their own: a database that takes EXECUTE from PUBLIC refused every merge (a review)."""
    from alpr.cli import main
    from common.audit import COUNTS_TABLES
    from tests.helpers import pruner_role, workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    forgeries = (
        "INSERT INTO frame_counts VALUES (now(), 'gate', 'done', NULL, 1000000)",
        "INSERT INTO frame_count_changes VALUES (now(), 'gate', 'done', NULL, 1000000)",
        "INSERT INTO frame_counts_since VALUES (true, now())",
        "UPDATE frame_counts SET frames = frames + 1000000",
        "DELETE FROM frame_count_changes",
        "TRUNCATE frame_counts",
    )
    now = time.time()
    refs = [frame(camera, index, now - 1200 + index * 9.1) for camera in ("gate", "yard") for index in range(120)]
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # a database that gives PUBLIC no EXECUTE
        admin.execute("REVOKE EXECUTE ON FUNCTION frame_counts_merged() FROM PUBLIC")
    with workers_role(postgres_url) as (_, as_workers), pruner_role(postgres_url) as (_, as_pruner):
        for login in (as_workers, as_pruner):
            for forged in forgeries:
                with psycopg.connect(login) as db, pytest.raises(psycopg.errors.InsufficientPrivilege):
                    db.execute(forged)
        workers = open_pool(as_workers, max_size=2)
        pruner = open_pool(as_pruner, max_size=2)
        owner = open_pool(postgres_url, max_size=2)
        try:
            log = FrameLog(workers, patience_s=0)
            tally = FrameCounts(workers)
            log.record_sampled([FrameRecord(ref, "pending") for ref in refs])  # added: the trigger, as the owner
            log.record_final([FrameRecord(ref, "done", plates=1) for ref in refs if ref.frame_index % 3])  # updated
            log.record_reads([(ref, "done") for ref in refs if ref.frame_index % 3 == 1])
            assert tally.merge_counts() > 0  # the merge, as the workers' login
            assert_counts_agree(owner, tally, 1800)  # read as the workers' login, agreeing with the frames
            assert prune_logs(pruner, datetime.fromtimestamp(now - 600, UTC)).rows["frames"]  # deleted as the pruner
            with owner.connection() as connection:  # the round's merge, as the pruner's login (which reads none)
                assert connection.execute("SELECT count(*) FROM frame_count_changes").fetchone() == (0,)
            assert_counts_agree(owner, FrameCounts(owner), 1800)
        finally:
            for pool in (workers, pruner, owner):
                pool.close()
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("GRANT EXECUTE ON FUNCTION frame_counts_merged() TO PUBLIC")

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"GRANT INSERT ON {COUNTS_TABLES[0]} TO PUBLIC")
    role = f"alpr_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        assert main(["db", "upgrade", "--database-url", postgres_url, "--grant", role]) == 2
        assert f"role {role} may still INSERT {COUNTS_TABLES[0]} (" in capsys.readouterr().err
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"REVOKE INSERT ON {COUNTS_TABLES[0]} FROM PUBLIC")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_alpr_status_warns_of_count_changes_left_unmerged_and_names_them_when_it_times_out(
    postgres_url, monkeypatch, capsys
):
    """A review: only the redactor pool's duty and prune rounds merged the count changes; with the pools that
    merge them down, `alpr status`, which reads each change not merged, slowed (2 million: 0.7-0.9 s) and
    then timed out saying only "a lock?". Past UNMERGED_CHANGES_WARNED (lowered here: Postgres's statistics
    give the backlog, no row read) it says how many wait and who merges them, and so does its time-out;
    merged, it says nothing of them."""
    import common.frame_counts
    from alpr.cli import main
    from alpr.status_accounting import UnansweredError, print_accounting
    from common.config import Settings

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, max_size=2)
    try:
        log = FrameLog(pool, patience_s=0)
        tally = FrameCounts(pool)
        now = time.time()
        log.record_sampled(
            [FrameRecord(frame("gate", index, now - 3000 + index * 61), "pending") for index in range(40)]
        )
        monkeypatch.setattr(common.frame_counts, "UNMERGED_CHANGES_WARNED", 30)
        deadline = time.monotonic() + 10
        while tally.unmerged_changes() < 40 and time.monotonic() < deadline:  # the statistics, a second late or so
            time.sleep(0.2)
        warning = "about 40 changes to the per-minute counts wait to be merged, and this count reads each"
        print_accounting(Settings(database_url=postgres_url), 3600)
        out = capsys.readouterr().out
        assert warning in out and "the redactor and OCR pools merge them every 15 s" in out
        assert "gate" in out.split("frames log:")[1]  # the counts follow

        monkeypatch.setattr("common.defaults.STATUS_STATEMENT_TIMEOUT_S", 0.5)
        with psycopg.connect(postgres_url) as holder:  # a count that times out (here behind a lock)
            holder.execute("LOCK TABLE frames IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(UnansweredError, match=f"see pg_locks\\); {warning}"):
                print_accounting(Settings(database_url=postgres_url), 3600)
        monkeypatch.undo()

        tally.merge_counts()
        monkeypatch.setattr(common.frame_counts, "UNMERGED_CHANGES_WARNED", 30)
        while tally.unmerged_changes() and time.monotonic() < deadline + 10:
            time.sleep(0.2)
        print_accounting(Settings(database_url=postgres_url), 3600)
        assert "wait to be merged" not in capsys.readouterr().out
    finally:
        pool.close()
