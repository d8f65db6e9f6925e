"""Job hashes and the job-key fingerprints are read each field within its bound. The lengths were asked
first and the values after: another Redis client that swapped a field for 20 MB in between had it sent
whole. Here a client's every round trip is followed by such a swap, and Redis must send none of it."""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline

from common import defaults
from common.bounded_hash import read_within_bounds
from common.job_key import FINGERPRINTS_KEY, publish, published
from common.queues import enqueue, stage_queue
from common.stage_job import StageJob, field_bound
from tests.common.recording_stage import detect_job

SWAPPED_BYTES = 20_000_000


class SwapAfterFirstReply(redis.Redis):
    """A client after whose first round trip (a command or a pipeline) another client sets `field` of
    hash `key` to SWAPPED_BYTES bytes: a writer racing the reader."""

    def __init__(self, url: str, key: str, field: str) -> None:
        pool = redis.ConnectionPool.from_url(url)
        super().__init__(connection_pool=pool)
        self.swap: tuple[str, str] | None = (key, field)

    def swap_once(self) -> None:
        if self.swap is not None:
            key, field = self.swap
            self.swap = None
            redis.Redis(connection_pool=self.connection_pool).hset(key, field, b"x" * SWAPPED_BYTES)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        finally:
            self.swap_once()

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        reader = self

        class SwappingPipeline(Pipeline):
            def execute(self, raise_on_error: bool = True) -> list[Any]:
                try:
                    return super().execute(raise_on_error)
                finally:
                    reader.swap_once()

        return SwappingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def sent_by(connection: redis.Redis) -> int:
    return int(connection.info("stats")["total_net_output_bytes"])


def test_fields_are_read_within_their_bounds_absent_ones_left_out(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.hset("h", mapping={"small": b"abc", "big": b"x" * 101, "empty": b""})
    found = read_within_bounds(connection, "h", {"small": 100, "big": 100, "empty": 100, "absent": 100})
    assert (found.values, found.over, found.exists) == ({"small": b"abc", "empty": b""}, {"big": 101}, True)
    assert read_within_bounds(connection, "none", {"small": 100}) == read_within_bounds(connection, "none", {})
    assert not read_within_bounds(connection, "none", {"small": 100}).exists


def test_a_job_field_swapped_for_an_oversized_one_while_being_read_is_never_sent(redis_url):
    plain = redis.Redis.from_url(redis_url)
    job_id = enqueue(stage_queue(plain, "detect"), detect_job("raced"), 60)
    racing = SwapAfterFirstReply(redis_url, f"rq:job:{job_id}", "data")
    before = sent_by(plain)
    job = StageJob.fetch(job_id, connection=racing)
    assert sent_by(plain) - before < 200_000
    assert racing.swap is None  # the swap happened during the read
    assert job.unreadable is None  # read as it was before the swap
    assert SWAPPED_BYTES > field_bound("data") == defaults.MAX_JOB_DATA_BYTES


def test_a_fingerprint_swapped_for_an_oversized_one_while_being_read_is_never_sent(redis_url):
    plain = redis.Redis.from_url(redis_url)
    publish(plain, "ocr", "a key")
    racing = SwapAfterFirstReply(redis_url, FINGERPRINTS_KEY, "ocr")
    before = sent_by(plain)
    entries = published(racing)
    assert sent_by(plain) - before < 200_000
    assert racing.swap is None
    assert [entry.role for entry in entries] == ["ocr"]
