"""The ingest node's ledger against a real Postgres: rows kept while the frames log is unreachable,
and closing the node wakes a ledger asleep in its backoff for one last write (a frame never ends
without a record because the node stopped during an outage)."""

import socket
import time
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from common import defaults
from common.db import open_pool
from common.frame_counts import FrameCounts
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.metrics import Metrics
from ingest.ledger import FrameLedger
from tests.helpers import wait_for


def record(index: int, captured_at_s: float | None = None, recorded: bool = False) -> FrameRecord:
    ref = FrameRef(frame_id=f"cam:1:{index}", camera_id="cam", seq=index, frame_index=index,
                   captured_at_s=captured_at_s or time.time(), source_time_s=0.0, key=frame_key(f"cam:1:{index}"),
                   region="us", recorded=recorded)  # fmt: skip
    return FrameRecord(ref, "pending")


def watermark(pool: ConnectionPool) -> float | None:
    with pool.connection() as connection:
        found = connection.execute("SELECT recorded_until_s FROM camera_watermarks WHERE camera_id = 'cam'").fetchone()
        return float(found[0]) if found else None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def killed_once_ready(script: str, spool: Path) -> None:
    """Run `script` (its arguments: the spool folder, a port no Postgres listens on) and SIGKILL it once
    it prints `ready`."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    killed = subprocess.Popen([sys.executable, "-c", script, str(spool), str(closed_port())], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert killed.stdout is not None and killed.stdout.readline().strip() == "ready"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)


def test_close_wakes_a_ledger_in_backoff_and_writes_what_waited(postgres_url, monkeypatch):
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setattr(defaults, "DB_OUTAGE_BACKOFF_S", (60.0, 60.0))  # asleep for a minute after a failure
    attempts: list[str] = []
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"

    def open_log() -> FrameLog:
        attempts.append("try")
        return FrameLog(open_pool(down if len(attempts) == 1 else postgres_url, wait_s=1), patience_s=0)

    ledger = FrameLedger(open_log, Metrics(), capacity=100)
    ledger.start()
    ledger.add([record(i) for i in range(10)])
    deadline = time.monotonic() + 10
    while len(attempts) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # the first try failed (Postgres "down"); the ledger now sleeps its 60 s backoff
    assert len(attempts) == 1 and len(ledger.buffer) == 10
    started = time.monotonic()
    assert ledger.close(timeout_s=10) == 0  # woken at once, written on the second try
    assert time.monotonic() - started < 8 and len(attempts) == 2
    pool = open_pool(postgres_url)
    try:
        assert FrameCounts(pool).outcome_counts() == {"cam": {"pending": 10}}
    finally:
        pool.close()


def test_the_watermark_stays_before_the_oldest_frame_not_yet_recorded(postgres_url):
    """A frame sampled (and perhaps queued) without its row holds the camera's watermark before its capture
    time; once every row is written the watermark is a moment ago; a node that stops takes it away."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)

    try:
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100)
        ledger.start()
        first, second = record(0), record(1)
        ledger.sampled(first.frame)
        ledger.sampled(second.frame)
        ledger.add([second])  # the second is queued and recorded first; the first is not recorded yet
        wait_for(lambda: watermark(pool) == first.frame.captured_at_s, 10, "the watermark at the first frame")
        time.sleep(1.0)
        assert watermark(pool) == first.frame.captured_at_s  # held back, however long
        ledger.add([first])
        past_both = "the watermark past both (a moment ago)"
        wait_for(lambda: (watermark(pool) or 0) > second.frame.captured_at_s, 10, past_both)
        assert ledger.close(timeout_s=10) == 0
        assert watermark(pool) is None
    finally:
        pool.close()


def watermark_pool(postgres_url: str, monkeypatch):  # type: ignore[no-untyped-def]
    """A pool on the upgraded log, the ledger's idle rounds every 0.5 s rather than 2 (its waits 1 s)."""
    monkeypatch.setattr(defaults, "LEDGER_IDLE_WATERMARK_S", 0.5)
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    return open_pool(postgres_url)


def test_a_camera_another_node_took_leaves_its_watermark_to_that_node(postgres_url, monkeypatch):
    """A node whose camera another node took (its claim lapsed) kept writing the camera's watermark, a moment
    ago by its own frames, over the new holder's, and deleted it at its stop: the sighting pool grouped past
    the holder's frames not yet recorded, then held the camera for want of a watermark. Let go, it holds the
    watermark before the frames it left until their rows are written, and then neither writes nor deletes it."""
    pool = watermark_pool(postgres_url, monkeypatch)
    try:
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100)
        ledger.start()
        ledger.claimed("cam")
        wait_for(lambda: watermark(pool) is not None, 10, "its watermark")
        left = record(0)
        ledger.sampled(left.frame)
        ledger.released("cam")  # another node's camera now: the frame in hand still to be recorded
        wait_for(lambda: watermark(pool) == left.frame.captured_at_s, 10, "the watermark held before it")
        ledger.add([left])
        wait_for(lambda: FrameCounts(pool).outcome_counts() == {"cam": {"pending": 1}}, 10, "its row")
        holders_s = time.time() - 5  # the new holder's, behind a frame of its own still to record
        with pool.connection() as connection:
            connection.execute("UPDATE camera_watermarks SET recorded_until_s = %s", (holders_s,))
        time.sleep(2 * defaults.LEDGER_IDLE_WATERMARK_S + defaults.LEDGER_FLUSH_S)
        assert watermark(pool) == holders_s  # not written over
        assert ledger.close(timeout_s=10) == 0
        assert watermark(pool) == holders_s  # nor deleted at the stop
    finally:
        pool.close()


