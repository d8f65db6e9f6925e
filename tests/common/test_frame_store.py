import time

import numpy as np
import pytest
import redis

from common.errors import InputError
from common.frame_store import FrameStore, decode_jpeg, encode_jpeg, frame_key


def test_frames_round_trip_and_expire(redis_url):
    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=1)
    image = np.full((48, 64, 3), 120, np.uint8)
    store.put_many([(frame_key("a"), encode_jpeg(image, 90)), (frame_key("b"), encode_jpeg(image, 90))])
    got = store.get_many([frame_key("a"), frame_key("b"), frame_key("never")])
    assert got[frame_key("a")].shape == (48, 64, 3) and got[frame_key("never")] is None
    assert 0 < store.redis.ttl(frame_key("a")) <= 1
    time.sleep(1.6)
    assert store.redis.keys("alpr:frame:*") == []


def test_sizes_are_read_before_the_bytes_and_a_key_of_another_type_is_that_frame_alone(redis_url):
    """STRLEN on a list raised WRONGTYPE for the whole pipeline: one planted key failed a batch of 16."""
    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=60)
    store.put_many([(frame_key("a"), b"12345")])
    store.redis.rpush(frame_key("planted"), "x")
    sizes, ttls = store.sizes_and_ttls([frame_key("a"), frame_key("planted"), frame_key("never")])
    assert sizes == {frame_key("a"): 5, frame_key("planted"): 0, frame_key("never"): 0}
    assert 0 < ttls[frame_key("a")] <= 60 and ttls[frame_key("never")] is None


def test_a_corrupt_frame_is_an_input_error(redis_url):
    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=10)
    store.redis.set(frame_key("bad"), b"not a jpeg")
    with pytest.raises(InputError, match="not a decodable JPEG"):
        store.get_many([frame_key("bad")])


def test_a_frame_larger_than_a_frame_may_be_is_refused_before_decoding(redis_url):
    # 9000x9000 of one colour is a few hundred kilobytes of JPEG and 243 MB of pixels: the size in its
    # header is refused before any pixel is decoded (a worker decodes a whole job's frames at once).
    huge = encode_jpeg(np.full((9000, 9000, 3), 90, np.uint8), 85)
    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=10)
    store.put_many([(frame_key("huge"), huge)])
    with pytest.raises(InputError, match="9000x9000 pixels, more than"):
        store.get_many([frame_key("huge")])
    assert decode_jpeg(encode_jpeg(np.full((720, 1280, 3), 90, np.uint8), 85), "hd").shape == (720, 1280, 3)


def test_a_jobs_frames_together_are_held_to_its_pixel_budget():
    import numpy as np
    import pytest

    from common.errors import InputError
    from common.frame_store import PixelBudget, PixelBudgetError, decode_jpeg, encode_jpeg

    jpeg = encode_jpeg(np.full((100, 200, 3), 80, np.uint8), 90)  # 20,000 pixels
    budget = PixelBudget(50_000)
    assert decode_jpeg(jpeg, "a", budget).shape == (100, 200, 3)
    assert decode_jpeg(jpeg, "b", budget).shape == (100, 200, 3)
    with pytest.raises(PixelBudgetError, match="frame c: the job's frames exceed") as over:
        decode_jpeg(jpeg, "c", budget)  # checked by its header, before any decoding
    assert isinstance(over.value, InputError) and budget.left == 10_000


def test_a_workers_store_waits_out_a_redis_restart_and_ingests_does_not(redis_server):
    import threading
    import time

    import pytest
    import redis

    from common.frame_store import FrameStore

    connection = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    FrameStore(connection, 600).put_many([("alpr:frame:a", b"x")])
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):  # no patience (ingest): at once
        FrameStore(connection, 600).get_jpegs(["alpr:frame:a"])
    restart = threading.Timer(1.5, redis_server.start)
    restart.start()
    started = time.monotonic()
    patient = FrameStore(connection, 600, patience_s=20)
    patient.put_many([("alpr:frame:b", b"y")])  # through the outage: the server comes back empty
    restart.join()
    assert patient.get_jpegs(["alpr:frame:a", "alpr:frame:b"]) == {"alpr:frame:a": None, "alpr:frame:b": b"y"}
    assert 1.0 < time.monotonic() - started < 20


def test_a_workers_store_waits_for_room_in_a_full_redis(redis_server):
    """A frames Redis at its maxmemory (noeviction, as compose runs it) refuses writes: the detector's
    crops failed at once, the job's retries spent in milliseconds and its frames lost; now the worker
    waits for room (frames expire or are consumed) within its patience."""
    import threading

    connection = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    connection.config_set("maxmemory", str(int(connection.info("memory")["used_memory"]) + 2_000_000))
    store = FrameStore(connection, 600)
    filler = []
    with pytest.raises(redis.exceptions.OutOfMemoryError):  # no patience (ingest): at once
        for index in range(100):
            filler.append(frame_key(f"cam:1:{index}"))
            store.put_many([(filler[-1], b"x" * 200_000)])
    consumed = threading.Timer(1.0, lambda: connection.delete(*filler))  # the redactor deletes frames
    consumed.start()
    started = time.monotonic()
    FrameStore(connection, 600, patience_s=20).put_many([(frame_key("cam:2:0:plate0"), b"crop" * 1000)])
    consumed.join()
    assert time.monotonic() - started >= 0.9 and connection.exists(frame_key("cam:2:0:plate0"))


def test_a_stored_jpeg_of_thousands_of_scans_is_refused_before_decoding():
    """A worker took 20 s over an 8K JPEG of one scan repeated 20,000 times (595 KB); MAX_JPEG_SCANS."""
    import cv2

    from common import defaults
    from tests.crafted_images import progressive_jpeg, scan_bomb

    blocks = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = cv2.resize(blocks, (128, 96), interpolation=cv2.INTER_NEAREST)  # 2.6 KB as a JPEG
    bomb = scan_bomb(image, defaults.MAX_JPEG_SCANS)
    with pytest.raises(InputError, match=f"frame k is a JPEG with {defaults.MAX_JPEG_SCANS + 10} scans, more than"):
        decode_jpeg(bomb, "k")
    assert decode_jpeg(progressive_jpeg(image), "p").shape == (96, 128, 3)


def test_a_key_present_with_an_empty_value_or_of_another_type_is_read_as_corrupt_not_expired(redis_url):
    """Both counted 0 bytes and read as no frame: recorded `expired`, a planted or cut value hidden (a review)."""
    from common.frame_store import EMPTY_VALUE, OTHER_TYPE

    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=60)
    store.put_many([(frame_key("empty"), b""), (frame_key("a"), b"12345")])
    store.redis.set(frame_key("empty, no ttl"), b"")
    store.redis.hset(frame_key("hash"), "x", "y")
    keys = [frame_key(k) for k in ("a", "empty", "empty, no ttl", "hash", "never")]
    read = store.get_within_bounds(keys)
    assert read.corrupt == {frame_key("empty"): EMPTY_VALUE, frame_key("empty, no ttl"): EMPTY_VALUE,
                            frame_key("hash"): OTHER_TYPE}  # fmt: skip
    assert read.jpegs == {frame_key("a"): b"12345"} and not read.too_large | read.over_budget
