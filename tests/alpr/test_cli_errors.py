"""Input that ended `alpr` with a traceback now ends with one line `alpr: error: ...` and exit 2."""

from pathlib import Path

import pytest

from alpr.arguments import build_parser
from alpr.cli import main


def test_a_stream_url_that_cannot_be_parsed_is_one_line_with_its_password_masked(capsys):
    """Without --camera-id, the camera id was made of the URL first: urlsplit's ValueError, a traceback."""
    assert main(["run", "rtsp://admin:hunter2@[::1/live"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alpr: error:") and "not a valid URL" in err[0], err
    assert "hunter2" not in err[0] and "***" in err[0]


def test_a_camera_id_is_never_made_of_an_unparsable_url():
    from alpr.run_command import default_camera_id
    from common.errors import InputError

    with pytest.raises(InputError, match="not a valid URL") as refused:
        default_camera_id("rtsp://admin:hunter2@[::1/live")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["status", "--interval", "1e300"], id="interval-overflowing-sleep"),
        pytest.param(["status", "--interval", "86401"], id="interval-over-a-day"),
        pytest.param(["replay", "--stage", "alert", "--max-age-h", "1e8", "--dry-run"], id="age-overflowing-postgres"),
        pytest.param(["ingest", "--cameras", "c.yaml", "--linger", "1e300"], id="linger-overflowing-the-wait"),
        pytest.param(["ingest", "--cameras", "c.yaml", "--max-seconds", "1e300"], id="max-seconds-overflowing"),
    ],
)
def test_a_time_too_large_to_mean_anything_is_refused_by_the_parser(args, capsys):
    """Parsed only: accepted, `status` slept (or overflowed) and `replay` reached Postgres."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "must be at most" in err and "Traceback" not in err, err


def test_the_projects_own_errors_are_one_line(monkeypatch, tmp_path, capsys):
    """DatabaseWriteError (a RuntimeError: Postgres refused a write) reached the operator as a traceback."""
    import alpr.commands
    from common.db_writes import DatabaseWriteError

    def refused(args: object, settings: object) -> int:
        raise DatabaseWriteError("Postgres refused the write: NumericValueOutOfRange (SQLSTATE 22003)\nmore")

    monkeypatch.setattr(alpr.commands, "export", refused)
    assert main(["export", "--csv", str(tmp_path / "x.csv"), "--reason", "case 1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "alpr: error: DatabaseWriteError: Postgres refused the write: NumericValueOutOfRange (SQLSTATE 22003)"
    ]


def test_a_bug_still_shows_its_traceback(monkeypatch, tmp_path):
    import alpr.commands

    def broken(args: object, settings: object) -> int:
        raise ValueError("a bug")

    monkeypatch.setattr(alpr.commands, "export", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["export", "--csv", str(tmp_path / "x.csv"), "--reason", "case 1"])


def test_a_setting_given_by_a_flag_is_named_by_the_flag(capsys, monkeypatch, tmp_path):
    """`--fps -1` said ALPR_SAMPLE_FPS, a variable the operator never set; the variable still names itself."""
    assert main(["run", str(tmp_path / "clip.mp4"), "--fps", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--fps: Input should be greater than 0" in err and "ALPR_SAMPLE_FPS" not in err
    monkeypatch.setenv("ALPR_SAMPLE_FPS", "-2")
    assert main(["run", str(tmp_path / "clip.mp4")]) == 2
    assert "ALPR_SAMPLE_FPS: Input should be greater than 0" in capsys.readouterr().err


def test_a_redis_refusal_is_one_line_with_the_password_masked(redis_url, capsys):
    """A read-only monitoring user (no TIME) running `alpr status` got a 47-line traceback of redis-py's
    NoPermissionError: Redis's refusals are now one line, like a database's, the URL's password masked."""
    from common.queues import connect_redis

    connect_redis(redis_url).execute_command(
        "ACL", "SETUSER", "viewer", "on", ">viewerpass0123", "~*", "&*", "+@read", "+@connection"
    )
    viewer = redis_url.replace("redis://", "redis://viewer:viewerpass0123@", 1)
    assert main(["status", "--interval", "0.1", "--redis-url", viewer]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alpr: error: NoPermissionError:"), err
    assert "viewerpass0123" not in err[0]


@pytest.mark.parametrize("host", ["h..x", "a" * 64 + ".example"])
def test_a_redis_host_no_resolver_can_encode_is_one_line(host, capsys):
    """A host with an empty label or one over 63 characters: IDNA's UnicodeError came out of Redis's
    first command as a 53-line traceback (a review); Postgres said the same in one line."""
    assert main(["status", "--interval", "0.1", "--redis-url", f"redis://:R3disPW0123@{host}:6379/0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alpr: error: cannot reach Redis (queues) at redis://:***@"), err
    assert "R3disPW0123" not in err[0]


def test_a_url_given_to_a_number_by_mistake_is_masked_before_it_is_cut(capsys):
    """The parser quoted the first 40 characters of a wrong number, then masked them: a password that
    ran past the cut had no `@` left to be found by, and was shown (a review)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--interval", "redis://:averyverylongpassword0123456789@redis:6379/0"])
    err = capsys.readouterr().err
    assert "averyverylong" not in err and "not a number: 'redis://:***@redis" in err, err


def test_output_into_a_pipe_whose_reader_left_ends_quietly(redis_url):
    """`alpr status | head -1`: the reader closes the pipe; alpr ends with 141 (128 + SIGPIPE) and no
    message (it printed `alpr: error: BrokenPipeError` and exited 2, a failure for the script)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "alpr.cli", "status", "--redis-url", redis_url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before alpr writes its first line
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and errors == "", errors


def test_a_crash_leaves_no_core_file_of_frames(redis_url, tmp_path):
    """A native crash (SIGSEGV) of an alpr process writes no core: its limit is 0 for good and the process
    is not dumpable. A core of `alpr run` held decoded frames, plates unblurred (a privacy review)."""
    import resource
    import signal
    import subprocess
    import sys
    import time

    def core_unlimited() -> None:  # as far as this process may (an alpr main run in it lowered its own)
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    command = [sys.executable, "-m", "alpr.cli", "status", "--redis-url", redis_url, "--interval", "60"]
    process = subprocess.Popen(command, cwd=tmp_path, preexec_fn=core_unlimited, stdout=subprocess.DEVNULL)
    limits = Path(f"/proc/{process.pid}/limits")
    deadline = time.monotonic() + 30
    while "Max core file size        0                    0" not in limits.read_text():
        assert time.monotonic() < deadline and process.poll() is None, limits.read_text()
        time.sleep(0.1)
    process.send_signal(signal.SIGSEGV)
    assert process.wait(timeout=30) == -signal.SIGSEGV
    assert list(tmp_path.iterdir()) == []  # where a core file would be, with core_pattern `core`


def test_a_process_that_forbade_core_dumps_is_not_dumpable_and_still_reads_its_own_proc():
    """The flag a core handler piped to honours (prctl PR_GET_DUMPABLE: 0), and the process's own /proc
    entries still read (the metrics' process collector counts /proc/self/fd)."""
    import subprocess
    import sys

    script = ("import ctypes, os; from common.private_files import forbid_core_dumps; forbid_core_dumps();"
              " print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), len(os.listdir('/proc/self/fd')) > 0)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "True"]


def test_names_that_are_not_utf8_are_one_line_not_a_crash(tmp_path, demo_clip):
    """A video named with a byte that is not UTF-8 crashed `alpr run` in OpenCV (a segmentation fault,
    exit 139); an --out folder so named lost the run's sightings (SQLite refused the snapshot's path); an
    error also came after OpenCV's own warning line."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    video = os.fsdecode(os.fsencode(tmp_path) + b"/v\xff.mp4")
    shutil.copy(demo_clip[0], video)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(1000))
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xfe")
    sqlite = ["--sqlite", str(tmp_path / "reads.sqlite")]
    for args, said in [
        ([video, *sqlite], r"error: source .*/v\\udcff.mp4 is not valid UTF-8"),
        ([str(demo_clip[0]), "--out", out, *sqlite], r"error: --out .*/out\\udcfe is not valid UTF-8"),
        ([str(corrupt), *sqlite], r"error: cannot open video \(corrupt or unsupported\)"),
    ]:
        run = subprocess.run([sys.executable, "-m", "alpr.cli", "run", *args], capture_output=True, cwd=tmp_path)
        err = run.stderr.decode(errors="backslashreplace").strip().splitlines()
        assert run.returncode == 2 and len(err) == 1 and re.search(said, err[0]), (run.returncode, err)
    assert not os.path.exists(out)


def test_a_run_never_writes_over_its_own_source(tmp_path, demo_clip, capsys):
    """`alpr run out/redacted.mp4` replaced its source with a video of its first two frames (a review)."""
    import os
    import shutil

    out = tmp_path / "out"
    (out / "redacted_frames").mkdir(parents=True)
    shutil.copy(demo_clip[0], out / "redacted.mp4")
    os.link(out / "redacted.mp4", tmp_path / "hard.mp4")
    (out / "redacted_frames" / "000000.jpg").write_bytes((tmp_path / "hard.mp4").read_bytes()[:10])
    before = (out / "redacted.mp4").read_bytes()
    sqlite = ["--sqlite", str(tmp_path / "reads.sqlite"), "--no-progress"]
    for source in (out / "redacted.mp4", tmp_path / "hard.mp4", out / "redacted_frames"):
        assert main(["run", str(source), "--out", str(out), *sqlite]) == 2
        assert "which the run writes: name another --out folder" in capsys.readouterr().err
    assert (out / "redacted.mp4").read_bytes() == before and not (tmp_path / "reads.sqlite").exists()


def test_a_demo_clip_that_cannot_be_written_is_an_error(tmp_path, capsys):
    """`alpr demo-clip DIR` said it wrote the clip, exit 0, and left only the truth's sidecar."""
    assert main(["demo-clip", str(tmp_path)]) == 2
    assert "cannot write a video at" in capsys.readouterr().err


def test_eval_refuses_its_outputs_before_the_work(tmp_path, capsys):
    """An --errors or --json it could not write was refused after the whole evaluation; --json followed a
    link planted at its name."""
    (tmp_path / "link.json").symlink_to(tmp_path / "elsewhere.json")
    for flag, path in [("--json", tmp_path / "link.json"), ("--errors", tmp_path / "no" / "errors.csv"),
                       ("--json", tmp_path)]:  # fmt: skip
        assert main(["eval", str(tmp_path / "no-such-set"), flag, str(path)]) == 2
        err = capsys.readouterr().err
        assert "symbolic link" in err or "name a file in a folder that exists" in err, err
    assert not (tmp_path / "elsewhere.json").exists()


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [("car.txt", b"car.jpg\t1\tx\t3\t4\tABC123\n", "car.txt:1: the plate's box must be four numbers"),
     ("car.txt", b"car.jpg\t1\tnan\t3\t4\tABC123\n", "car.txt:1: the plate's box must be four numbers"),
     ("car.txt", b"car.jpg\t1\t2\t3\t4\tAB\xff\n", "car.txt: ground truth must be UTF-8 text"),
     ("groundtruth.csv", b"a.jpg,x,AB\xff\n", "groundtruth.csv: ground truth must be UTF-8 text")],
)  # fmt: skip
def test_malformed_ground_truth_is_one_line_naming_the_file(tmp_path, capsys, name, content, said):
    """A box that was not a number, or truth that was not UTF-8, ended `alpr eval` with a traceback."""
    (tmp_path / name).write_bytes(content)
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err


def test_a_pipe_as_source_or_a_file_as_out_is_one_clear_line(tmp_path, demo_clip, capsys):
    """A FIFO was "video ... is empty"; --out naming a file ended the run with a bare FileExistsError."""
    import os

    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "file").write_bytes(b"x")
    sqlite = ["--sqlite", str(tmp_path / "reads.sqlite"), "--no-progress"]
    assert main(["run", str(tmp_path / "pipe.mp4"), *sqlite]) == 2
    assert "is neither a regular file nor a folder" in capsys.readouterr().err
    assert main(["run", str(demo_clip[0]), "--out", str(tmp_path / "file"), *sqlite]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "is a file: name a folder" in err, err


def test_the_demo_clips_folder_is_private_whatever_the_umask(tmp_path):
    """Made 0777 under umask 000, `make demo`'s folder was then refused for the plate log it holds."""
    import os
    import stat

    from common.file_writers import others_may_write

    before = os.umask(0)
    try:
        assert main(["demo-clip", str(tmp_path / "demo" / "clip.mp4")]) == 0
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "demo").stat().st_mode) == 0o700 and not others_may_write(tmp_path / "demo")


