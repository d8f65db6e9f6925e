"""How `alpr run` ends other than at the end of its source: stopped by a signal (a stream ends no other
way), its video failing to be written (a full disk), or no frame readable at all."""

import os
import resource
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from alpr.cli import main
from alpr.democlip import CarPass, draw_background, draw_car, draw_plate
from tests.helpers import alpr_process, mjpeg_camera, wait_for


def car_frames(count: int) -> list[bytes]:
    """JPEGs of one car crossing the middle of the scene, its plate readable in each."""
    background = draw_background(np.random.default_rng(7))
    car, plate = CarPass("KPX4721", (150, 60, 30), 0.5, 0.0), draw_plate("KPX4721")
    jpegs = []
    for step in range(count):
        frame = background.copy()
        draw_car(frame, car, 0.45 + 0.1 * step / max(1, count - 1), plate)
        jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
    return jpegs


def count_rows(log: Path, table: str, *, while_running: bool = True) -> int:
    """Rows of `table` in the run's log; while the run writes, a log not made yet or locked counts 0 (a poll),
    after it, any error is raised: a count of 0 once seen in a loaded CI gave no cause."""
    try:
        with sqlite3.connect(log, timeout=0.2 if while_running else 10) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet, or being written
        if not while_running:
            raise
        return 0


@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT"),
     pytest.param(signal.SIGHUP, id="SIGHUP")],  # an ssh session dropped: the same unplayable video (a review)
)  # fmt: skip
def test_a_stream_stopped_by_a_signal_leaves_a_playable_video_and_its_open_sighting_logged(signum, tmp_path, settings):
    """SIGTERM killed the run: the mp4 never released (no index: it does not play) and the car still in
    view never logged as a sighting; SIGINT dropped the sighting too and printed no summary."""
    log, out, output = tmp_path / "reads.sqlite", tmp_path / "out", tmp_path / "output.txt"
    with mjpeg_camera(car_frames(6), fps=10) as url:
        args = ["run", url, "--camera-id", "gate", "--out", str(out), "--sqlite", str(log), "--fps", "5",
                "--no-progress", "--model-dir", str(settings.model_dir)]  # fmt: skip
        hangup = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # under nohup (a CI's) alpr would ignore it, rightly
        try:
            process = alpr_process(dict(os.environ), args, output)
        finally:
            signal.signal(signal.SIGHUP, hangup)
        try:
            wait_for(lambda: count_rows(log, "plate_reads") > 0 or process.poll() is not None, 60, "the first reads")
            assert process.poll() is None, output.read_text()
            process.send_signal(signum)
            assert process.wait(timeout=60) == 0, output.read_text()
        finally:
            if process.poll() is None:
                process.kill()
    printed = output.read_text()
    assert f"stopped by {signal.Signals(signum).name}" in printed and "frames in" in printed, printed
    assert "1 sightings:" in printed and "KPX4721" in printed, printed
    assert count_rows(log, "sightings", while_running=False) == 1
    capture = cv2.VideoCapture(str(out / "redacted.mp4"))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, _ = capture.read()
    capture.release()
    assert ok and frames >= 1


@pytest.fixture()
def disk_room():
    """Files this process writes may grow to `room(bytes)` (RLIMIT_FSIZE: writes past it fail with
    EFBIG, as on a full disk; Python ignores SIGXFSZ); the limit is put back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def room(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))

    yield room
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_video_the_disk_cannot_hold_is_an_error_and_deleted_not_named_as_the_output(
    tmp_path, settings, capsys, disk_room
):
    """OpenCV only warns "Failed to write frame": the run ended 0 and named a video that does not play."""
    clip = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (320, 240))
    rng = np.random.default_rng(1)
    for _ in range(12):
        writer.write(rng.integers(0, 256, (240, 320, 3), np.uint8))  # noise: no plate, and large once encoded
    writer.release()
    out = tmp_path / "out"
    disk_room(150_000)  # the log (no reads) fits; the redacted video does not
    code = main(["run", str(clip), "--out", str(out), "--sqlite", str(tmp_path / "r.sqlite"), "--no-progress",
                 "--model-dir", str(settings.model_dir)])  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("alpr: error: the redacted video"), err
    assert "of the 12 frames written" in err[0] or "does not play" in err[0], err
    assert not (out / "redacted.mp4").exists()
    assert "redacted output" not in captured.out


def test_a_folder_whose_every_image_fails_is_an_error_that_counts_them_all(tmp_path, settings, capsys):
    """It exited 0, printed the first 20 failures with no word of the others, and named as its output a
    folder never made."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(25):
        (folder / f"{index:03d}.jpg").write_bytes(b"not a jpeg" * 10)
    out = tmp_path / "out"
    code = main(["run", str(folder), "--out", str(out), "--sqlite", str(tmp_path / "r.sqlite"), "--no-progress",
                 "--model-dir", str(settings.model_dir)])  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no frame of" in err[0] and "(25 unreadable)" in err[0], err
    assert captured.out.count("warning: image") == 20 and "... and 5 more" in captured.out, captured.out
    assert "redacted output" not in captured.out
    assert not (out / "redacted_frames").exists()


