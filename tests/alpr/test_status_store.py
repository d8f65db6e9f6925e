"""`alpr status` on a frame store of its own (a private redis-server, noeviction) at or near its maxmemory:
it said nothing of it (a soak review: "detect 1 waiting 1 running, oldest waiting frame 126 s ago" while
every detect job was refused room for its plate crops); now a line gives its use, its maxmemory and the
reserve the ingest nodes leave for the crops, and none where it has room or no maxmemory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from alpr.cli import main
from common import defaults
from common.queues import connect_redis
from tests.servers import PrivateRedis


def status_lines(redis_url: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("frame store")]


def test_status_says_when_the_frame_store_is_at_or_near_its_maxmemory(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(defaults, "FRAME_STORE_RESERVE_MIN_BYTES", 1_000_000, raising=False)
    store_server = PrivateRedis(tmp_path, ["--maxmemory-policy", "noeviction"])
    store_server.start()
    try:
        monkeypatch.setenv("ALPR_FRAME_STORE_URL", store_server.url)
        store = connect_redis(store_server.url)
        assert status_lines(redis_url, capsys) == []  # no maxmemory: nothing held back, nothing to say
        used = int(store.info("memory")["used_memory"])
        store.config_set("maxmemory", str(used + 10_000_000))
        assert status_lines(redis_url, capsys) == []  # room to spare
        store.config_set("maxmemory", str(used + 1_500_000))  # within 2 reserves of it
        (nearly,) = status_lines(redis_url, capsys)
        assert nearly.startswith("frame store nearly full: "), nearly
        assert "MiB kept for the detectors' plate crops" in nearly
        store.config_set("maxmemory", str(used + 500_000))  # within the reserve (half of it, at most)
        (full,) = status_lines(redis_url, capsys)
        assert full.startswith("frame store full: ") and "ingest nodes store no frame" in full, full
        assert main(["status", "--json", "--redis-url", redis_url]) == 0
        document = json.loads(capsys.readouterr().out)["frame_store"]
        assert document["max_bytes"] == used + 500_000 and document["full"], document
        assert document["reserve_bytes"] == (used + 500_000) // 2 and document["used_bytes"] >= used
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for index in range(100):
                store.set(f"alpr:frame:f{index}", b"x" * 20_000)
        (at_max,) = status_lines(redis_url, capsys)
        assert at_max.startswith("frame store FULL at its maxmemory: ") and "crops among them" in at_max, at_max
    finally:
        store_server.stop()


@pytest.mark.parametrize("maxmemory_mb", [48, 60])
def test_an_empty_store_of_64_mib_or_less_is_not_said_nearly_full(
    maxmemory_mb: int,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its reserve is half of it (the 32 MiB floor capped): "within two reserves of its maxmemory" was all of it,
    so an empty 48 MiB store was "nearly full" (a diff review)."""
    store_server = PrivateRedis(tmp_path, ["--maxmemory-policy", "noeviction", "--maxmemory", f"{maxmemory_mb}mb"])
    store_server.start()
    try:
        monkeypatch.setenv("ALPR_FRAME_STORE_URL", store_server.url)
        assert status_lines(redis_url, capsys) == []
    finally:
        store_server.stop()