def test_recorded_footage_behind_the_clock_holds_the_watermark_at_its_last_frame_until_it_ends(
    postgres_url, monkeypatch
):
    """Recorded footage is dated by its time in the footage, which runs behind the clock when the chain is
    slower than the footage: with every row written, a moment ago would pass the date of the frame to
    come, and the sighting pool would group past it, never to group its reads."""
    pool = watermark_pool(postgres_url, monkeypatch)
    try:
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100)
        ledger.start()
        footage = record(0, time.time() - 3600, recorded=True)
        ledger.sampled(footage.frame)
        ledger.add([footage])
        wait_for(lambda: FrameCounts(pool).outcome_counts() == {"cam": {"pending": 1}}, 10, "its row")
        time.sleep(2 * defaults.LEDGER_IDLE_WATERMARK_S)
        assert watermark(pool) == footage.frame.captured_at_s  # not a moment ago: its next frame may be older
        ledger.ended("cam")
        wait_for(lambda: (watermark(pool) or 0) > time.time() - 60, 10, "the watermark a moment ago once it ended")
        assert ledger.close(timeout_s=10) == 0
    finally:
        pool.close()


def test_records_waiting_for_postgres_hold_no_region_of_interest():
    """A 256-point polygon made each waiting record ten times its size: a record waits without its frame's
    ROI, held once for its camera and put back as its row is written (tests/distributed/test_orphan_replay.py)."""
    from dataclasses import replace

    ledger = FrameLedger(lambda: FrameLog(open_pool("postgresql://x@127.0.0.1:1/none"), 0), Metrics(), capacity=10)
    polygon = [(float(i), float(i % 7)) for i in range(256)]
    waiting = replace(record(0), frame=record(0).frame.model_copy(update={"roi": polygon}))
    ledger.add([waiting, record(1)])  # never started: they wait in the buffer
    assert [r.frame.roi for r in ledger.buffer] == [None, None]
    assert [r.roi_dropped for r in ledger.buffer] == ["held", None]
    assert [r.frame.roi for r in ledger.rois.put_back(list(ledger.buffer))] == [polygon, None]
    assert [r.frame.frame_id for r in ledger.buffer] == ["cam:1:0", "cam:1:1"]


def test_a_ledger_writes_what_waited_within_seconds_of_postgres_coming_back(postgres_url):
    """The ledger waited a camera's backoff between tries (1 s doubling to 30 s): after a minute's
    outage the records it held, the cameras' watermarks and `alpr status`'s accounting reached the log
    31 s after Postgres was back, where the workers wrote within a second or two (a chaos review). It
    waits Postgres's own (defaults.DB_OUTAGE_BACKOFF_S: 0.5 s doubling to 5 s)."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    attempts: list[float] = []

    def open_log() -> FrameLog:  # Postgres away for the first four tries
        attempts.append(time.monotonic())
        return FrameLog(open_pool(down if len(attempts) <= 4 else postgres_url, wait_s=1), patience_s=0)

    ledger = FrameLedger(open_log, Metrics(), capacity=100)
    ledger.start()
    started = time.monotonic()
    ledger.add([record(i) for i in range(10)])
    try:
        wait_for(lambda: not ledger.buffer and not ledger.in_flight, 30, "the records written")
    finally:
        ledger.close(timeout_s=10)
    waits = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    # each try takes about 1.5 s to find Postgres away, then waits 0.5, 1, 2, 4 s (1, 2, 4, 8 s before)
    assert len(attempts) == 5 and time.monotonic() - started < 18 and max(waits) < 7.5, waits


def test_an_error_without_a_message_leaves_the_ledger_running(postgres_url, monkeypatch, caplog):
    """Its warning took the message's first line, which an empty message has not: the IndexError ended
    the ledger's thread for good, and every later row waited in its buffer until it overflowed."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setattr(defaults, "DB_OUTAGE_BACKOFF_S", (0.1, 0.1))
    attempts: list[str] = []

    def open_log() -> FrameLog:
        attempts.append("try")
        if len(attempts) == 1:
            raise RuntimeError("")
        return FrameLog(open_pool(postgres_url, wait_s=1), patience_s=0)

    ledger = FrameLedger(open_log, Metrics(), capacity=100)
    ledger.start()
    ledger.add([record(i) for i in range(5)])
    wait_for(lambda: not ledger.buffer, 10, "the rows written on the second try")
    assert ledger.close(timeout_s=5) == 0 and "frames log unavailable (RuntimeError)" in caplog.text


def test_a_row_postgres_refuses_goes_unrecorded_alone_and_the_frames_after_it_are_written(postgres_url):
    """A refused row (here a check an operator added) was retried with its batch for ever: every frame
    sampled after it waited behind it until the buffer overflowed and went unrecorded too."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection:
            connection.execute("ALTER TABLE frames ADD CONSTRAINT not_seven CHECK (frame_index <> 7)")
        metrics = Metrics()
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), metrics, capacity=100)
        ledger.start()
        ledger.add([record(i) for i in range(10)])
        wait_for(lambda: FrameCounts(pool).outcome_counts().get("cam", {}).get("pending") == 9, 10, "nine rows")
        ledger.add([record(i) for i in range(10, 15)])
        assert ledger.close(timeout_s=10) == 0
        assert FrameCounts(pool).outcome_counts() == {"cam": {"pending": 14}}
        assert metrics.registry.get_sample_value("alpr_frames_unrecorded_total", {"camera": "cam"}) == 1
    finally:
        pool.close()


def test_the_batch_being_written_when_the_node_stops_is_counted_unrecorded(caplog):
    """Postgres down at the stop: the thread had taken the rows from its buffer for a write that never
    came back; close() counted the buffer alone (empty), logged nothing, and no metric moved, so the
    frames went unrecorded in silence (117 of them in a fault drill)."""
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    metrics = Metrics()
    ledger = FrameLedger(lambda: FrameLog(open_pool(down, wait_s=10), patience_s=0), metrics, capacity=100)
    ledger.start()
    ledger.add([record(i) for i in range(10)])
    wait_for(lambda: len(ledger.in_flight) == 10, 10, "the thread to take the rows for its write")
    assert not ledger.buffer
    assert ledger.close(timeout_s=1) == 10
    assert metrics.registry.get_sample_value("alpr_frames_unrecorded_total", {"camera": "cam"}) == 10
    assert "10 frame records could not be written to the frames log" in caplog.text


def test_a_streams_watermark_stays_at_its_last_frame_as_its_next_may_be_dated_back_by_a_stall():
    """A stream's frames read after a stall are dated back into it (by the stream's timestamps): the
    watermark written meanwhile, a moment ago, passed them, and their reads were never grouped (a
    review). Held at the last frame's date, but never more than MAX_LAG_S behind (a silent stream)."""
    from ingest.stream_lag import MAX_LAG_S

    now = [1_000_000.0]
    ledger = FrameLedger(lambda: FrameLog(open_pool("postgresql://unused@127.0.0.1:1/x", wait_s=0), 0), Metrics(),
                         capacity=10, now=lambda: now[0])  # fmt: skip
    stream, footage = record(0, now[0] - 0.2), record(1, now[0] - 3600, recorded=True)
    footage = FrameRecord(footage.frame.model_copy(update={"camera_id": "film"}), "pending")
    for written in (stream, footage):
        ledger.sampled(written.frame, dated_back=True)  # a stream whose timestamps are trusted
        with ledger.lock:
            ledger.watermarks.settle([written])
    now[0] += 3.0  # a stall: nothing sampled for 3 s
    with ledger.lock:
        assert ledger.watermarks.marks([], closing=False) == {"cam": now[0] - 3.2, "film": now[0] - 3603}
    now[0] += 2 * MAX_LAG_S
    with ledger.lock:
        marks = ledger.watermarks.marks([], closing=False)
    assert marks["cam"] == pytest.approx(now[0] - 1 - MAX_LAG_S) and marks["film"] == now[0] - 3600 - 2 * MAX_LAG_S - 3
    ledger.ended("cam")
    ledger.ended("film")
    with ledger.lock:
        assert ledger.watermarks.marks([], closing=False) == {"cam": now[0] - 1, "film": now[0] - 1}


