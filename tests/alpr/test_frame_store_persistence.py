"""A frame store whose Redis writes to disk, on real redis-servers (common/redis_persistence.py): the roles
that write pixels there (`alpr ingest`: frames; `alpr worker detect`: crops) refuse to start on it, unless
ALPR_FRAME_STORE_MAY_PERSIST says its disk is safe (then a warning); without persistence they start
quietly, and where CONFIG is refused (a managed Redis) they warn. A stock Debian redis-server snapshots
(`save`), so a node left with ALPR_FRAME_STORE_URL unset wrote every unblurred frame into its dump.rdb and
AOF, mode 0644, with one WARNING (a privacy review)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from alpr.cli import main
from alpr.connections import reach_frame_store
from common.config import Settings
from common.errors import ConfigError
from common.queues import connect_redis, stage_queue
from tests.alpr.test_ingest_command import one_image_camera
from tests.servers import PrivateRedis

PERSISTS = ["--save", "3600 1", "--appendonly", "yes"]
"""A stock Debian redis-server's snapshots, and an append-only file besides."""


@pytest.fixture()
def persisting(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server that writes what it holds to disk (in its own folder under tmp_path)."""
    (tmp_path / "persisting").mkdir()
    server = PrivateRedis(tmp_path / "persisting", PERSISTS)
    server.start()
    yield server
    server.stop()


def with_user(url: str, server: redis.Redis, commands: list[str]) -> str:
    """`url` as an ACL user with a password ('s3cret') allowed `commands`."""
    server.acl_setuser("alpr", enabled=True, passwords=["+s3cret"], keys=["*"], commands=commands)
    return url.replace("redis://", "redis://alpr:s3cret@", 1)


def test_an_ingest_node_refuses_a_frame_store_that_persists(persisting, tmp_path, capsys, caplog):
    """The queues' Redis as the frame store (ALPR_FRAME_STORE_URL unset, the README's small setup): no
    frame queued, none stored; with the opt-in the node ingests as before, with the WARNING."""
    url = with_user(persisting.url, redis.Redis(port=persisting.port), ["+@all"])
    cameras = one_image_camera(tmp_path)
    assert main(["ingest", "--cameras", str(cameras), "--redis-url", url]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "the frame store's Redis (redis://alpr:***@127.0.0.1:" in err and "s3cret" not in err
    assert "the queues' Redis too (ALPR_FRAME_STORE_URL unset or the same)" in err
    assert "RDB snapshots (save 3600 1) and an append-only file (appendonly yes)" in err
    assert "so the ingest node does not start" in err
    assert 'ALPR_FRAME_STORE_URL at a Redis of its own with `save ""` and `appendonly no`' in err
    assert "set ALPR_FRAME_STORE_MAY_PERSIST=true" in err
    connection = connect_redis(url)
    assert stage_queue(connection, "detect").count == 0 and not list(connection.scan_iter("alpr:frame:*"))

    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALPR_FRAME_STORE_MAY_PERSIST", "true")
        assert main(["ingest", "--cameras", str(cameras), "--redis-url", url]) == 0
    assert "gate: 1 frames queued" in capsys.readouterr().out
    [warning] = [r.getMessage() for r in caplog.records if "persists to disk" in r.getMessage()]
    assert "(ALPR_FRAME_STORE_MAY_PERSIST set)" in warning and "s3cret" not in warning


def test_a_detector_worker_refuses_a_frame_store_that_persists(persisting, redis_url, capsys):
    """A frames Redis of its own (ALPR_FRAME_STORE_URL) that persists: refused before the model loads."""
    worker = ["worker", "detect", "--burst", "--redis-url", redis_url]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALPR_FRAME_STORE_URL", persisting.url)
        assert main(worker) == 2
    err = capsys.readouterr().err
    assert f"the frame store's Redis ({persisting.url}) persists to disk" in err
    assert "so the detector worker does not start" in err and "queues' Redis too" not in err


def reach(environ: dict[str, str], writer: str | None, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING lines of reaching the frame store of these settings as `writer`."""
    settings = Settings.load(environ)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reach_frame_store(settings, connect_redis(settings.redis_url), writer=writer)
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("writer", ["ingest node", "detector worker"])
def test_a_writer_is_refused_unless_the_operator_opts_in(writer, persisting, redis_url, caplog):
    store = {"ALPR_REDIS_URL": redis_url, "ALPR_FRAME_STORE_URL": persisting.url}
    with pytest.raises(ConfigError, match=f"so the {writer} does not start"):
        reach(store, writer, caplog)
    [warning] = reach({**store, "ALPR_FRAME_STORE_MAY_PERSIST": "true"}, writer, caplog)
    assert "RDB snapshots (save 3600 1) and an append-only file (appendonly yes)" in warning
    assert reach({"ALPR_REDIS_URL": redis_url, "ALPR_FRAME_STORE_URL": redis_url}, writer, caplog) == []


def test_a_role_that_writes_no_pixels_only_warns(persisting, redis_url, caplog):
    """The OCR worker, the redactor and `alpr replay` read or delete what is there: they warn."""
    [warning] = reach({"ALPR_REDIS_URL": redis_url, "ALPR_FRAME_STORE_URL": persisting.url}, None, caplog)
    assert "unblurred, will be written to disk by Redis;" in warning


@pytest.mark.parametrize("refused", ["renamed", "not granted"])
def test_a_writer_only_warns_where_config_is_refused(refused, tmp_path, redis_url, caplog):
    """A managed Redis answers no CONFIG: whether it persists cannot be told, so the writer warns."""
    (tmp_path / "managed").mkdir()
    options = [*PERSISTS, "--rename-command", "CONFIG", ""] if refused == "renamed" else PERSISTS
    server = PrivateRedis(tmp_path / "managed", options)
    server.start()
    try:
        url = server.url
        if refused == "not granted":
            url = with_user(server.url, redis.Redis(port=server.port), ["+@all", "-config"])
        [warning] = reach({"ALPR_REDIS_URL": redis_url, "ALPR_FRAME_STORE_URL": url}, "ingest node", caplog)
        assert "cannot check whether the frame store's Redis" in warning and "s3cret" not in warning
    finally:
        server.stop()
