"""How `alpr run` ends other than at the end of its source: stopped by a signal (a stream ends no other
way), its video failing to be written (a full disk), or no frame readable at all."""

import os
import resource
import signal
import sqlite3
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


def count_rows(log: Path, table: str) -> int:
    try:
        with sqlite3.connect(log, timeout=0.2) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet, or being written
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
    assert count_rows(log, "sightings") == 1
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

    from alpr.standalone import StopSignals

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


def test_a_stop_ends_the_batches_with_the_frames_in_hand_and_takes_no_more():
    from alpr.standalone import StopSignals, batches
    from ingest.sources import SampledFrame

    stop, taken = StopSignals(), []

    def frames() -> Iterator[SampledFrame]:
        for index in range(100):
            taken.append(index)
            if index == 5:
                stop.received = "SIGTERM"
            yield SampledFrame(index, index / 5, np.zeros((2, 2, 3), np.uint8))

    assert [[f.index for f in batch] for batch in batches(frames(), 4, stop)] == [[0, 1, 2, 3], [4, 5]]
    assert taken == list(range(6))


def test_a_snapshot_that_cannot_be_written_leaves_its_sighting_logged(tmp_path, settings, demo_clip, capsys):
    """A full disk raised from the snapshot of the first sighting: the run ended with a traceback-like
    error and no sighting logged, so `alpr search` found none of its plates (a review)."""
    import sqlite3

    out, log = tmp_path / "out", tmp_path / "r.sqlite"
    out.mkdir()
    (out / "sightings").write_bytes(b"a file where the snapshots' folder goes")
    code = main(["run", str(demo_clip[0]), "--out", str(out), "--sqlite", str(log), "--no-progress",
                 "--model-dir", str(settings.model_dir)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "warning: the snapshot" in printed and "of a sighting was not written" in printed, printed
    with sqlite3.connect(log) as db:
        sightings = db.execute("SELECT count(*), count(snapshot_path) FROM sightings").fetchone()
    assert sightings[0] >= 3 and sightings[1] == 0  # every pass logged, none with a snapshot


def test_a_stream_the_camera_ends_is_an_error_with_what_was_read_kept(tmp_path, settings, capsys):
    """A camera that closed its stream ended `alpr run` with exit 0 and no word: a supervisor restarting
    it on failure never did (a review)."""
    log, out = tmp_path / "reads.sqlite", tmp_path / "out"
    with mjpeg_camera(car_frames(6), fps=10, per_connection=12) as url:
        code = main(["run", url, "--camera-id", "gate", "--out", str(out), "--sqlite", str(log), "--fps", "5",
                     "--no-progress", "--model-dir", str(settings.model_dir)])  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ended after" in err[0] and "run it again" in err[0], err
    assert "1 sightings:" in captured.out and count_rows(log, "sightings") == 1
    assert (out / "redacted.mp4").is_file()