def test_a_streams_password_can_be_kept_off_the_command_line(tmp_path, capsys, monkeypatch):
    """`alpr run`'s source was its command line alone, which every user of the host reads (`ps`,
    /proc/PID/cmdline): a camera's password with it (a review). --source-file names a file holding it."""
    monkeypatch.setenv("ALPR_SQLITE_PATH", str(tmp_path / "reads.sqlite"))
    secret = tmp_path / "gate.url"
    secret.write_bytes(b"\xef\xbb\xbfrtsp://admin:hunter2@127.0.0.1:9/live\r\n")  # saved on Windows, as secrets are
    assert main(["run", "--source-file", str(secret), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "stream: rtsp://127.0.0.1:9/…\n" in error and "hunter2" not in error  # read, tried, not shown
    for args, message in [
        ([], "SOURCE or --source-file FILE"),
        (["rtsp://cam/live", "--source-file", str(secret)], "SOURCE or --source-file FILE"),
        (["--source-file", str(tmp_path / "missing")], "does not exist"),
    ]:
        assert main(["run", *args]) == 2
        assert message in capsys.readouterr().err
    secret.write_text("rtsp://admin:hunter2@cam/a\nrtsp://admin:hunter2@cam/b\n")
    assert main(["run", "--source-file", str(secret)]) == 2
    error = capsys.readouterr().err
    assert "holds 2 lines, expected one" in error and "hunter2" not in error


def test_a_demo_clip_stopped_by_ctrl_c_leaves_the_whole_clip_that_was_there(tmp_path, demo_clip):
    """SIGINT during `alpr demo-clip` left a clip cut short at the path, in place of the whole one (a review):
    the clip and its sidecar are written beside it and renamed into place once whole."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    clip = tmp_path / "clip.mp4"
    shutil.copy(demo_clip[0], clip)
    shutil.copy(demo_clip[0].with_suffix(".mp4.json"), tmp_path / "clip.mp4.json")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "alpr.cli", "demo-clip", str(clip)], env=env,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:  # the clip's writing under way
            sizes = [path.stat().st_size for path in tmp_path.glob("*clip*.mp4") if path.exists()]
            if len(sizes) > 1 or clip.stat().st_size != len(before["clip.mp4"]):
                break
            time.sleep(0.005)
        time.sleep(0.5)
        assert process.poll() is None, "the clip was done before it could be stopped"
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        process.kill()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_an_empty_watch_list_name_is_refused_not_taken_for_the_default(capsys):
    """`alpr watchlist add PLATE --list ''` put the plate on the list `default`, unsaid (a review)."""
    for action in ("add", "remove"):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(["watchlist", action, "KPX4721", "--list", " "])
        assert stopped.value.code == 2
        assert "--list: a list's name cannot be empty" in capsys.readouterr().err
    assert build_parser().parse_args(["watchlist", "remove", "KPX4721"]).list_name is None


def test_eval_given_a_file_says_it_is_not_a_folder(tmp_path, capsys):
    """It said "does not exist" of a file that does (a review)."""
    named = tmp_path / "labels.csv"
    named.write_text("car.png,ca,KPX4721\n")
    assert main(["eval", str(named)]) == 2
    assert f"dataset {named} is not a folder" in capsys.readouterr().err
