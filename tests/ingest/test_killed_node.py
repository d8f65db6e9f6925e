"""An ingest node killed with SIGKILL (the OOM killer, `docker kill`, a VM's power cut) leaves no sampled
frame without a record once the next node has started with the same spool folder: real `alpr ingest`
processes against a private Redis and the real Postgres, killed in turn mid-run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import psycopg

from alpr.cli import main
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.jobs import DetectJob, FrameRef
from common.metrics import Metrics
from common.queues import connect_redis, stage_queue
from ingest.ledger import FrameLedger
from ingest.spool_files import is_sampled_only, read_spool
from tests.conftest import REPO
from tests.helpers import alpr_process, wait_for, write_cameras
from tests.ingest.test_ledger import record

KILLS = 3


def image_folder(folder: Path) -> Path:
    """Three images and one that is not a JPEG: every fourth frame sampled is `corrupt`, a record only the
    node's ledger writes (a queued frame's row the workers would write too)."""
    folder.mkdir()
    for index in range(3):
        image = np.full((120, 160, 3), 60 * index, np.uint8)
        (folder / f"{index}.jpg").write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    (folder / "3.jpg").write_bytes(b"not a jpeg " * 20)
    return folder


def queued_frames(redis_url: str) -> dict[str, int]:
    """The frames the nodes queued (frame id -> its seq): the detect jobs waiting (no worker runs)."""
    queue = stage_queue(connect_redis(redis_url), "detect")
    return {ref.frame_id: ref.seq for job in queue.jobs for ref in DetectJob.model_validate(job.args[0]).frames}


def run_of(frame_id: str) -> str:
    """The node run that sampled a looping folder's frame: `camera:i<file>:<run ms>.<pass>`."""
    return frame_id.split(":")[2].split(".")[0]


def test_nodes_killed_mid_run_leave_every_sampled_frame_with_a_record(redis_url, postgres_url, tmp_path):
    """A node killed -9 lost the records not yet written (about half a second: the skipped and corrupt
    frames, whose only writer is its ledger, and the pending rows of frames just queued) and never
    recorded the frames it was packing into a job: they had no row, and no count. Each frame sampled and
    each record made is journalled in its spool file; the next node writes them first, a frame never
    recorded as `lost` (ingest node killed) where no row has it. The frames sampled: each run's frames
    are numbered (seq) from 0 without a gap, so every seq up to the highest of a row or a queued frame
    was sampled."""
    spool = tmp_path / "spool"
    cameras = write_cameras(tmp_path / "cameras.yaml", [
        {"id": "gate", "source": str(image_folder(tmp_path / "images")), "sample_fps": 20, "loop": True},
    ])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url, "ALPR_LEDGER_SPOOL_DIR": str(spool),
        "ALPR_FRAMES_PER_JOB": "4", "ALPR_MAX_QUEUE_DEPTH": "10000", "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    args = ["ingest", "--cameras", str(cameras)]
    for kill in range(KILLS):
        before = len(queued_frames(redis_url))
        node = alpr_process(env, args, tmp_path / f"killed-{kill}.log")
        try:
            wait_for(lambda node=node, before=before: len(queued_frames(redis_url)) >= before + 12 or node.poll()
                     is not None, 60, "the node queueing frames")  # fmt: skip
            assert node.poll() is None, (tmp_path / f"killed-{kill}.log").read_text()
            time.sleep(random.uniform(0.3, 1.5))  # mid-run, at no set moment
        finally:
            node.send_signal(signal.SIGKILL)
            node.wait(10)
    last = alpr_process(env, [*args, "--max-seconds", "3"], tmp_path / "last.log")
    assert last.wait(60) == 0, (tmp_path / "last.log").read_text()

    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute("SELECT frame_id, seq, outcome, detail FROM frames").fetchall()
    recorded = {frame_id: (seq, outcome, detail) for frame_id, seq, outcome, detail in rows}
    queued = queued_frames(redis_url)
    sampled: dict[str, set[int]] = defaultdict(set)
    for frame_id, seq in [*queued.items(), *((frame_id, seq) for frame_id, (seq, _, _) in recorded.items())]:
        sampled[run_of(frame_id)].add(seq)
    assert len(sampled) == KILLS + 1, sorted(sampled)
    unrecorded_queued = sorted(set(queued) - set(recorded))
    assert not unrecorded_queued, f"{len(unrecorded_queued)} frames queued without a row: {unrecorded_queued[:5]}"
    recorded_seqs: dict[str, set[int]] = defaultdict(set)
    for frame_id, (seq, _, _) in recorded.items():
        recorded_seqs[run_of(frame_id)].add(seq)
    gaps = {run: sorted(set(range(max(seqs) + 1)) - recorded_seqs[run]) for run, seqs in sampled.items()}
    assert not any(gaps.values()), f"frames sampled without a row, by run: {gaps}"
    outcomes = {(outcome, detail) for _, outcome, detail in recorded.values()}
    assert ("corrupt", "undecodable image") in outcomes, outcomes
    assert {outcome for outcome, _ in outcomes} <= {"pending", "corrupt", "lost"}, outcomes
    assert all(detail == "ingest node killed" for outcome, detail in outcomes if outcome == "lost"), outcomes
    assert not list(spool.glob("ledger-*.jsonl")), "the last node, stopped, leaves no spool file"


KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.metrics import Metrics
from ingest.ledger import FrameLedger
from tests.ingest.test_ledger import record

pool = open_pool(sys.argv[2], wait_s=3)
ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=Path(sys.argv[1]))
ledger.start()
refs = [record(index).frame for index in range(12)]
for ref in refs:
    ledger.sampled(ref)
ledger.add([FrameRecord(ref, "pending") for ref in refs[:4]])
print("sampled", flush=True)
sys.stdin.readline()  # the first 4 written; the test holds the frames table now: the next write waits
ledger.add([FrameRecord(ref, "skipped", "backpressure") for ref in refs[4:8]])  # 8-11: still being packed
print("ready", flush=True)
time.sleep(600)
"""


def frames_log(url: str) -> dict[int, tuple[str, str | None]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT frame_index, outcome, detail FROM frames").fetchall()
    return {index: (outcome, detail) for index, outcome, detail in rows}


def kill_mid_write(postgres_url: str, spool: Path) -> None:
    """A ledger (KILLED_MID_WRITE) killed with SIGKILL while its write of frames 4-7's records (skipped) waits
    on the frames table, frames 0-3's records written (pending) and frames 8-11 sampled without one."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    killed = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(spool), postgres_url], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    holder = psycopg.connect(postgres_url)
    try:
        assert killed.stdout is not None and killed.stdin is not None
        assert killed.stdout.readline().strip() == "sampled"
        wait_for(lambda: len(frames_log(postgres_url)) == 4, 10, "the first records written")
        holder.execute("LOCK TABLE frames IN SHARE MODE")  # a write in progress: it waits (no outage)
        killed.stdin.write("go\n")
        killed.stdin.flush()
        assert killed.stdout.readline().strip() == "ready"
        time.sleep(0.7)  # its next write begun, and waiting
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        holder.rollback()
        holder.close()


def test_a_ledger_killed_with_postgres_up_leaves_its_records_and_frames_sampled_to_the_next(postgres_url, tmp_path):
    """Outside an outage nothing was spooled: a node killed lost the records its ledger had not yet
    written (the skipped frames: no other writer) and had made none for the frames it was packing. The
    next ledger writes both from the spool: the records as made, each frame sampled without one `lost`
    (ingest node killed) unless a stage wrote its row meanwhile; a stage's outcome after it replaces it."""
    spool = tmp_path / "spool"
    kill_mid_write(postgres_url, spool)
    pool = open_pool(postgres_url, wait_s=3)
    try:
        FrameLog(pool, patience_s=0).record_final([FrameRecord(record(9).frame, "done")])  # a stage's, meanwhile
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=100, spool_dir=spool)
        ledger.start()
        wait_for(lambda: not list(spool.glob("ledger-*.jsonl")), 10, "the spool written and removed")
        assert ledger.close(5) == 0
        killed_detail = ("lost", "ingest node killed")
        assert frames_log(postgres_url) == {
            **{index: ("pending", None) for index in range(4)},
            **{index: ("skipped", "backpressure") for index in range(4, 8)},
            8: killed_detail, 9: ("done", None), 10: killed_detail, 11: killed_detail,
        }  # fmt: skip
        FrameLog(pool, patience_s=0).record_final([FrameRecord(record(10).frame, "done")])  # a stage's, late
        assert frames_log(postgres_url)[10] == ("done", None)
    finally:
        pool.close()


EARLIER_RECORD_FIELDS = {"frame", "outcome", "detail", "plates", "kept_path", "read_outcome"}
"""The fields of a spooled record, FrameRecord's, as the release before frames sampled were journalled (f6b2a11)
reads them."""


