"""One rule for every file whose writer chooses what the chain does (common/file_writers.others_may_change):
the alert receivers file, a receiver's `secret_file` / `password_file` and an `ALPR_*_FILE` secret. Seen from a
container, a file made under umask 002 (0664, its group the host user's own: uid = gid, neither known there)
is a WARNING for each; written by others, by another group, or by a group known here with another member, it
is refused for each. The receivers file was warned of while a secret file made beside it was refused (a
review)."""

from __future__ import annotations

import grp
import logging
import os
from pathlib import Path

import pytest

from common.alerts import load_receivers
from common.config import Settings
from common.errors import ConfigError
from common.file_writers import others_may_change_file, others_may_write, refuse_if_others_may_change
from tests.helpers import user_alone_in_own_group

SECRET = "receiver-secret-0123456789"

HOST_USER = 54321
"""A host user's id and its own group's, neither known here (as a container sees them)."""

REFUSED = {"receivers file": "other users of this host may write it", "secret file": "its secret_file: the file"
           " it names may be written by other users of this host"}  # fmt: skip

CASES = [  # mode, owner, group, refused
    pytest.param(0o664, HOST_USER, HOST_USER, False, id="umask-002-host-users-own-group"),
    pytest.param(0o666, HOST_USER, HOST_USER, True, id="others-may-write"),
    pytest.param(0o664, HOST_USER + 1, HOST_USER, True, id="a-group-not-its-owners-number"),
    pytest.param(0o664, 0, "nogroup", True, id="a-group-known-here-with-members"),
]


def _give(path: Path, mode: int, owner: int, group: int | str) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file an owner and group no one here has takes root")
    os.chown(path, owner, grp.getgrnam(group).gr_gid if isinstance(group, str) else group)
    os.chmod(path, mode)


def _files(tmp_path: Path, field: str = "secret_file") -> tuple[Path, Path]:
    """A receivers file only its owner may write, naming a secret file of a webhook's."""
    secret, receivers = tmp_path / "hook.secret", tmp_path / "receivers.yaml"
    secret.write_text(SECRET + "\n")
    receivers.write_text(f"receivers:\n  ops:\n    type: webhook\n    url: https://hooks.example.org/alpr\n"
                         f"    {field}: {secret}\n")  # fmt: skip
    os.chmod(receivers, 0o644)
    return secret, receivers


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize(("mode", "owner", "group", "refused"), CASES)
def test_the_receivers_file_and_a_secret_file_it_names_are_judged_alike(tmp_path, caplog, mode, owner, group, refused):
    for which in ("receivers file", "secret file"):
        caplog.clear()
        secret, receivers = _files(tmp_path)
        _give(receivers if which == "receivers file" else secret, mode, owner, group)
        with caplog.at_level(logging.WARNING):
            if refused:
                with pytest.raises(ConfigError, match=REFUSED[which]):
                    load_receivers(receivers)
                continue
            assert len(load_receivers(receivers)) == 1  # the secret file's was: refused
        (said,) = _warnings(caplog)
        assert f"may be written by its group, {HOST_USER}, a host user's own as seen from a container" in said
        assert "chmod g-w" in said and SECRET not in said
        if which == "secret file":  # named by the receiver and field, never by its path (it may be the secret)
            assert said.startswith(f"{receivers}: receiver ops: its secret_file (mode 0664)")
            assert str(secret) not in said
        else:
            assert said.startswith(f"the receivers file {receivers} (mode 0664)")


@pytest.mark.parametrize("field", ["secret_file", "password_file"])
def test_a_receivers_secret_file_made_under_umask_002_is_warned_of_not_refused(tmp_path, caplog, field):
    """The MQTT password file too: one function decides for both fields."""
    secret, receivers = _files(tmp_path, field)
    if field == "password_file":
        receivers.write_text(f"receivers:\n  broker:\n    type: mqtt\n    host: 127.0.0.1\n    topic: t\n"
                             f"    username: u\n    password_file: {secret}\n")  # fmt: skip
    _give(secret, 0o664, HOST_USER, HOST_USER)
    with caplog.at_level(logging.WARNING):
        assert len(load_receivers(receivers)) == 1
    (said,) = _warnings(caplog)
    assert f"its {field} (mode 0664) may be written by its group, {HOST_USER}" in said and str(secret) not in said


@pytest.mark.parametrize(("mode", "owner", "group", "refused"), CASES)
def test_an_alpr_file_secret_follows_the_same_rule(tmp_path, caplog, mode, owner, group, refused):
    """ALPR_JOB_KEY_FILE and the other `ALPR_*_FILE` secrets: the rule of the receivers file's, a WARNING that
    names the variable, never the path."""
    secret = tmp_path / "job.key"
    secret.write_text("s3cret-value-0123456789\n")
    _give(secret, mode, owner, group)
    with caplog.at_level(logging.WARNING):
        if refused:
            with pytest.raises(ConfigError, match="ALPR_JOB_KEY_FILE: the file it names may be written by other"):
                Settings.load({"ALPR_JOB_KEY_FILE": str(secret)})
            return
        assert Settings.load({"ALPR_JOB_KEY_FILE": str(secret)}).secret("job_key") == "s3cret-value-0123456789"
    (said,) = _warnings(caplog)
    assert said.startswith(f"ALPR_JOB_KEY_FILE: the file it names (mode 0664) may be written by its group, {HOST_USER}")
    assert "they set ALPR_JOB_KEY" in said and str(secret) not in said and "s3cret" not in said


def test_a_file_of_a_user_alone_in_her_own_group_is_hers_to_write_alone(tmp_path, caplog):
    """Under Ubuntu's umask 002 her watch list, cameras file and secrets are 0664, group her own: root reading
    them counted her, the owner, as another member of her group (a review): by their mode no one but she may
    write them (root reading them still refuses them as hers, not root's: chown). The same group on root's
    folder is another user's: she may write in it."""
    owner, group = user_alone_in_own_group()
    listed = tmp_path / "stolen.csv"
    listed.write_text("plate,reason\nKPX4721,stolen\n")
    _give(listed, 0o664, owner, group)
    assert not others_may_change_file(listed)  # by its mode, no one but her (and root)
    with pytest.raises(ConfigError, match=r"make it this user's or root's own \(chown\)"):  # hers, not root's
        refuse_if_others_may_change(listed, f"the watch-list file {listed}", "they choose the plates watched for")
    listed.chmod(0o666)  # a positive control: others may write it
    assert others_may_change_file(listed)
    folder = tmp_path / "roots"
    folder.mkdir()
    _give(folder, 0o775, 0, group)  # root's, writable by her group: she is another user here
    assert others_may_write(folder)