def test_cameras_asking_what_is_finished_while_postgres_is_away_wait_for_one_attempt_at_most():
    """Each camera of recorded footage asks the frames log what it finished before; with Postgres away,
    each waited its turn for its own attempt to connect (3 s), under one lock: six cameras started 3,
    6, ... 18 s late. Now one attempt fails for all for a while, and none waits on another's."""
    attempts = []

    def unreachable() -> FrameLog:
        attempts.append(time.monotonic())
        return FrameLog(open_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/none", wait_s=0.5), patience_s=0)

    ledger = FrameLedger(unreachable, Metrics(), capacity=10)
    started = time.monotonic()
    answers = [ledger.logged(iter(["cam:f1:0:0"])) for _ in range(6)]
    assert answers == [None] * 6 and len(attempts) == 1 and time.monotonic() - started < 3


SPOOLING_LEDGER = """
import sys, time
from pathlib import Path
from common.db import open_pool
from common.frame_log import FrameLog
from common.metrics import Metrics
from ingest.ledger import FrameLedger
from tests.ingest.test_ledger import record

def unreachable():
    return FrameLog(open_pool("postgresql://postgres@127.0.0.1:" + sys.argv[2] + "/none", wait_s=0.2), patience_s=0)

ledger = FrameLedger(unreachable, Metrics(), capacity=100, spool_dir=Path(sys.argv[1]))
ledger.start()
ledger.add([record(index) for index in range(3)])
time.sleep(1.5)  # a failed write: the spool opens with what the buffer holds
ledger.add([record(index) for index in range(3, 5)])  # spooled as they come
print("ready", flush=True)
time.sleep(600)
"""


def test_a_node_killed_while_postgres_is_away_leaves_its_records_to_the_next(postgres_url, tmp_path):
    """An ingest node killed (SIGKILL, a power cut) while Postgres was away lost every record its buffer
    held: skipped frames, which have no other writer, had no row and no count (an audit: 15 of 24). Its
    records are spooled to a file as they come; the next ledger to start with the folder writes them."""

    spool = tmp_path / "spool"
    killed_once_ready(SPOOLING_LEDGER, spool)
    assert len(list(spool.glob("ledger-*.jsonl"))) == 1
    pool = open_pool(postgres_url, wait_s=3)
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=spool)
    ledger.start()
    wait_for(lambda: not list(spool.glob("ledger-*.jsonl")), 10, "the spool written and deleted")
    assert ledger.close(5) == 0
    with pool.connection() as connection:
        rows = connection.execute("SELECT frame_index, outcome FROM frames ORDER BY frame_index").fetchall()
    assert rows == [(index, "pending") for index in range(5)]


def test_a_node_stopped_while_postgres_is_away_keeps_its_records_for_the_next(postgres_url, tmp_path):
    """Stopped cleanly while Postgres was still away, a node counted its records unrecorded; with a spool
    folder they are kept there, and written by the next node."""

    def unreachable() -> FrameLog:
        return FrameLog(open_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/none", wait_s=0.2), patience_s=0)

    spool = tmp_path / "spool"
    metrics = Metrics()
    stopped = FrameLedger(unreachable, metrics, capacity=100, spool_dir=spool)
    stopped.start()
    stopped.add([record(index) for index in range(4)])
    assert stopped.close(1) == 0 and not metrics.registry.get_sample_value(
        "alpr_frames_unrecorded_total", {"camera": "cam"}
    )
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, wait_s=3)
    following = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=spool)
    following.start()
    wait_for(lambda: not list(spool.glob("ledger-*.jsonl")), 10, "the spool written and deleted")
    following.close(5)
    with pool.connection() as connection:
        assert connection.execute("SELECT count(*) FROM frames").fetchone() == (4,)


