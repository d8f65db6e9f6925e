"""The operator's text files (cameras file, watch-list CSV, receivers file, secret files) are read
through one reader: a FIFO, a device or a folder is refused at once with a clear error, never waited
on or read without end."""

import os
import threading
from pathlib import Path

import pytest

from common.alerts import load_receivers
from common.config import Settings
from common.errors import ConfigError, InputError
from common.text_files import read_text_file
from common.watchlist_csv import read_csv
from ingest.cameras import load_cameras

READERS = [
    pytest.param(lambda path: load_cameras(path, Settings.load({})), ConfigError, id="cameras"),
    pytest.param(read_csv, InputError, id="watch-list"),
    pytest.param(load_receivers, ConfigError, id="receivers"),
]


def finished_within(seconds, call):
    """What `call` raised, or returned, if it finished within `seconds` (a daemon thread otherwise)."""
    outcome: list[object] = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:  # the outcome under test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s"
    return outcome[0]


@pytest.mark.parametrize(("reader", "error"), READERS)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, reader, error):
    fifo = tmp_path / "file"
    os.mkfifo(fifo)
    outcome = finished_within(10, lambda: reader(fifo))
    assert isinstance(outcome, error) and str(outcome) == f"{fifo}: cannot read: it is not a regular file"


@pytest.mark.parametrize(("reader", "error"), READERS)
@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("/dev/zero", "it is not a regular file"),  # would never end
        ("{tmp}", "it is not a regular file"),
        ("{tmp}/missing", "it does not exist"),
        ("{tmp}/link-to-fifo", "it is not a regular file"),
    ],
)
def test_a_device_a_folder_a_link_to_a_fifo_or_nothing_is_a_clear_error(tmp_path, reader, error, name, problem):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link-to-fifo").symlink_to(tmp_path / "fifo")
    path = Path(name.format(tmp=tmp_path))
    outcome = finished_within(10, lambda: reader(path))
    assert isinstance(outcome, error) and str(outcome) == f"{path}: cannot read: {problem}"


def test_a_link_to_a_regular_file_is_followed(tmp_path):
    """As Kubernetes mounts secrets: a link through ..data to the file."""
    (tmp_path / "real").write_text("plate,reason\nAB123,stolen\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_text_file(tmp_path / "link", 100, InputError) == "plate,reason\nAB123,stolen\n"


def test_limits_and_encoding(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"\xef\xbb\xbfok\n")
    assert read_text_file(path, 10, ConfigError) == "ok\n"  # the byte-order mark dropped
    path.write_bytes(b"a\nb\n\xff")
    with pytest.raises(ConfigError, match=r": line 3: not UTF-8$"):
        read_text_file(path, 10, ConfigError)
    path.write_bytes(b"x" * 2049)
    with pytest.raises(InputError, match=r"larger than 2 KiB$"):
        read_text_file(path, 2048, InputError)


@pytest.mark.parametrize("secret", ["/dev/zero", "{tmp}/fifo"])
def test_a_secret_file_that_never_ends_or_blocks_is_refused(tmp_path, secret):
    from common.config import Settings

    os.mkfifo(tmp_path / "fifo")
    secret = secret.format(tmp=tmp_path)
    outcome = finished_within(10, lambda: Settings.load({"ALPR_REDIS_PASSWORD_FILE": secret}))
    assert isinstance(outcome, ConfigError)
    assert str(outcome) == "ALPR_REDIS_PASSWORD_FILE: the file it names: cannot read: it is not a regular file"