def test_stop_signals_become_a_request_and_the_previous_handlers_come_back():
    import threading

    from alpr.source_passes import StopSignals

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread before the next line runs
        assert stop.requested() and stop.received == "SIGTERM"
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # a second one: as before
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before

    def in_a_thread() -> None:  # Python lets only the main thread set handlers: none are set there
        with StopSignals() as elsewhere:
            assert not elsewhere.previous

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()


def test_a_signal_ends_the_wait_to_reopen_a_stream_at_once():
    """A stream away is reopened after a wait that doubles up to 30 s: a stop must not wait it out."""
    import threading

    from alpr.source_passes import StopSignals

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a signal come late does no harm
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        with StopSignals() as stop:
            started = time.monotonic()
            timer.start()
            assert stop.wait(30.0)
            waited = time.monotonic() - started
    finally:
        timer.join()
        signal.signal(signal.SIGTERM, previous)
    assert 0.2 < waited < 5 and stop.received == "SIGTERM"
    assert not StopSignals().wait(0.05)


def test_a_stop_ends_the_batches_with_the_frames_in_hand_and_takes_no_more():
    from alpr.source_passes import StopSignals, batches
    from ingest.frame_source import SampledFrame

    stop, taken = StopSignals(), []

    def frames() -> Iterator[SampledFrame]:
        for index in range(100):
            taken.append(index)
            if index == 5:
                stop.received = "SIGTERM"
            yield SampledFrame(index, index / 5, np.zeros((2, 2, 3), np.uint8))

    assert [[f.index for f in batch] for batch in batches(frames(), 4, stop)] == [[0, 1, 2, 3], [4, 5]]
    assert taken == list(range(6))
    taken.clear()  # a stream opened after the signal (its open waited out on a hung camera): no frame awaited
    assert list(batches(frames(), 4, stop)) == [] and taken == []