def test_a_spool_file_others_could_write_or_a_link_is_not_taken_for_a_stopped_nodes(postgres_url, tmp_path):
    """The next node writes what the spool folder holds as the frames log's rows: pointed at a folder others
    may write to, it took anyone's file there (or a link to any file) for a stopped node's records."""
    from alpr.cli import main
    from ingest.spool_files import record_line

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    spool, elsewhere = tmp_path / "spool", tmp_path / "elsewhere.jsonl"
    spool.mkdir()
    planted = spool / "ledger-1-1.jsonl"
    planted.write_text(record_line(record(1)))
    planted.chmod(0o666)
    elsewhere.write_text(record_line(record(2)))
    (spool / "ledger-2-2.jsonl").symlink_to(elsewhere)
    (spool / "ledger-3-3.jsonl").write_text(record_line(record(3)))  # a stopped node's own: written
    pool = open_pool(postgres_url, wait_s=3)
    ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=spool)
    ledger.start()
    wait_for(lambda: not (spool / "ledger-3-3.jsonl").exists(), 10, "the node's own spool written")
    ledger.close(5)
    with pool.connection() as connection:
        assert connection.execute("SELECT frame_index FROM frames").fetchall() == [(3,)]
    assert planted.exists() and elsewhere.exists()


def spooled(spool) -> list[int]:  # type: ignore[no-untyped-def]
    """The frame indexes the spool folder's files hold, in order."""
    from ingest.spool_files import read_spool

    indexes = []
    for path in sorted(spool.glob("ledger-*.jsonl")):
        with path.open() as lines:
            indexes += [r.frame.frame_index for r in read_spool(lines)[0]]
    return indexes


def postgres_processes(server) -> list[int]:  # type: ignore[no-untyped-def]
    """The private server's postmaster and its children."""
    import os
    from pathlib import Path

    def parent(process: Path) -> int | None:
        try:
            return int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None  # gone meanwhile

    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    assert os.path.exists(f"/proc/{postmaster}")
    return [postmaster, *(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and parent(p) == postmaster)]


def test_a_postgres_that_hangs_has_the_records_spooled_within_seconds(private_postgres, tmp_path):
    """A Postgres that stops answering (a frozen host, a network cut) fails no write: the spool, opened
    on a failure, never was, and a node killed then lost every record since, with no count and no word
    (a review: 198 frames). A write unanswered for LEDGER_SPOOL_AFTER_S has what is held spooled."""
    import os
    import signal

    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", private_postgres.url]) == 0
    pool = open_pool(private_postgres.url, wait_s=3)
    spool = tmp_path / "spool"
    ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=spool)
    ledger.start()
    ledger.add([record(0)])

    def written() -> int:
        with pool.connection() as connection:
            return int(connection.execute("SELECT count(*) FROM frames").fetchone()[0])  # type: ignore[index]

    wait_for(lambda: written() == 1, 10, "the first record written")
    frozen = postgres_processes(private_postgres)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        ledger.add([record(index) for index in range(1, 4)])
        time.sleep(1.0)
        ledger.add([record(index) for index in range(4, 6)])
        within_s = defaults.LEDGER_SPOOL_AFTER_S + 10
        wait_for(lambda: sorted(spooled(spool)) == [1, 2, 3, 4, 5], within_s, "the records spooled")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert ledger.close(30) == 0
    assert written() == 6 and spooled(spool) == []  # written: the spool removed
    pool.close()


