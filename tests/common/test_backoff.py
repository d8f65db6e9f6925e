"""The one backoff: doubling to a ceiling, for as long as an outage lasts (a camera off overnight, a
webhook down for a day), and reset once the thing waited for answers."""

import random

from alert_worker.outcomes import retry_delay_s
from common.backoff import Backoff, jittered


def test_the_wait_doubles_to_the_longest_and_stays_there_however_long_the_outage():
    backoff = Backoff(0.5, 30.0)
    waits = [backoff.next_delay() for _ in range(5000)]  # 2 ** 1024 once overflowed a float: a day's retries
    assert waits[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0] and set(waits[7:]) == {30.0}
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_an_alert_delivery_retried_for_a_day_still_gets_a_wait():
    assert retry_delay_s(1025, None) == retry_delay_s(2000, None) > 0
    assert retry_delay_s(5000, 600.0) == 600.0  # what the receiver asked for, if longer


def test_a_jittered_wait_is_cut_by_a_random_share_up_to_the_jitter_and_seeded_repeats():
    """Ten cameras behind one dead recorder retried in lockstep (2.5, 6.5, 10.5, 16.5, 25.5 s: a review):
    with jitter each wait is from (1 - jitter) of the exact one to all of it, and cameras' waits differ."""
    cameras = [Backoff(1.0, 30.0, jitter=0.5, rng=random.Random(seed)) for seed in range(10)]
    waits = [[camera.next_delay() for _ in range(8)] for camera in cameras]
    plain = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for camera_waits in waits:
        assert all(0.5 * p <= w <= p for w, p in zip(camera_waits, plain, strict=True)), camera_waits
    assert all(len({round(camera_waits[i], 6) for camera_waits in waits}) == 10 for i in range(8))  # no lockstep
    again = Backoff(1.0, 30.0, jitter=0.5, rng=random.Random(3))
    assert [again.next_delay() for _ in range(8)] == waits[3]
    assert jittered(10.0, 0.0) == 10.0 and 5.0 <= jittered(10.0, 0.5) <= 10.0