def test_a_snapshot_that_cannot_be_written_leaves_its_sighting_logged(tmp_path, settings, demo_clip, capsys):
    """A full disk raised from the snapshot of the first sighting: the run ended with a traceback-like
    error and no sighting logged, so `alpr search` found none of its plates (a review)."""
    import sqlite3

    out, log = tmp_path / "out", tmp_path / "r.sqlite"
    out.mkdir()
    (out / "sightings").write_bytes(b"a file where the snapshots' folder goes")
    # at 2 frames/s (24 frames, 8 a car, not 60): each car's pass still read, its sighting's snapshot tried
    code = main(["run", str(demo_clip[0]), "--fps", "2", "--out", str(out), "--sqlite", str(log), "--no-progress",
                 "--model-dir", str(settings.model_dir)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "warning: the snapshot" in printed and "of a sighting was not written" in printed, printed
    with sqlite3.connect(log) as db:
        sightings = db.execute("SELECT count(*), count(snapshot_path) FROM sightings").fetchone()
    assert sightings[0] >= 3 and sightings[1] == 0  # every pass logged, none with a snapshot


def test_a_stream_the_camera_drops_is_reopened_with_backoff_until_a_signal_ends_the_run(tmp_path, settings):
    """A camera that closed its stream (a network blip, a reboot) ended `alpr run` (exit 2, "run it again
    to go on"): run as a service on one camera, it stopped reading until someone restarted it. It is
    reopened with backoff, as an ingest node's camera is (the same code): the drop logged once at WARNING,
    the reconnection at INFO, the source errors counted in the summary; the reopened stream's frames
    numbered and dated on (their reads no repeats of the first connection's); a signal still ends it."""
    log, out, output, connections = tmp_path / "reads.sqlite", tmp_path / "out", tmp_path / "output.txt", []
    with mjpeg_camera(car_frames(6), fps=10, per_connection=6, connections=connections) as url:
        args = ["-v", "run", url, "--camera-id", "gate", "--out", str(out), "--sqlite", str(log), "--fps", "5",
                "--no-progress", "--model-dir", str(settings.model_dir)]  # fmt: skip
        process = alpr_process(dict(os.environ), args, output)
        try:
            wait_for(lambda: len(connections) >= 2 or process.poll() is not None, 60, "the camera reopened")
            assert process.poll() is None, output.read_text()  # it ended at the drop, exit 2
            wait_for(lambda: count_rows(log, "plate_reads") > 6 or process.poll() is not None, 60,
                     "reads of a reopened stream (a connection gives 6 frames, a read each)")  # fmt: skip
            assert process.poll() is None, output.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, output.read_text()
        finally:
            if process.poll() is None:
                process.kill()
    printed = output.read_text()
    assert "stopped by SIGTERM" in printed and "the stream dropped, or a reopening failed" in printed, printed
    warnings = [line for line in printed.splitlines() if line.startswith("WARNING")]
    assert warnings == ["WARNING alpr.standalone: camera gate: the stream ended (closed by the camera, or no frame"
                        " within the read timeout); reconnecting with backoff"], printed  # fmt: skip
    assert "INFO alpr.standalone: camera gate: reconnected after 1 failed attempts" in printed, printed
    with sqlite3.connect(log) as db:
        reads = db.execute("SELECT frame_index, frame_id, captured_at FROM plate_reads ORDER BY frame_index").fetchall()
    assert len({frame_id for _, frame_id, _ in reads}) == len(reads) > 6  # none dropped as a repeat
    assert [captured for _, _, captured in reads] == sorted(captured for _, _, captured in reads)
    assert (out / "redacted.mp4").is_file()


def test_a_reopened_streams_frames_are_numbered_and_dated_on_and_the_runs_own_errors_end_it():
    """SourcePasses, which `alpr run` reads a live stream's connections with: each reopened stream counts
    its frames from 0 again; numbered so, their reads took the first connection's frame ids and were
    dropped as repeats. An error of the run's own (its log, its output) is no drop: it ends the run as it
    is, not retried."""
    import threading

    from alpr.source_passes import SourcePasses
    from common.backoff import Backoff
    from ingest.reconnect import SourceKeeper

    stop, batches, connections = threading.Event(), [], []

    def flush(batch: list) -> None:
        batches.append([(frame.index, frame.source_time_s) for frame in batch])
        if sum(map(len, batches)) >= 8:
            raise sqlite3.OperationalError("database or disk is full")

    with mjpeg_camera(car_frames(3), fps=20, per_connection=3, connections=connections) as url:
        passes = SourcePasses(flush, 2, None, time.monotonic(), own_errors_apart=True)
        keeper = SourceKeeper(url, 100.0, "gate", stop, backoff=Backoff(0.05, 0.1))  # every frame sampled
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            keeper.run(passes.read)
    frames = [frame for batch in batches for frame in batch]
    assert len(connections) >= 3 and keeper.errors == len(connections) - 1  # the drops; not the log's error
    pairs = list(zip(frames, frames[1:], strict=False))
    assert all(earlier[0] < later[0] and earlier[1] < later[1] for earlier, later in pairs), frames


FORGED = "\nINFO alpr.standalone: processed 1 frames from inject: 0 plates, 0 reads logged, 0 sightings\x1b[8m"
"""What a file name dropped into a watched folder (an FTP-upload camera's) may hold: a line break, a forged
summary line, and a terminal escape (conceal) hiding what follows (a review)."""


def test_a_file_name_cannot_forge_the_runs_output(tmp_path, settings, capsys):
    """`alpr run` printed an unreadable image's name as it was: the forged "0 plates" line followed the
    run's real summary and the escape hid the rest, where `alpr ingest` escaped the same name."""
    folder = tmp_path / "inject"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(car_frames(1)[0])
    (folder / f"z.jpg{FORGED}.jpg").write_bytes(b"not a jpeg" * 10)
    code = main(["run", str(folder), "--out", str(tmp_path / "out"), "--sqlite", str(tmp_path / "r.sqlite"),
                 "--no-progress", "--model-dir", str(settings.model_dir)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "\x1b" not in printed, printed
    assert not [line for line in printed.splitlines() if line.startswith("INFO")], printed
    [warning] = [line for line in printed.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: image ") and "z.jpg\\nINFO alpr.standalone" in warning and "\\x1b[8m" in warning


def test_a_truncated_video_is_warned_of_after_every_frame_read_is_logged_and_written(tmp_path, settings, capsys):
    """A video cut mid-stream (a copy interrupted, `head -c`) is read as far as it goes and warned of, exit 0:
    its frames are logged and written as ever. Not an error: a whole MKV, TS or WebM reads as cut short too
    (test_a_whole_video_whose_container_starts_late_is_no_error)."""
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (960, 540))
    for jpeg in car_frames(20):
        writer.write(cv2.resize(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), (960, 540)))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    out, log = tmp_path / "out", tmp_path / "r.sqlite"
    code = main(["run", str(cut), "--fps", "10", "--out", str(out), "--sqlite", str(log), "--no-progress",
                 "--model-dir", str(settings.model_dir)])  # fmt: skip
    captured = capsys.readouterr()
    read = int(captured.out.split(" frames in ")[0].rsplit("\n", 1)[-1])
    assert 0 < read < 20, captured.out
    assert code == 0 and "alpr: error" not in captured.err, captured.err
    assert "ended early" in captured.out and "redacted output" in captured.out  # the warning, the output
    assert count_rows(log, "plate_reads", while_running=False) > 0
    assert count_rows(log, "sightings", while_running=False) >= 1
    replayed = cv2.VideoCapture(str(out / "redacted.mp4"))
    assert int(replayed.get(cv2.CAP_PROP_FRAME_COUNT)) == read


OFFSET_START_MKV = Path(__file__).parent / "data" / "offset_start.mkv"
"""20 frames (320x180, H.264) of car_frames' scene cut by FFmpeg into an MKV whose timestamps start at 10 s,
as a recorder's segment's do: OpenCV states 120 frames (its duration from 0 x the rate)."""


def test_a_whole_video_whose_container_starts_late_is_no_error(tmp_path, settings, capsys):
    """A whole MKV whose stated frame count is its container's duration x rate (a segment starting at 10 s;
    a longer audio track does the same) reads as ended early: a warning, exit 0. Exit 2 there (a review)
    failed every script and cron job over a recorder's exports that were read whole."""
    code = main(["run", str(OFFSET_START_MKV), "--fps", "10", "--sqlite", str(tmp_path / "r.sqlite"),
                 "--no-progress", "--model-dir", str(settings.model_dir)])  # fmt: skip
    captured = capsys.readouterr()
    assert "20 frames in " in captured.out, captured.out
    assert code == 0 and "alpr: error" not in captured.err, captured.err


def reader_pids(parent: int) -> list[int]:
    """The video reader processes (ingest/capture_process.py's children) of process `parent`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"-m" in command:
            pids.append(int(entry.name))
    return pids


def test_a_video_whose_reader_is_killed_is_an_error_after_its_frames_are_logged(tmp_path, settings, demo_clip):
    """A reader killed mid-file (the out-of-memory killer) leaves the rest of the file unread: it warned and
    exited 0, and a script took the video for read whole. Now exit 2 with one line saying why, after the
    frames read are logged."""
    log, output = tmp_path / "r.sqlite", tmp_path / "run.log"
    env = {**os.environ, "ALPR_MODEL_DIR": str(settings.model_dir)}
    process = alpr_process(env, ["run", str(demo_clip[0]), "--fps", "25", "--sqlite", str(log), "--no-progress"],
                           output)  # fmt: skip
    try:
        wait_for(lambda: count_rows(log, "plate_reads") >= 2 and reader_pids(process.pid), 120, "reads logged")
        for pid in reader_pids(process.pid):
            os.kill(pid, signal.SIGKILL)
        assert process.wait(timeout=120) == 2, output.read_text()
    finally:
        process.kill()
        process.wait()
    said = output.read_text()
    assert "alpr: error: the video" in said and "was not read to its end: its reader process was killed" in said
    assert count_rows(log, "plate_reads", while_running=False) >= 2