def test_a_spool_folder_removed_while_postgres_is_away_is_made_anew_with_every_record(tmp_path, caplog):
    """Its file removed, the records went on being appended to a file no one would read, and the node
    said at its stop that they were kept in the spool folder (a review: 44 frames with no record)."""
    import shutil

    def unreachable() -> FrameLog:
        return FrameLog(open_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/none", wait_s=0.2), patience_s=0)

    spool = tmp_path / "spool"
    ledger = FrameLedger(unreachable, Metrics(), capacity=100, spool_dir=spool)
    ledger.start()
    ledger.add([record(index) for index in range(3)])
    wait_for(lambda: spooled(spool) == [0, 1, 2], 10, "the spool opened on a failed write")
    shutil.rmtree(spool)  # an operator's clean-up, a tmpfs remounted
    ledger.add([record(index) for index in range(3, 5)])
    assert ledger.close(1) == 0
    assert sorted(spooled(spool)) == [0, 1, 2, 3, 4] and "was removed: spooling anew" in caplog.text


SPOOL_ON_A_FULL_DISK = """
import resource, signal, sys, time
from pathlib import Path
from common.db import open_pool
from common.frame_log import FrameLog
from common.metrics import Metrics
from ingest.ledger import FrameLedger
from tests.ingest.test_ledger import record

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

def unreachable():
    return FrameLog(open_pool("postgresql://postgres@127.0.0.1:" + sys.argv[2] + "/none", wait_s=0.2), patience_s=0)

ledger = FrameLedger(unreachable, Metrics(), capacity=100, spool_dir=Path(sys.argv[1]))
ledger.start()
for index in range(8):
    ledger.add([record(index)])
    time.sleep(0.4)
print(ledger.close(1), flush=True)
"""


def test_a_spool_that_cannot_be_written_leaves_no_partial_file_to_count_twice(tmp_path):
    """A spool write that failed (a full disk) left its partial file, and each retry one more: the next
    node adopted them and wrote rows for frames this one had counted unrecorded (a review: 178 accounted
    for 159 sampled). Its records all held in memory, the partial file goes."""
    import subprocess
    import sys

    from ingest.spool_files import record_line
    from tests.conftest import REPO as REPO_ROOT

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "ledger-1-1.jsonl").write_text("".join(record_line(record(index)) for index in range(100, 103)))
    done = subprocess.run([sys.executable, "-c", SPOOL_ON_A_FULL_DISK, str(spool), str(closed_port())],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # its own 8 either counted unrecorded or on disk (its spool's first write, holding the adopted 3 as well,
    # fit under the limit: kept, as it holds them), never both; no partial file left with more
    on_disk = sorted(spooled(spool))
    assert on_disk[-3:] == [100, 101, 102] and len(set(on_disk)) == len(on_disk), on_disk
    assert int(done.stdout) + len(on_disk) - 3 == 8, (done.stdout, on_disk)


def test_a_stalled_write_whose_spool_cannot_be_written_is_tried_once_not_every_second(tmp_path, monkeypatch, caplog):
    """The watchdog tried the spool every second while a write hung and the spool could not be written,
    each time writing out the whole buffer (up to 200,000 records) under the lock the cameras wait on,
    and warning each time (a review: cameras held up to 1.4 s)."""
    import threading

    monkeypatch.setattr(defaults, "LEDGER_SPOOL_AFTER_S", 0.5)
    release = threading.Event()

    def hanging() -> FrameLog:
        release.wait(30)  # Postgres not answering
        raise OSError("gone")

    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the spool folder cannot be made here
    ledger = FrameLedger(hanging, Metrics(), capacity=100, spool_dir=blocked)
    tries = []
    open_spool = ledger.spool.open
    monkeypatch.setattr(ledger.spool, "open", lambda: tries.append(1) or open_spool())
    ledger.start()
    ledger.add([record(index) for index in range(3)])
    time.sleep(4.0)
    assert len(tries) == 1 and caplog.text.count("cannot be written") == 1
    release.set()
    ledger.close(2)


RESTARTED_LEDGER = """
import sys, time
from pathlib import Path
from common.db import open_pool
from common.frame_log import FrameLog
from common.metrics import Metrics
from ingest.ledger import FrameLedger
from tests.ingest.test_ledger import record

def unreachable():
    return FrameLog(open_pool("postgresql://postgres@127.0.0.1:" + sys.argv[2] + "/none", wait_s=0.2), patience_s=0)

ledger = FrameLedger(unreachable, Metrics(), capacity=100, spool_dir=Path(sys.argv[1]))
ledger.start()
first = int(sys.argv[3])
ledger.add([record(index) for index in range(first, first + 5)])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:  # a failed write: the spool opens with every record held
    with ledger.lock:  # (opened and written under it)
        if ledger.spool.file is not None:
            break
    time.sleep(0.05)
print("ready", flush=True)
time.sleep(600)
"""


def test_nodes_killed_in_turn_while_postgres_is_away_spool_each_record_once(postgres_url, tmp_path):
    """Each node adopted the spool files left, copied their records into its own spool on a failed write,
    and left the adopted files in place when killed: the spool doubled with every restart (a review: 2,550
    records for 80 frames after 8 kills), and the next node started with all of them in memory, past its
    capacity. The files a node adopted go once its own spool holds their records."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO as REPO_ROOT

    spool, port = tmp_path / "spool", closed_port()
    for run in range(4):  # 5 new frames a run
        killed = subprocess.Popen([sys.executable, "-c", RESTARTED_LEDGER, str(spool), str(port), str(5 * run)],
                                  cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert killed.stdout is not None and killed.stdout.readline().strip() == "ready"
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(10)
        assert sorted(spooled(spool)) == list(range(5 * (run + 1))), f"after kill {run + 1}"
        assert len(list(spool.glob("ledger-*.jsonl"))) == 1
    assert written_by_a_node(postgres_url, spool) == list(range(20))


def written_by_a_node(postgres_url: str, spool: Path) -> list[int]:
    """Start a node's ledger on `spool` with Postgres up (the schema made); the frame indexes of the
    frames log once it has written the spool folder's records and removed their files."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    pool = open_pool(postgres_url, wait_s=3)
    try:
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=spool)
        ledger.start()
        wait_for(lambda: not list(spool.glob("ledger-*.jsonl")), 10, "the spool written and deleted")
        assert ledger.close(5) == 0
        with pool.connection() as connection:
            return [index for (index,) in connection.execute("SELECT frame_index FROM frames ORDER BY 1")]
    finally:
        pool.close()


def unreachable_log() -> FrameLog:
    return FrameLog(open_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/none", wait_s=0.2), patience_s=0)


def test_a_node_adopts_each_frame_once_and_no_more_than_its_capacity(postgres_url, tmp_path):
    """A node adopted every record the spool folder held, repeats and all, past its capacity: every frame it
    sampled then went unrecorded. It holds each frame once (a node killed after writing its own spool and
    before removing the files it adopted leaves them twice) and at most its capacity; a file that alone
    holds more is split, the rest left on disk for later (not counted unrecorded: a review found 13 of 18
    records destroyed that way with Postgres up), and the next node writes every one."""
    from ingest.spool_files import record_line

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "ledger-1-1.jsonl").write_text("".join(record_line(record(index)) for index in range(6)))
    (spool / "ledger-2-2.jsonl").write_text("".join(record_line(record(index)) for index in range(3, 9)))
    metrics = Metrics()
    ledger = FrameLedger(unreachable_log, metrics, capacity=5, spool_dir=spool)
    ledger.spool.adopt()
    assert [r.frame.frame_index for r in ledger.buffer] == [0, 1, 2, 3, 4]
    assert not metrics.registry.get_sample_value("alpr_frames_unrecorded_total", {"camera": "cam"})
    assert ledger.unrecorded_counts() == {}
    assert not (spool / "ledger-1-1.jsonl").exists()  # split: its first 5 held, locked; the 6th left alone
    assert sorted(spooled(spool)) == [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8] and not list(spool.glob(".*"))
    other = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool)
    other.spool.adopt()  # a node starting meanwhile takes what this one left, not what it holds
    assert sorted(r.frame.frame_index for r in other.buffer) == [3, 4, 5, 6, 7, 8]
    with other.lock:
        other.spool.let_go_adopted(remove=False)
    assert ledger.close(1) == 0  # kept in the spool for the next node
    assert written_by_a_node(postgres_url, spool) == list(range(9))


