"""Paths other local users may change, refused by the real CLI (alpr.cli.main) on real files and modes: a
folder on the way to `alpr run --out`, ALPR_KEEP_DIR or ALPR_LEDGER_SPOOL_DIR that others may write in
without the sticky bit (they could rename the folder below it away and put a link in its place: 17 of 18
snapshots went where such a link pointed, a review), and a file an operator edits that others may write
(the cameras file, a watch-list CSV, `--source-file`: each was taken at 0666). The tests run as root: a
file or folder given to another uid stands for another user's."""

from __future__ import annotations

import grp
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from alpr.cli import main
from common.queues import connect_redis, stage_queue
from tests.alpr.test_ingest_command import one_image_camera
from tests.helpers import user_alone_in_own_group

NOBODY = 65534
"""Another user's uid and group."""

HOST_USER = 54321
"""A host user's id and its own group's, neither known here (as a container sees them)."""


def open_folder(path: Path) -> Path:
    """A folder anyone may write in, without the sticky bit (a "shared" folder made 0777)."""
    path.mkdir(parents=True)
    path.chmod(0o777)
    return path


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip()


def test_run_refuses_an_out_folder_in_a_folder_others_may_write_in(tmp_path, demo_clip, settings, capsys):
    shared = open_folder(tmp_path / "shared")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "link").symlink_to(shared)  # this user's own link, to the open folder
    log = ["--sqlite", str(tmp_path / "reads.sqlite"), "--no-progress", "--model-dir", str(settings.model_dir)]
    for out in (shared / "out", tmp_path / "mine" / "link" / "out"):
        assert main(["run", str(demo_clip[0]), "--out", str(out), *log]) == 2
        error = error_of(capsys)
        assert error.startswith(f"alpr: error: {shared}, a folder on the way to {out}, is one others may write in")
        assert f"chmod o-w on {shared}, or chmod +t" in error and "the redacted frames" in error
        assert not out.exists()
    shared.chmod(0o1777)  # sticky, as /tmp: accepted (a positive control)
    assert main(["run", str(demo_clip[0]), "--out", str(shared / "out"), *log]) == 0, error_of(capsys)
    assert (shared / "out" / "redacted.mp4").stat().st_size > 0 and list((shared / "out" / "sightings").iterdir())


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
def test_run_refuses_an_out_folder_below_another_users_folder(tmp_path, demo_clip, capsys):
    """Only its owner may write in it, but its owner is another user: they may rename what is in it."""
    theirs = tmp_path / "bob"
    (theirs / "cases").mkdir(parents=True)  # root's own, 0755, in bob's folder
    os.chown(theirs, NOBODY, NOBODY)
    out = theirs / "cases" / "out"
    assert main(["run", str(demo_clip[0]), "--out", str(out), "--sqlite", str(tmp_path / "r.sqlite")]) == 2
    error = error_of(capsys)
    assert f"{theirs}, a folder on the way to {out}, is another user's (uid {NOBODY}, nobody)" in error
    assert "run as that user" in error and "chmod" not in error  # no mode keeps its owner out: root was told to chmod
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
def test_run_checks_the_folders_above_its_out_folder_again_once_made(tmp_path, demo_clip, monkeypatch, capsys):
    """Checked before they were made, never after: a folder another user made in the gap, 0777, was taken as it
    was and --out made in it (a review). The other user's mkdir is run as the writer makes its folders."""
    import alpr.standalone_output

    made = alpr.standalone_output.make_private_folders
    shared = tmp_path / "tmp"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)  # /tmp's: anyone may make a folder in it

    def theirs_first(path: Path, *listed: Any) -> None:
        (shared / "a").mkdir()
        os.chown(shared / "a", NOBODY, NOBODY)
        (shared / "a").chmod(0o777)
        made(path, *listed)

    monkeypatch.setattr(alpr.standalone_output, "make_private_folders", theirs_first)
    out = shared / "a" / "b" / "out"
    assert main(["run", str(demo_clip[0]), "--out", str(out), "--sqlite", str(tmp_path / "r.sqlite")]) == 2
    assert f"alpr: error: {shared / 'a'}, a folder on the way to {out}, is another user's" in error_of(capsys)
    assert not (out / "redacted.mp4").exists() and not (out / "sightings").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
@pytest.mark.parametrize("setting", ["ALPR_KEEP_DIR", "ALPR_LEDGER_SPOOL_DIR"])
def test_the_keep_and_spool_folders_are_checked_again_once_made(tmp_path, monkeypatch, setting):
    """As --out: a folder above made by another user, 0777, between the check and the making (in /tmp, where
    anyone may make one) was used. The other user's mkdir is run as the folders are made."""
    import alpr.start_checks
    import ingest.spool_files
    from common.errors import ConfigError

    module = alpr.start_checks if setting == "ALPR_KEEP_DIR" else ingest.spool_files
    check = alpr.start_checks.check_keep_dir if setting == "ALPR_KEEP_DIR" else ingest.spool_files.check_spool_folder
    made = module.make_private_folders
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)

    def theirs_first(path: Path) -> None:
        (shared / "a").mkdir()
        os.chown(shared / "a", NOBODY, NOBODY)
        (shared / "a").chmod(0o777)
        made(path)

    monkeypatch.setattr(module, "make_private_folders", theirs_first)
    folder = shared / "a" / "b" / "frames"
    with pytest.raises(ConfigError, match=f"^{setting}: {shared / 'a'}, a folder on the way to {folder}, is another"):
        check(folder)
    assert not list(folder.iterdir())


