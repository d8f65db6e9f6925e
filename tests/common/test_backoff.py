"""The one backoff: doubling to a ceiling, for as long as an outage lasts (a camera off overnight, a
webhook down for a day), and reset once the thing waited for answers."""

from alert_worker.outcomes import retry_delay_s
from common.backoff import Backoff


def test_the_wait_doubles_to_the_longest_and_stays_there_however_long_the_outage():
    backoff = Backoff(0.5, 30.0)
    waits = [backoff.next_delay() for _ in range(5000)]  # 2 ** 1024 once overflowed a float: a day's retries
    assert waits[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0] and set(waits[7:]) == {30.0}
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_an_alert_delivery_retried_for_a_day_still_gets_a_wait():
    assert retry_delay_s(1025, None) == retry_delay_s(2000, None) > 0
    assert retry_delay_s(5000, 600.0) == 600.0  # what the receiver asked for, if longer