def test_nodes_restarting_with_postgres_up_write_every_record_past_their_capacity(postgres_url, tmp_path):
    """Postgres up, three stopped nodes' files of 6 records each, two nodes of capacity 5 starting one after
    the other (nodes on a host share the folder; a power cut kills them all, the first to restart took
    every file): the first kept 5, counted 13 unrecorded and removed the files, and the second found none
    (a review: 5 rows of 18). A node takes what it has room for and the rest later, once written."""
    from alpr.cli import main
    from ingest.spool_files import record_line

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    for node in range(3):
        (spool / f"ledger-{node + 1}-1.jsonl").write_text(
            "".join(record_line(record(6 * node + index)) for index in range(6))
        )
    pool = open_pool(postgres_url, wait_s=3)
    try:
        nodes = [FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=5, spool_dir=spool)
                 for _ in range(2)]  # fmt: skip
        for node in nodes:
            node.start()
        assert all(len(node.buffer) <= 5 for node in nodes)
        wait_for(lambda: not list(spool.glob("ledger-*.jsonl")), 30, "every spool file written and removed")
        assert [node.close(5) for node in nodes] == [0, 0]
        assert [node.unrecorded_counts() for node in nodes] == [{}, {}]
        with pool.connection() as connection:
            assert connection.execute("SELECT frame_index FROM frames ORDER BY 1").fetchall() == [
                (index,) for index in range(18)
            ]
        assert list(spool.iterdir()) == []
    finally:
        pool.close()


def test_a_stop_that_can_make_no_spool_leaves_the_adopted_files_on_disk(tmp_path, monkeypatch):
    """Postgres away and no spool file can be made at the stop (a full disk): the node counted every record
    it held unrecorded and removed the file it had adopted, whose records were safely on disk (a review:
    60 counted and deleted, of which only 10 were in memory only). Only those are lost; the file stays,
    unlocked, for the next node."""
    import errno

    from ingest.spool_files import record_line

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "ledger-1-1.jsonl").write_text("".join(record_line(record(index)) for index in range(50)))

    def full_disk(folder, tag=""):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ingest.ledger_spool.new_spool_file", full_disk)
    metrics = Metrics()
    ledger = FrameLedger(unreachable_log, metrics, capacity=1000, spool_dir=spool)
    ledger.start()
    with ledger.lock:
        assert len(ledger.buffer) + len(ledger.in_flight) == 50
    ledger.add([record(index) for index in range(100, 110)])  # held in memory only
    time.sleep(1.0)  # a failed write: no spool can be made
    assert ledger.close(1) == 10
    assert ledger.unrecorded_counts() == {"cam": 10}
    assert metrics.registry.get_sample_value("alpr_frames_unrecorded_total", {"camera": "cam"}) == 10
    assert sorted(spooled(spool)) == list(range(50))
    other = FrameLedger(unreachable_log, Metrics(), capacity=1000, spool_dir=spool)
    other.spool.adopt()  # let go: the next node takes it
    assert len(other.buffer) == 50


def test_a_spool_file_one_node_adopted_is_not_adopted_by_another(tmp_path):
    """Adoption locked a file only while reading it: a second node starting meanwhile adopted the same
    records, and both spooled them on a failed write. A node holds the files it adopted locked until their
    records are written or in its own spool (locked in turn)."""
    from ingest.spool_files import record_line

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "ledger-1-1.jsonl").write_text("".join(record_line(record(index)) for index in range(3)))
    first = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool)
    second = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool)
    first.spool.adopt()
    second.spool.adopt()
    assert len(first.buffer) == 3 and len(second.buffer) == 0
    with first.lock:
        first.spool.open()  # a failed write: its own spool holds them, the adopted file goes
    assert sorted(spooled(spool)) == [0, 1, 2] and not (spool / "ledger-1-1.jsonl").exists()
    second.spool.adopt()
    assert len(second.buffer) == 0
    assert first.close(1) == 0 and sorted(spooled(spool)) == [0, 1, 2]


class FullDisk:
    """A spool file whose appends fail (a disk filled up)."""

    def __init__(self, file) -> None:  # type: ignore[no-untyped-def]
        self.file = file

    def write(self, text: str) -> int:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return int(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def test_a_spool_holding_adopted_records_that_cannot_be_appended_to_is_kept(tmp_path):
    """A spool file that cannot be written is removed, its records held in memory; but once it holds the
    records of the files a node adopted (removed then), they would be on disk nowhere, and a node killed
    after lost them without a count. That file is kept, claimed, until its records are written or spooled."""
    from ingest.spool_files import record_line

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "ledger-1-1.jsonl").write_text("".join(record_line(record(index)) for index in range(3)))
    ledger = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool)
    ledger.spool.adopt()
    with ledger.lock:
        ledger.spool.open()  # a failed write
        assert ledger.spool.file is not None
        ledger.spool.file = FullDisk(ledger.spool.file)  # type: ignore[assignment]
    ledger.add([record(9)])  # cannot be appended: held in memory
    assert ledger.spool.file is None and sorted(spooled(spool)) == [0, 1, 2]  # on disk still, for a node killed now
    other = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool)
    other.spool.adopt()
    assert len(other.buffer) == 0  # claimed still
    assert ledger.close(1) == 0  # spooled anew, every record held
    assert sorted(spooled(spool)) == [0, 1, 2, 9] and len(list(spool.glob("ledger-*.jsonl"))) == 1


KILLED_SPLIT = """
import os, sys, time
from pathlib import Path
from common.db import open_pool
from common.frame_log import FrameLog
from common.metrics import Metrics
from ingest.ledger import FrameLedger

def killed_here(*args, **kwargs):
    print("ready", flush=True)  # the split's first file written and synced, not yet named a spool file
    time.sleep(600)

def unreachable():
    return FrameLog(open_pool("postgresql://postgres@127.0.0.1:" + sys.argv[2] + "/none", wait_s=0.2), patience_s=0)

os.link = killed_here
FrameLedger(unreachable, Metrics(), capacity=5, spool_dir=Path(sys.argv[1])).start()  # splits the file of 8
"""


def test_a_split_killed_midway_leaves_no_part_file_for_good(postgres_url, tmp_path):
    """A node killed while it split a spool file too big for it (`write_spool_file`) left the file it was
    writing, `.ledger-split-*.part`: no ledger adopts it (its records are in the file split, still whole)
    and none removed it, so each such kill left one more in the spool folder for good. A ledger that starts
    removes them; every record is written once all the same."""

    from ingest.spool_files import record_line

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "ledger-1-1.jsonl").write_text("".join(record_line(record(index)) for index in range(8)))
    killed_once_ready(KILLED_SPLIT, spool)
    assert len(list(spool.glob(".ledger-split-*.part"))) == 1  # what the kill left
    assert sorted(spooled(spool)) == list(range(8))  # the file split whole still
    assert written_by_a_node(postgres_url, spool) == list(range(8))
    assert list(spool.iterdir()) == []