def test_a_keep_folder_in_a_folder_others_may_write_in_stops_the_redactor(
    redis_url, postgres_url, tmp_path, monkeypatch, capsys
):
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    shared = open_folder(tmp_path / "shared")
    monkeypatch.setenv("ALPR_KEEP_DIR", str(shared / "kept"))
    worker = ["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]
    capsys.readouterr()
    assert main(worker) == 2
    error = error_of(capsys)
    assert error.startswith(f"alpr: error: ALPR_KEEP_DIR: {shared}, a folder on the way to {shared / 'kept'}")
    assert "kept frames" in error and "chmod +t" in error and not (shared / "kept").exists()
    shared.chmod(0o1777)
    assert main(worker) == 0 and (shared / "kept").is_dir()


def test_a_spool_folder_others_may_change_stops_the_ingest_node(redis_url, postgres_url, tmp_path, monkeypatch, capsys):
    """In a folder others may write in, or itself one: the node's frame records are written there while
    Postgres is away."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    cameras = one_image_camera(tmp_path)
    shared = open_folder(tmp_path / "shared")
    spool = shared / "spool"
    monkeypatch.setenv("ALPR_LEDGER_SPOOL_DIR", str(spool))
    ingest = ["ingest", "--cameras", str(cameras), "--redis-url", redis_url, "--database-url", postgres_url]
    capsys.readouterr()
    assert main(ingest) == 2
    error = error_of(capsys)
    assert error.startswith(f"alpr: error: ALPR_LEDGER_SPOOL_DIR: {shared}, a folder on the way to {spool}")
    assert not spool.exists() and stage_queue(connect_redis(redis_url), "detect").count == 0
    shared.chmod(0o755)
    open_folder(spool)  # the spool folder itself
    assert main(ingest) == 2
    assert f"ALPR_LEDGER_SPOOL_DIR: {spool} is a folder others may write in without the sticky bit" in error_of(capsys)
    spool.chmod(0o700)
    shared.chmod(0o1777)
    assert main(ingest) == 0 and "gate: 1 frames queued" in capsys.readouterr().out


def test_a_cameras_file_others_may_write_is_refused(redis_url, tmp_path, capsys, caplog):
    """A local user could change a camera's source or its region of interest (a review planted an ROI that
    reads nothing, and the node ran on)."""
    cameras = one_image_camera(tmp_path)
    ingest = ["ingest", "--cameras", str(cameras), "--redis-url", redis_url]
    cameras.chmod(0o666)
    assert main(ingest) == 2
    error = error_of(capsys)
    assert error == (
        f"alpr: error: the cameras file {cameras} may be written by other users of this host (mode 0666): they"
        " choose what each camera reads (its source) and where plates are looked for (its roi); make it writable"
        " by its owner alone: chmod go-w on it"
    )
    assert stage_queue(connect_redis(redis_url), "detect").count == 0
    if os.geteuid() == 0:  # group-writable by a group with another member (nobody's own)
        os.chown(cameras, -1, grp.getgrnam("nogroup").gr_gid)
        cameras.chmod(0o664)
        assert main(ingest) == 2 and "(mode 0664)" in error_of(capsys)
        os.chown(cameras, HOST_USER, HOST_USER)  # umask 002, seen from a container: a WARNING
        with caplog.at_level(logging.WARNING):
            assert main(ingest) == 0
        assert any("a host user's own as seen from a container" in r.getMessage() for r in caplog.records)
        capsys.readouterr()
    cameras.chmod(0o644)
    assert main(ingest) == 0 and "gate: 1 frames queued" in capsys.readouterr().out


def test_a_watch_list_file_others_may_write_is_refused_and_nothing_imported(postgres_url, tmp_path, capsys):
    """A local user could take a plate off the stolen list before `alpr watchlist import --replace`."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    stolen = tmp_path / "stolen.csv"
    stolen.write_text("plate,reason,list\nAAA111,stolen car,stolen\n")
    stolen.chmod(0o666)
    command = ["watchlist", "import", "--replace", str(stolen), "--database-url", postgres_url]
    capsys.readouterr()
    assert main(command) == 2
    error = error_of(capsys)
    assert error.startswith(f"alpr: error: the watch-list file {stolen} may be written by other users of this host")
    assert "(mode 0666)" in error and "chmod go-w" in error
    assert main(["watchlist", "list", "--database-url", postgres_url]) == 0
    assert "AAA111" not in capsys.readouterr().out
    stolen.chmod(0o644)
    assert main(command) == 0 and "imported 1 entries" in capsys.readouterr().out
    if os.geteuid() == 0:  # `sudo alpr watchlist import` of her file: hers to change, not root's; chown it
        os.chown(stolen, *user_alone_in_own_group())
        stolen.chmod(0o664)
        assert main(command) == 2
        error = error_of(capsys)
        assert "(mode 0664)" not in error and "(chown)" in error, error


def test_a_source_file_others_may_write_is_refused(tmp_path, capsys):
    """It holds a stream's URL with its password: whoever writes it chooses what `alpr run` reads."""
    source = tmp_path / "gate.url"
    source.write_text("rtsp://admin:hunter2@127.0.0.1:9/live\n")
    source.chmod(0o666)
    run = ["run", "--source-file", str(source), "--out", str(tmp_path / "out"), "--sqlite", str(tmp_path / "r.sqlite")]
    assert main(run) == 2
    error = error_of(capsys)
    assert error == (
        f"alpr: error: --source-file {source} may be written by other users of this host (mode 0666): they choose"
        " the source read (a camera of theirs); make it writable by its owner alone: chmod go-w on it"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.sqlite").exists()
    source.chmod(0o644)  # read and tried (nothing answers there): past the check
    assert main(run) == 2
    error = error_of(capsys)
    assert "rtsp://127.0.0.1:9/" in error and "other users" not in error and "hunter2" not in error