def earlier_release_reads(spool: Path) -> dict[int, tuple[str, str | None]]:
    """What an ingest node of the release before frames sampled were journalled (f6b2a11) writes of a spool
    folder it adopts (frame index -> outcome, detail). Its rule, fixed here: the files in name order, a line
    read as a record when it is a JSON object of FrameRecord's fields and no other (`frame` a FrameRef,
    `outcome`), any other counted unreadable and dropped, and of a frame's lines the first read taken."""
    taken: dict[int, tuple[str, str | None]] = {}
    for path in sorted(spool.glob("ledger-*.jsonl")):
        for line in path.read_text().splitlines():
            fields = json.loads(line)
            if set(fields) <= EARLIER_RECORD_FIELDS and {"frame", "outcome"} <= set(fields):
                taken.setdefault(
                    FrameRef.model_validate(fields["frame"]).frame_index, (fields["outcome"], fields.get("detail"))
                )
    return taken


def test_a_killed_ledgers_spool_adopted_by_the_earlier_release_gives_each_frame_its_record_not_lost(
    postgres_url, tmp_path
):
    """A node of the earlier release adopting a killed node's spool took each frame's first line it could
    read, which was the frame's sampled line (`lost`, `ingest node killed`), written before its record:
    a rollback recorded every skipped frame lost for good (71 of 71, a review). The sampled lines are
    unreadable to it now (a field no record has): it writes the frames' records, and, for the frames
    sampled without one, nothing, as a node of its release killed left them."""
    spool = tmp_path / "spool"
    kill_mid_write(postgres_url, spool)
    earlier = earlier_release_reads(spool)
    assert {index: earlier[index] for index in range(4, 12) if index in earlier} == {
        index: ("skipped", "backpressure") for index in range(4, 8)
    }
    assert all(earlier[index] == ("pending", None) for index in range(4) if index in earlier), earlier
    records, unreadable = read_spool(
        line for path in spool.glob("ledger-*.jsonl") for line in path.read_text().splitlines()
    )
    assert unreadable == 0 and {r.frame.frame_index for r in records if is_sampled_only(r)} >= set(range(8, 12))


def spool_lines(spool: Path) -> list[tuple[int, str]]:
    """The frame index and outcome of every line of the spool folder's files."""
    lines: list[tuple[int, str]] = []
    for path in sorted(spool.glob("ledger-*.jsonl")):
        with path.open() as file:
            lines += [(r.frame.frame_index, r.outcome) for r in read_spool(file)[0]]
    return lines


def test_the_spool_outside_an_outage_holds_only_what_is_not_yet_written(postgres_url, tmp_path):
    """Journalled as they come, the records would fill the disk: once every record is written the spool
    starts anew with the frames sampled and not yet recorded, and goes once there are none."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    spool = tmp_path / "spool"
    pool = open_pool(postgres_url, wait_s=3)
    try:
        ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=1000, spool_dir=spool)
        ledger.start()
        for index in range(300):
            ledger.sampled(record(index).frame)
            if index >= 2:
                ledger.add([record(index - 2)])  # (two frames always being packed)
            time.sleep(0.005)
        wait_for(lambda: len(frames_log(postgres_url)) == 298, 10, "the records written")
        wait_for(lambda: spool_lines(spool) == [(298, "lost"), (299, "lost")], 10, "the spool started anew")
        assert len(list(spool.glob("ledger-*.jsonl"))) == 1
        ledger.add([record(298), record(299)])
        wait_for(lambda: not list(spool.glob("ledger-*.jsonl")), 10, "the spool removed, all written")
        assert ledger.close(5) == 0
    finally:
        pool.close()


def test_a_spool_of_any_release_is_read_each_frames_record_before_its_sampled_line(tmp_path):
    """This release reads the spools of every release: an earlier node's records (no sampled line), a
    sampled line written before the mark (`lost` alone: the frame's record supersedes it all the same) and
    a marked one; a line marked a sampled frame's that holds a record is unreadable, not taken for one."""
    from ingest.spool_files import SAMPLED_MARK, read_claimed, record_line, sampled_record

    unmarked = json.loads(record_line(sampled_record(record(1).frame)))
    del unmarked[SAMPLED_MARK]
    forged = {**json.loads(record_line(record(4))), SAMPLED_MARK: True}
    lines = [json.dumps(unmarked) + "\n", record_line(sampled_record(record(2).frame)),
             record_line(FrameRecord(record(1).frame, "skipped", "backpressure")), json.dumps(forged) + "\n",
             record_line(record(3))]  # fmt: skip
    assert SAMPLED_MARK not in record_line(record(3))  # a record's line is as every release wrote it
    path = tmp_path / "ledger-1-1.jsonl"
    path.write_text('{"frame": "cut short by a kill' + "\n" + "".join(lines) + "[1]\n")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        _, fresh, notes = read_claimed(descriptor, set())
    finally:
        os.close(descriptor)
    assert [(r.frame.frame_index, r.outcome, r.detail) for r in fresh] == [
        (1, "skipped", "backpressure"), (2, "lost", "ingest node killed"), (3, "pending", None)]  # fmt: skip
    assert "3 lines unreadable" in notes