def test_a_starting_ledger_removes_only_the_parts_splits_left_in_its_folder(tmp_path):
    """Of the stale parts, only a split's own: this user's regular files named as a split names them, in
    the spool folder itself. A link is not followed (its target stays) nor removed; a part a live ledger
    holds locked (writing it) stays, as do other names and subfolders."""
    import fcntl

    from ingest.spool_files import record_line

    spool, outside = tmp_path / "spool", tmp_path / "outside.part"
    spool.mkdir(mode=0o700)
    outside.write_text("not the ledger's")
    (spool / ".ledger-split-stale.part").write_text(record_line(record(1)))
    (spool / ".ledger-split-link.part").symlink_to(outside)
    (spool / "notes.part").write_text("someone's")
    (spool / "sub").mkdir()
    (spool / "sub" / ".ledger-split-deeper.part").write_text(record_line(record(2)))
    live = spool / ".ledger-split-live.part"
    live.write_text(record_line(record(3)))
    with live.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live ledger writing it
        ledger = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool)
        ledger.start()
        assert ledger.close(1) == 0
    left = sorted(path.name for path in spool.iterdir())
    assert left == [".ledger-split-link.part", ".ledger-split-live.part", "notes.part", "sub"]
    assert outside.read_text() == "not the ledger's" and (spool / "sub" / ".ledger-split-deeper.part").exists()


def test_a_cameras_last_date_is_its_latest_frame_logged_held_or_grouped(postgres_url):
    """What a node dates a camera's frames after (FrameLedger.last_dated): the latest of its frames in the
    frames log, of the records the ledger holds to write (a spool adopted: a node killed while Postgres was
    away), and of how far the sighting pool grouped it, unless past Postgres's now (a cursor a sighting worker
    whose host clock ran ahead saved: a node dated the camera's frames 18 minutes ahead, a review); with
    Postgres away, the records held alone, and it says it cannot tell more."""
    from alpr.cli import main

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    now_s = time.time()
    pool = open_pool(postgres_url)
    try:
        FrameLog(pool, patience_s=0).record_sampled([record(0, now_s - 30)])
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100)  # not started: it holds
        assert ledger.last_dated("cam") == (pytest.approx(now_s - 30, abs=1e-5), True)
        ledger.add([record(1, now_s - 10)])
        assert ledger.last_dated("cam") == (pytest.approx(now_s - 10, abs=1e-5), True)
        with pool.connection() as connection:
            connection.execute("INSERT INTO sighting_cursors (camera_id, grouped_until_s) VALUES ('cam', %s)",
                               (now_s - 5,))  # fmt: skip
        assert ledger.last_dated("cam") == (pytest.approx(now_s - 5, abs=1e-5), True)
        with pool.connection() as connection:
            connection.execute("UPDATE sighting_cursors SET grouped_until_s = %s", (now_s + 1080,))
        assert ledger.last_dated("cam") == (pytest.approx(now_s - 10, abs=1e-5), True)
        assert ledger.last_dated("other") == (0.0, True)
    finally:
        pool.close()

    def unreachable() -> FrameLog:
        return FrameLog(open_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/none", wait_s=0.5), patience_s=0)

    away = FrameLedger(unreachable, Metrics(), capacity=10)
    away.add([record(2, now_s + 60)])
    assert away.last_dated("cam") == (now_s + 60, False) and away.last_dated("other") == (0.0, False)


def test_a_claimed_camera_has_its_watermark_before_its_first_frame_held_where_its_frames_will_be_dated(
    postgres_url, monkeypatch
):
    """A camera the node claimed has its watermark from the start, sampling or not (a node that took a
    camera over and sampled nothing left its dead predecessor's in place, for the frames' lifetime): held
    at the date its frames will come after until it samples or ends, lowered by a hold, never raised by
    one; a moment ago once it ended; removed at the stop."""
    pool = watermark_pool(postgres_url, monkeypatch)
    now_s = time.time()
    try:
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100)
        ledger.start()
        ledger.claimed("cam", held_at_s=now_s - 100)
        wait_for(lambda: watermark(pool) == now_s - 100, 10, "the watermark held where its frames will be dated")
        ledger.hold("cam", now_s - 200)
        wait_for(lambda: watermark(pool) == now_s - 200, 10, "the watermark lowered")
        ledger.hold("cam", now_s - 50)
        time.sleep(2 * defaults.LEDGER_IDLE_WATERMARK_S)
        assert watermark(pool) == now_s - 200
        ledger.ended("cam")
        wait_for(lambda: (watermark(pool) or 0) > time.time() - 60, 10, "the watermark a moment ago once it ended")
        assert ledger.close(timeout_s=10) == 0
        assert watermark(pool) is None
    finally:
        pool.close()


def test_a_spool_files_database_is_named_by_host_port_name_and_search_path_never_its_password():
    """The tag a spool file is named with: the database's host, port, name and search path, hashed; not
    the password nor the user (a node whose password was rotated adopts its files as before)."""
    from ingest.spool_files import database_tag

    tag = database_tag("postgresql://alpr:secret@db.example:5432/alpr")
    assert tag.startswith("db") and "secret" not in tag and "alpr" not in tag
    assert tag == database_tag("postgresql://other:rotated@db.example/alpr")  # the port is 5432 unsaid
    assert database_tag("postgresql://u@localhost/alpr") == database_tag("postgresql://u@127.0.0.1:5432/alpr")
    others = [
        "postgresql://alpr@db2.example/alpr",
        "postgresql://alpr@db.example:5433/alpr",
        "postgresql://alpr@db.example/alpr2",
        "postgresql://alpr@db.example/alpr?options=-csearch_path%3Dx",
    ]
    assert len({tag, *map(database_tag, others)}) == 5 and database_tag(None) == ""


