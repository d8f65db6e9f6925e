"""alpr/wiring.py on real Redis servers: a frame store that writes to disk is warned about at start
(raw frames would reach it)."""

from __future__ import annotations

import logging

import pytest
import redis

from alpr.wiring import reach_frame_store
from common.config import Settings


def frame_store_warnings(caplog: pytest.LogCaptureFixture, environ: dict[str, str]) -> list[str]:
    """The WARNING lines of reaching the frame store of these settings."""
    settings = Settings.load(environ)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reach_frame_store(settings, redis.Redis.from_url(settings.redis_url))
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_frame_store_that_persists_is_warned_about(redis_url, caplog):
    shared = {"ALPR_REDIS_URL": redis_url}
    assert frame_store_warnings(caplog, shared) == []  # the test servers write nothing to disk
    server = redis.Redis.from_url(redis_url)
    server.config_set("save", "3600 1")  # a stock Redis's snapshots
    [warning] = frame_store_warnings(caplog, shared)
    assert "RDB snapshots (save 3600 1)" in warning and "unblurred, will be written to disk" in warning
    assert "ALPR_FRAME_STORE_URL is unset: the queues' Redis" in warning and "point ALPR_FRAME_STORE_URL" in warning
    server.config_set("save", "")
    server.config_set("appendonly", "yes")
    [warning] = frame_store_warnings(caplog, {"ALPR_FRAME_STORE_URL": redis_url})  # a store of its own
    assert "an append-only file (appendonly yes)" in warning and "is unset" not in warning


def test_a_frame_store_that_refuses_config_is_warned_about_not_fatal(redis_url, caplog):
    admin = redis.Redis.from_url(redis_url)  # an ACL user without CONFIG, as a renamed CONFIG answers
    admin.acl_setuser("ingest", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all", "-config"])
    url = redis_url.replace("redis://", "redis://ingest:s3cret@", 1)
    [warning] = frame_store_warnings(caplog, {"ALPR_FRAME_STORE_URL": url})
    assert (
        "cannot check whether the frame store's Redis" in warning
        and "no permissions to run the 'config|get'" in warning
    )
    assert "s3cret" not in warning and "ingest:***@" in warning
