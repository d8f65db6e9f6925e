"""Job hashes and the job-key fingerprints are read each field within its bound. The lengths were asked
first and the values after: another Redis client that swapped a field for 20 MB in between had it sent
whole. Here a client's every round trip is followed by such a swap, and Redis must send none of it. The
listings of keys, set members, hash fields and list entries are bounded too (common/bounded_scan.py)."""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline

from common import defaults
from common.bounded_hash import read_many_within_bounds, read_within_bounds
from common.bounded_scan import hash_within_bounds, scan_within_bounds
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


def test_listings_and_many_hashes_send_nothing_over_its_bound_and_stop_at_their_most(redis_url):
    """The bounded listings `alpr status` and the alert pool read with (common/bounded_scan.py): a name,
    field or entry over its bound is counted, never sent; a listing stops at its most and says so."""
    connection = redis.Redis.from_url(redis_url)
    big = b"x" * 2_000_000
    connection.mset({f"k:{number:02d}": 1 for number in range(50)} | {b"k:" + big: 1})
    connection.sadd("set", "h:1", "h:2", "h:absent", "k:01", b"h:" + big)
    connection.hset("h:1", mapping={"a": "1", "b": big})
    connection.hset("h:2", mapping={"a": "2", "c" * 100: "1"})
    connection.set("string", "x")
    before = sent_by(connection)
    every = scan_within_bounds(connection, "k:*", 64, 1000)
    assert (len(every.names), every.too_long, every.complete) == (50, 1, True)
    cut = scan_within_bounds(connection, "k:*", 64, 10)
    assert (len(cut.names), cut.complete) == (10, False)
    hashes = scan_within_bounds(connection, "h:*", 64, 1000, "set", "hash")  # members naming no hash stay in Redis
    assert (sorted(hashes.names), hashes.too_long) == ([b"h:1", b"h:2"], 1)
    fields = hash_within_bounds(connection, "h:2", 64, 32, 1000)
    assert (fields.values, fields.too_long, fields.complete) == ({b"a": b"2"}, 1, True)
    read = read_many_within_bounds(connection, ["h:1", "h:absent", "string", "h:2"], {"a": 8, "b": 8})
    assert [r if r is None else (r.values, r.over, r.exists) for r in read] == [
        ({"a": b"1"}, {"b": len(big)}, True), ({}, {}, False), None, ({"a": b"2"}, {}, True),
    ]  # fmt: skip
    assert sent_by(connection) - before < 100_000