def test_a_spool_file_is_adopted_only_by_a_node_of_its_database(postgres_url, tmp_path, caplog):
    """Chains on one host shared the default spool folder: chain A's records, spooled while its Postgres
    was away, were written by chain B's node into B's database and the file removed (a review: B held
    A's camera as pending, and swept it as lost). Each spool file is named for its database, and a node
    adopts only its database's: another's are left in place (said once, their count), for A's node.
    An earlier version's file (untagged) is adopted as before, and said so."""
    import uuid

    import psycopg

    from alpr.cli import main
    from ingest.spool_files import database_tag, record_line

    base = postgres_url.split("?")[0]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url_a, url_b = f"{base}?options=-csearch_path%3D{schema}", postgres_url
    pools: list[ConnectionPool] = []

    def written(url: str) -> list[int]:
        pools.append(pool := open_pool(url, wait_s=3))
        with pool.connection() as connection:
            return [index for (index,) in connection.execute("SELECT frame_index FROM frames ORDER BY 1")]

    try:
        assert main(["db", "upgrade", "--database-url", url_a]) == 0
        assert main(["db", "upgrade", "--database-url", url_b]) == 0
        spool = tmp_path / "spool"
        away = FrameLedger(unreachable_log, Metrics(), capacity=100, spool_dir=spool, spool_tag=database_tag(url_a))
        away.start()
        away.add([record(index) for index in range(4)])
        assert away.close(1) == 0  # chain A's node stopped while its Postgres was away: kept in the spool
        [spooled_a] = spool.glob("ledger-*.jsonl")
        (spool / "ledger-7-7.jsonl").write_text(record_line(record(10)))  # an earlier version's: untagged
        caplog.set_level("INFO", logger="ingest.ledger_spool")
        pools.append(pool_b := open_pool(url_b, wait_s=3))
        node_b = FrameLedger(lambda: FrameLog(pool_b, patience_s=0), Metrics(), capacity=100, spool_dir=spool,
                             spool_tag=database_tag(url_b))  # fmt: skip
        node_b.start()
        wait_for(lambda: not (spool / "ledger-7-7.jsonl").exists(), 10, "the untagged file written")
        node_b.spool.adopt()  # again: A's file is still not B's, and said once
        assert node_b.close(5) == 0
        assert written(url_b) == [10] and spooled_a.exists()
        assert caplog.text.count("1 spool files in") == 1 and "another database's" in caplog.text
        assert "untagged, spooled by an earlier version" in caplog.text
        pools.append(pool_a := open_pool(url_a, wait_s=3))
        node_a = FrameLedger(lambda: FrameLog(pool_a, patience_s=0), Metrics(), capacity=100, spool_dir=spool,
                             spool_tag=database_tag(url_a))  # fmt: skip
        node_a.start()
        wait_for(lambda: not spooled_a.exists(), 10, "chain A's spool written by chain A's node")
        assert node_a.close(5) == 0 and written(url_a) == [0, 1, 2, 3]
    finally:
        for pool in pools:
            pool.close()
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_busy_nodes_spool_stays_small_with_postgres_a_few_milliseconds_away(postgres_url, tmp_path):
    """The spool journals every frame sampled and every record, and was started anew only at a buffer found
    empty after a write: with Postgres 5 ms away, records came during every write, and a node's spool grew
    190 KB/s for ever (a diff review), every record of it written again by the next node."""
    import subprocess
    import sys
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    from alpr.cli import main
    from tests.helpers import free_port

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    port, parts = free_port(), urlsplit(postgres_url)
    proxy = subprocess.Popen([sys.executable, "-m", "tests.ingest.latency_proxy", str(port), str(parts.port), "0.005"])
    spool = tmp_path / "spool"
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 20, "the proxy")
        pool = open_pool(urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}")), wait_s=10)
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=200_000, spool_dir=spool)
        ledger.start()
        run, started, frames = uuid.uuid4().hex[:8], time.monotonic(), 0
        while time.monotonic() - started < 8.0:  # 4 frames every 16 ms (250 a second) across 50 cameras
            refs = [FrameRef(frame_id=f"cam{i % 50}:{run}:{i}", camera_id=f"cam{i % 50}", seq=i, frame_index=i,
                             captured_at_s=time.time(), source_time_s=0.0, key=frame_key(f"cam{i % 50}:{run}:{i}"),
                             region="us") for i in range(frames, frames + 4)]  # fmt: skip
            for ref in refs:
                ledger.sampled(ref)
            ledger.add([FrameRecord(ref, "pending") for ref in refs])
            frames += 4
            time.sleep(max(0.0, started + frames / 250 - time.monotonic()))
        lines = sum(len(path.read_bytes().splitlines()) for path in spool.glob("*") if path.is_file())
        assert ledger.close(30) == 0
        pool.close()
    finally:
        proxy.kill()
        proxy.wait()
    assert frames >= 1500 and lines < 2500, (frames, lines)  # 2 lines a frame had stayed: 4,000 and growing


def test_a_spool_folder_is_made_and_tried_at_start_and_one_that_cannot_be_written_refused(tmp_path):
    """ALPR_LEDGER_SPOOL_DIR naming a file ran the node with a WARNING at its first record, its records in
    memory alone (a kill lost them all): the node's start now makes the folder and writes a file there."""
    from common.errors import ConfigError
    from ingest.spool_files import check_spool_folder

    missing = tmp_path / "a" / "spool"
    check_spool_folder(missing)
    assert missing.is_dir() and list(missing.iterdir()) == [] and missing.stat().st_mode & 0o777 == 0o700
    check_spool_folder(missing)  # again, as each start does: nothing left
    assert list(missing.iterdir()) == []
    a_file = tmp_path / "clip.mp4"
    a_file.write_bytes(b"frames")
    for folder in (a_file, a_file / "spool"):
        with pytest.raises(ConfigError, match=r"^ALPR_LEDGER_SPOOL_DIR \(.*\) cannot be written: ") as refused:
            check_spool_folder(folder)
        assert str(folder) in str(refused.value)
    assert a_file.read_bytes() == b"frames"
