"""A file holding a stream URL with its password that other users of this host may read is a WARNING, the
file named and the fix said, never the URL nor its password: `alpr run --source-file` (by the real CLI,
alpr.cli.main, on a source nothing answers) and the cameras file (ingest.cameras.load_cameras)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from alpr.cli import main
from common.config import Settings
from ingest.cameras import load_cameras

PASSWORD = "hunter2"

HOST_USER = 54321
"""A host user's id and its own group's, neither known here (as a container sees them)."""


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder others may go through (0755 under /tmp), unlike pytest's tmp_path (under a folder of 0700):
    what /etc/alpr or an operator's home is."""
    folder = Path(tempfile.mkdtemp(prefix="alpr-readable-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("url", "mode", "warned"),
    [
        pytest.param(f"rtsp://admin:{PASSWORD}@127.0.0.1:9/live", 0o644, True, id="password-0644"),
        pytest.param(f"rtsp://127.0.0.1:9/live?token={PASSWORD}", 0o644, True, id="token-0644"),
        pytest.param(f"rtsp://admin:{PASSWORD}@127.0.0.1:9/live", 0o600, False, id="password-0600"),
        pytest.param("rtsp://127.0.0.1:9/live", 0o644, False, id="no-password-0644"),
    ],
)
def test_a_source_file_others_may_read_with_a_password_is_warned_of(open_folder, tmp_path, caplog, url, mode, warned):
    """A review: --source-file keeps the password off the command line (`ps` shows it every user), yet a
    file of mode 0644 (umask 022) showed it to every local user without a word."""
    source = open_folder / "gate.url"
    source.write_text(url + "\n")
    source.chmod(mode)
    run = ["run", "--source-file", str(source), "--out", str(tmp_path / "out"), "--sqlite", str(tmp_path / "r.sqlite")]
    with caplog.at_level(logging.WARNING):
        assert main(run) == 2  # nothing answers there
    said = [m for m in warnings_of(caplog) if "other users of this host may read it" in m]
    if not warned:
        assert said == []
        return
    assert len(said) == 1 and said[0].startswith(f"--source-file {source} (mode 0644) holds a stream URL")
    assert f"chmod go-r {source}" in said[0] and PASSWORD not in said[0] and "127.0.0.1" not in said[0]
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("source", "mode", "warned"),
    [
        pytest.param(f"rtsp://admin:{PASSWORD}@10.0.0.5/live", 0o644, True, id="password-0644"),
        pytest.param(f"rtsp://admin:{PASSWORD}@10.0.0.5/live", 0o600, False, id="password-0600"),
        pytest.param("rtsp://10.0.0.5/live", 0o644, False, id="no-password-0644"),
    ],
)
def test_a_cameras_file_others_may_read_holding_a_password_is_warned_of(open_folder, caplog, source, mode, warned):
    """The cameras file holds its streams' URLs as --source-file does: the same WARNING, naming the
    cameras whose sources hold a password (not a camera without one)."""
    path = open_folder / "cameras.yaml"
    path.write_text(f"cameras:\n  - id: gate-3\n    source: '{source}'\n  - id: depot\n    source: /videos/depot.mp4\n")
    path.chmod(mode)
    with caplog.at_level(logging.WARNING):
        assert [c.id for c in load_cameras(path, Settings.load({}))] == ["gate-3", "depot"]
    said = warnings_of(caplog)
    if not warned:
        assert said == []
        return
    assert len(said) == 1 and said[0].startswith(f"the cameras file {path} (mode 0644) holds a stream URL")
    assert "(the sources of gate-3)" in said[0] and f"chmod go-r {path}" in said[0]
    assert PASSWORD not in said[0] and "10.0.0.5" not in said[0]


def test_a_cameras_file_in_a_folder_only_its_owner_enters_is_not_warned_of(open_folder, caplog):
    """0644 in a folder of mode 0700 is its owner's alone (the folders above are read too)."""
    folder = open_folder / "private"
    folder.mkdir(mode=0o700)
    path = folder / "cameras.yaml"
    path.write_text(f"cameras:\n  - id: gate-3\n    source: 'rtsp://admin:{PASSWORD}@10.0.0.5/live'\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_cameras(path, Settings.load({}))
    assert warnings_of(caplog) == []


def test_a_cameras_file_of_a_host_user_seen_from_a_container_is_not_warned_of(open_folder, caplog):
    """Compose mounts the cameras file kept at 0644 in the host's secrets folder of mode 0700 (README), its
    owner a host user unknown in the container, which sees no folder of the host above it: no word at every
    start of the ingest node for what the host keeps right (the file rules take such a file as a host's)."""
    if os.geteuid() != 0:
        pytest.skip("giving the file an owner unknown here takes root")
    path = open_folder / "cameras.yaml"
    path.write_text(f"cameras:\n  - id: gate-3\n    source: 'rtsp://admin:{PASSWORD}@10.0.0.5/live'\n")
    path.chmod(0o644)
    os.chown(path, HOST_USER, HOST_USER)
    with caplog.at_level(logging.WARNING):
        load_cameras(path, Settings.load({}))
    assert [m for m in warnings_of(caplog) if "may read it" in m] == []
