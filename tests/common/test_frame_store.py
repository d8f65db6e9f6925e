import time

import numpy as np
import pytest
import redis

from common.errors import InputError
from common.frame_store import FrameStore, encode_jpeg, frame_key


def test_frames_round_trip_and_expire(redis_url):
    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=1)
    image = np.full((48, 64, 3), 120, np.uint8)
    store.put_many([(frame_key("a"), encode_jpeg(image, 90)), (frame_key("b"), encode_jpeg(image, 90))])
    got = store.get_many([frame_key("a"), frame_key("b"), frame_key("never")])
    assert got[frame_key("a")].shape == (48, 64, 3) and got[frame_key("never")] is None
    assert 0 < store.redis.ttl(frame_key("a")) <= 1
    time.sleep(1.6)
    assert store.redis.keys("alpr:frame:*") == []


def test_a_corrupt_frame_is_an_input_error(redis_url):
    store = FrameStore(redis.Redis.from_url(redis_url), ttl_s=10)
    store.redis.set(frame_key("bad"), b"not a jpeg")
    with pytest.raises(InputError, match="not a decodable JPEG"):
        store.get_many([frame_key("bad")])
