"""A receiver that stays down with a backlog of pending deliveries, through `alpr worker alert` on the real
Postgres, a private Redis, a real closed port and a real HTTP receiver: the backlog must not cycle through
the alert queue, fill it, or delay the alerts of a receiver that works (a soak review)."""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable

import pytest
from rq import Queue
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from alert_worker.signing import IDEMPOTENCY_HEADER
from alpr.cli import main
from common import defaults
from common.alert_log import AlertLog
from common.db import open_pool
from common.jobs import alert_job
from common.queues import connect_redis, enqueue, queue_keys, stage_queue
from tests.alert_servers import Reply, WebhookServer, own_secret
from tests.alert_worker.test_worker import (
    ALERT,
    SECRET,
    alert_worker,
    insert_listed,
    receivers_file,
    rows,
    stopped,
    wait_for,
)
from tests.helpers import free_port

RESTED = "not tried: the receiver failed its last attempt"
"""A delivery's last error while its receiver rests after a failure."""

BACKLOG = 5000
"""Pending deliveries to the dead receiver when the worker starts (a day of alerts leaves more)."""

RAISING_S = 45.0
"""How long new alerts are raised for both receivers: past ALERT_REQUEUE_AFTER_S (30 s), after which
the pool re-queued every delivery its queue still held."""


def backlog(postgres_url: str, count: int) -> None:
    """`count` alerts raised 20 minutes ago (past ALERT_MISSING_RECEIVER_S: no delivery is added to the
    other receiver), each with a pending delivery to `dead` alone, never queued (as the review's repro)."""
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection, connection.transaction():
            insert_listed(connection, [ALERT.model_copy(update={"alert_id": "read-f000000000000000"})], ["dead"])
            connection.execute(
                "INSERT INTO alerts (alert_id, kind, camera_id, captured_at, body, created_at)"
                " SELECT 'read-e' || lpad(i::text, 15, '0'), kind, camera_id, captured_at,"
                " jsonb_set(body, '{alert_id}', to_jsonb('read-e' || lpad(i::text, 15, '0'))), created_at"
                " FROM alerts, generate_series(1, %s) i",
                (count - 1,),
            )
            connection.execute("INSERT INTO alert_deliveries (alert_id, receiver) SELECT alert_id, 'dead' FROM alerts"
                               " ON CONFLICT DO NOTHING")  # fmt: skip
            connection.execute("UPDATE alerts SET created_at = now() - interval '20 minutes'")
            connection.execute("UPDATE alert_deliveries SET queued_at = NULL")
    finally:
        pool.close()


def raise_new(postgres_url: str, redis_url: str, number: int) -> str:
    """As the sighting pool raises one: logged with a delivery to each receiver, its jobs queued, then
    marked queued."""
    alert = ALERT.model_copy(update={"alert_id": f"read-a{number:015d}", "captured_at_s": time.time()})
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection, connection.transaction():
            insert_listed(connection, [alert], ["dead", "dispatch"])
        queue = stage_queue(connect_redis(redis_url), "alert")
        for receiver in ("dead", "dispatch"):
            enqueue(queue, alert_job(alert.alert_id, receiver, 1), 60)
        AlertLog(pool, 0.0).queued([(alert.alert_id, "dead"), (alert.alert_id, "dispatch")])
    finally:
        pool.close()
    return alert.alert_id


def test_a_dead_receivers_backlog_delays_no_other_receiver_and_queues_no_job_twice(
    postgres_url, redis_url, tmp_path, monkeypatch
):
    """A soak review: every pending delivery to a receiver that stays down went round the alert queue once
    per rest (a job, a claim, `rested`), and once the queue held more than 30 s of work the pool's round
    queued every delivery not yet claimed again, under the same id: 6,150 pending took the queue from
    6,000 to 43,000 entries in 6 minutes, and a working receiver got nothing for 3 minutes. Now a resting
    receiver's backlog waits in the alerts log while one probe is tried, and a job still queued is not
    queued again: the working receiver gets each alert within seconds, the queue stays short, no id twice."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    redis_ = connect_redis(redis_url)
    queue_key = queue_keys(("alert",))["alert"]
    longest, twice, stop = [0], set[str](), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            entries = [entry.decode() for entry in redis_.lrange(queue_key, 0, -1)]
            longest[0] = max(longest[0], len(entries))
            twice.update(entry for entry, n in collections.Counter(entries).items() if n > 1)
            stop.wait(0.25)

    with WebhookServer(own_secret(SECRET, "dispatch")) as dispatch:
        dead_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        receivers_file(tmp_path, monkeypatch, {"dead": (dead_url, 1), "dispatch": (dispatch.url, 5)})
        backlog(postgres_url, BACKLOG)
        watcher = threading.Thread(target=watch)
        watcher.start()
        process = alert_worker()
        try:
            raised, began = [], time.monotonic()
            while time.monotonic() - began < RAISING_S:
                raised.append(raise_new(postgres_url, redis_url, len(raised)))
                time.sleep(0.5)
            delivered = "SELECT count(*) FROM alert_deliveries WHERE receiver = 'dispatch' AND status = 'delivered'"
            wait_for(lambda: rows(postgres_url, delivered) == [(len(raised),)], 30)
        finally:
            stop.set()
            watcher.join()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
    late = rows(postgres_url, "SELECT coalesce(extract(epoch FROM d.delivered_at - a.created_at), 1e9)"
                              " FROM alert_deliveries d JOIN alerts a USING (alert_id) WHERE d.receiver = 'dispatch'"
                              " ORDER BY 1")  # fmt: skip
    latencies = [float(row[0]) for row in late]
    ((claims,),) = rows(postgres_url, "SELECT sum(attempts) FROM alert_deliveries WHERE receiver = 'dead'")
    states = dict(rows(postgres_url, "SELECT status, count(*) FROM alert_deliveries WHERE receiver = 'dead'"
                                     " GROUP BY status"))  # fmt: skip
    print(f"\nbacklog {BACKLOG}: {len(raised)} alerts raised; dispatch's latency median"
          f" {latencies[len(latencies) // 2]:.2f} s, worst {latencies[-1]:.2f} s; alert queue longest {longest[0]};"
          f" ids queued twice {len(twice)}; claims of the dead receiver's deliveries {claims}; {states}")  # fmt: skip
    assert states == {"pending": BACKLOG + len(raised)}  # none lost, none given up, none sent
    assert len(latencies) == len(raised) and latencies[-1] < 5.0, "the working receiver waited"
    assert longest[0] <= 300 and not twice


def test_the_pools_round_does_not_queue_again_a_job_still_queued(postgres_url, redis_url, tmp_path, monkeypatch):
    """A delivery queued more than ALERT_REQUEUE_AFTER_S ago and not yet claimed (its job waits behind a
    long queue) was queued again under the same id: `enqueue` replaced its record and pushed the id once
    more, so the queue held it twice (up to 6 times in the soak) and fed itself. A job lost (its id no
    longer in the queue) is still queued again."""

    def lose_one(queue: Queue, raised: list[str]) -> None:
        lost = alert_job(raised[1], "dead", 1)
        queue.connection.lrem(queue.key, 0, f"alert-{lost.batch_id}".replace(".", "_d"))  # a job lost with Redis

    queue, raised, _ = round_with_two_due(postgres_url, redis_url, tmp_path, monkeypatch, lose_one)
    assert dead_entries(queue) == {f"alert-{raised[0]}_ddead_d1": 1, f"alert-{raised[1]}_ddead_d1": 1}


def test_the_pools_round_reads_only_the_end_of_the_alert_queue_within_bounds(
    postgres_url, redis_url, tmp_path, monkeypatch
):
    """Any client of Redis may push to the alert queue, and each round read it whole to find the jobs still
    waiting (a review): 200,000 ids and one of 5 MB pushed ahead of the pool's were sent every round, and
    one that is not UTF-8 failed the round (no delivery queued). Only its end is read, each id within a
    bound, and a job still waiting there is not queued again."""

    def flood(queue: Queue, raised: list[str]) -> None:
        with queue.connection.pipeline(transaction=False) as pipeline:
            for number in range(0, 200_000, 1000):
                pipeline.lpush(queue.key, *(f"alert-forged-{n:06d}" for n in range(number, number + 1000)))
            pipeline.lpush(queue.key, b"\xff\xfe", b"x" * 5_000_000)
            pipeline.execute()

    queue, raised, sent = round_with_two_due(postgres_url, redis_url, tmp_path, monkeypatch, flood)
    assert sent < 1_000_000, sent  # was 13 MB a round
    assert dead_entries(queue) == {f"alert-{raised[0]}_ddead_d1": 1, f"alert-{raised[1]}_ddead_d1": 1}


def test_due_jobs_at_the_head_of_a_long_queue_are_not_queued_again(postgres_url, redis_url, tmp_path, monkeypatch):
    """A legitimate backlog of more than MAX_WAITING_READ alert jobs (a review): RQ pushes new jobs at the
    tail and workers take them from the head, so the deliveries due again (queued 31 s ago, their jobs still
    waiting) sit at the head; the round read only the tail's 10,000 ids, missed them and queued each again
    (two copies instead of one). Each due id is now looked for itself: found, it is not queued again."""

    def newer_jobs_behind(queue: Queue, raised: list[str]) -> None:
        with queue.connection.pipeline(transaction=False) as pipeline:
            for number in range(0, 12_000, 1000):  # newer alert jobs queued behind the two (as RQ does: RPUSH)
                pipeline.rpush(queue.key, *(f"alert-a{n:06d}_dops_d1" for n in range(number, number + 1000)))
            pipeline.execute()

    queue, raised, sent = round_with_two_due(postgres_url, redis_url, tmp_path, monkeypatch, newer_jobs_behind)
    assert dead_entries(queue) == {f"alert-{raised[0]}_ddead_d1": 1, f"alert-{raised[1]}_ddead_d1": 1}
    assert sent < 100_000, sent  # no window of the queue read (its last 10,000 ids: some 250 kB)


def test_a_stopping_workers_round_queues_nothing(postgres_url, redis_url, tmp_path, monkeypatch):
    """A stop signal raises RQ's StopRequested wherever the main thread is: landing in the round's first duty
    (adding the deliveries alerts lack, which catches every exception as its failure) it was taken for one,
    and the round went on queueing the deliveries due on the way out. A stopping worker's round queues none."""

    def stopping(queue: Queue, raised: list[str]) -> None:
        queue.connection.delete(queue.key)  # the jobs gone: both would be queued again

    queue, _, _ = round_with_two_due(postgres_url, redis_url, tmp_path, monkeypatch, stopping, stop=True)
    assert dead_entries(queue) == {}


def round_with_two_due(
    postgres_url: str,
    redis_url: str,
    tmp_path,
    monkeypatch,
    before: Callable[[Queue, list[str]], None],
    stop: bool = False,
) -> tuple[Queue, list[str], int]:
    """Two alerts whose deliveries to `dead` are due again (queued 31 s ago, their jobs still in the queue),
    `before` given the queue and their ids, then one round of the pool's duties (with `stop`, of a worker
    stopping): the queue, the alerts' ids and the bytes Redis sent during the round."""
    from alert_worker.worker import AlertStage
    from common.alerts import load_receivers
    from common.metrics import Metrics

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    receivers_file(tmp_path, monkeypatch, {"ops": ("http://127.0.0.1:9/hook", 1)})
    raised = [raise_new(postgres_url, redis_url, number) for number in range(2)]  # jobs for `dead`, `dispatch` too
    rows(postgres_url, "DELETE FROM alert_deliveries WHERE receiver <> 'dead' RETURNING 1")
    rows(postgres_url, "UPDATE alert_deliveries SET queued_at = now() - interval '31 seconds' RETURNING 1")
    queue = stage_queue(connect_redis(redis_url), "alert")
    before(queue, raised)
    pool = open_pool(postgres_url)
    try:
        stage = AlertStage(
            load_receivers(tmp_path / "receivers.yaml"), AlertLog(pool, 0.0), queue, Metrics(), 3600.0, 60
        )
        if stop:  # as a stop signal does (`alpr worker alert`: the stage's event is its workers' stop)
            stage.stopping.set()
        sent = queue.connection.info("stats")["total_net_output_bytes"]
        stage.maintain()
        sent = queue.connection.info("stats")["total_net_output_bytes"] - sent
    finally:
        pool.close()
    return queue, raised, sent


def dead_entries(queue: Queue) -> dict[str, int]:
    """How many times the alert queue holds each job of a delivery to `dead`."""
    entries = collections.Counter(entry.decode(errors="replace") for entry in queue.connection.lrange(queue.key, 0, -1))
    return {entry: n for entry, n in entries.items() if entry.endswith("_ddead_d1")}


def test_a_receiver_back_gets_its_held_backlog_once_each_oldest_first(postgres_url, redis_url, tmp_path, monkeypatch):
    """The backlog held while the receiver failed is sent once it answers: each alert once, the oldest
    first, ALERT_RELEASE_PER_S a second (not all queued at once), none lost."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    count = 200
    redis_ = connect_redis(redis_url)
    queue_key = queue_keys(("alert",))["alert"]
    with WebhookServer(own_secret(SECRET, "dead"), Reply(status=503)) as dead:
        receivers_file(tmp_path, monkeypatch, {"dead": (dead.url, 1)})
        backlog(postgres_url, count)
        process = alert_worker()
        try:
            held = f"SELECT count(*) >= {count - 2} FROM alert_deliveries WHERE last_error = '{RESTED}'"
            assert wait_for(lambda: rows(postgres_url, held) == [(True,)], 30), "not held"
            tried = len(dead.received)
            time.sleep(3)
            assert len(dead.received) - tried <= 3  # a probe a rest, not the backlog
            switched = len(dead.received)
            dead.reply = Reply(status=200)
            longest, began = 0, time.monotonic()
            delivered = "SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'"
            while rows(postgres_url, delivered) != [(count,)] and time.monotonic() - began < 90:
                longest = max(longest, redis_.llen(queue_key))
                time.sleep(0.2)
        finally:
            assert stopped(process) == 0
    after = [r.headers[IDEMPOTENCY_HEADER] for r in dead.received[switched:]]
    assert rows(postgres_url, delivered) == [(count,)] and len(set(after)) == len(after) >= count - 1  # each once
    assert after[3:] == sorted(after[3:])  # past the probe and the first tried, released oldest first
    assert longest <= 2 * defaults.ALERT_RELEASE_PER_S + 10  # released a share a second, not all at once


def test_a_probe_left_by_a_worker_killed_is_sent_by_another_and_releases_the_backlog(
    postgres_url, redis_url, tmp_path, monkeypatch
):
    """A receiver draining a released backlog (40 alerts never tried, due 20 a second) fails again on a live
    alert: its worker holds them all, the oldest its probe. That worker is killed -9 while the
    receiver rests, the receiver comes back, and another worker sends the probe: its first attempt, a worker
    that never saw the receiver fail took it for an alert like any other, and the 40 others waited ALERT_HOLD_S
    (10 minutes) with the receiver back. The probe is now marked in the alerts log: its delivery, by whichever
    worker, makes the held alerts due at once; each is delivered once, and nothing but the probe is tried
    before it answers."""
    from common.alert_holds import HELD, RELEASED

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    count = 40
    rest_of_3_s = Reply(status=503, headers={"Retry-After": "3"})
    with WebhookServer(own_secret(SECRET, "dead"), rest_of_3_s) as receiver:
        receivers_file(tmp_path, monkeypatch, {"dead": (receiver.url, 1)})
        backlog(postgres_url, count)
        rows(postgres_url, f"UPDATE alert_deliveries d SET last_error = '{RELEASED}', next_attempt_at = now()"
                           " + interval '8 seconds' + make_interval(secs => n / 20.0) FROM (SELECT alert_id,"
                           " row_number() OVER (ORDER BY alert_id) AS n FROM alert_deliveries) o"
                           " WHERE o.alert_id = d.alert_id RETURNING 1")  # fmt: skip
        live = live_alert(postgres_url)
        enqueue(stage_queue(connect_redis(redis_url), "alert"), alert_job(live.alert_id, "dead", 1), 60)
        first = alert_worker()  # its first job: the live alert, the backlog not due yet
        try:
            held = f"SELECT count(*) FROM alert_deliveries WHERE last_error = '{HELD}'"
            assert wait_for(lambda: rows(postgres_url, held) == [(count,)], 30), "not held"
        finally:
            first.kill()  # SIGKILL: its memory of the receiver's rest and probe is gone with it
            first.wait(timeout=10)
        assert [r.headers[IDEMPOTENCY_HEADER] for r in receiver.received] == [live.alert_id]
        receiver.reply = Reply(status=200)
        killed_at = time.monotonic()
        second = alert_worker()
        try:
            delivered = "SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'"
            wait_for(lambda: rows(postgres_url, delivered) == [(count + 1,)], 30)
            took_s = time.monotonic() - killed_at
        finally:
            assert stopped(second) == 0
    due_in = rows(postgres_url, "SELECT max(extract(epoch FROM next_attempt_at - now())) FROM alert_deliveries"
                                " WHERE status = 'pending'")  # fmt: skip
    print(f"\nprobe's worker killed: all {count + 1} delivered {took_s:.1f} s after; still pending due in {due_in}")
    assert rows(postgres_url, delivered) == [(count + 1,)], f"held; still pending due in {due_in} s"
    after = [r.headers[IDEMPOTENCY_HEADER] for r in receiver.received[1:]]
    assert len(after) == len(set(after)) == count + 1  # each once, the probe first and alone until it answered
    assert after[0] == "read-e000000000000001" and after[1:] == sorted(after[1:-1]) + [live.alert_id]


def live_alert(postgres_url: str):  # type: ignore[no-untyped-def]
    """A fresh alert to the receiver `dead`, recorded in the alerts log (its delivery pending)."""
    live = ALERT.model_copy(update={"alert_id": "read-a000000000000000", "captured_at_s": time.time()})
    pool = open_pool(postgres_url)
    try:
        with pool.connection() as connection, connection.transaction():
            insert_listed(connection, [live], ["dead"])
    finally:
        pool.close()
    return live


@pytest.mark.parametrize(("refusal", "probe_ends"), [(409, "rejected"), (422, "rejected"), (404, "pending")])
def test_a_probe_refused_by_a_receiver_that_answers_holds_none_of_its_other_alerts(
    postgres_url, redis_url, tmp_path, monkeypatch, refusal, probe_ends
):
    """A receiver fails (503, a rest of 3 s) and its worker holds its backlog, the oldest alert its probe.
    Back, it refuses that one alert (409: a duplicate of its own; 422; 404) and answers 200 to the others:
    the probe was rejected and nothing released what it held (a review measured 49 alerts held, due in 572 s,
    the receiver answering 200 to others). A refusal for good of the probe that shows the receiver answers
    hands the probe's mark to the next-oldest alert held, due at once, in the transaction that records it;
    a 404, which may be the receiver's state for a while (a maintenance window), leaves the refused alert to
    be tried again after its own back-off, and the receiver's next probe, after its rest, is the next-oldest
    alert: either way that one is answered, and the backlog is released. Each other alert is sent once, and
    before an answer of 200 nothing but a probe is tried."""
    from common.alert_holds import HELD, PROBE, REFUSED_FOR_NOW

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ALPR_REDIS_URL", redis_url)
    count = 20
    with WebhookServer(own_secret(SECRET, "dead"), Reply(status=503, headers={"Retry-After": "3"})) as receiver:
        receivers_file(tmp_path, monkeypatch, {"dead": (receiver.url, 1)})
        backlog(postgres_url, count)
        rows(postgres_url, "UPDATE alert_deliveries SET next_attempt_at = now() + interval '1 hour' RETURNING 1")
        queue = stage_queue(connect_redis(redis_url), "alert")
        process = alert_worker()
        try:
            assert wait_for(lambda: bool(queue.connection.scard(WORKERS_BY_QUEUE_KEY % queue.name)), 60), "no worker"
            rows(postgres_url, "UPDATE alert_deliveries SET next_attempt_at = now() + interval '8 seconds' RETURNING 1")
            live = live_alert(postgres_url)
            enqueue(queue, alert_job(live.alert_id, "dead", 1), 60)  # refused 503: the backlog held
            held = f"SELECT count(*) FROM alert_deliveries WHERE last_error = '{HELD}'"
            assert wait_for(lambda: rows(postgres_url, held) == [(count,)], 30), "not held"
            ((probe,),) = rows(postgres_url, f"SELECT alert_id FROM alert_deliveries WHERE starts_with(last_error,"
                                             f" '{PROBE}')")  # fmt: skip
            receiver.by_alert[probe] = Reply(status=refusal)
            receiver.reply = Reply(status=200)
            delivered = "SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'"
            wait_for(lambda: rows(postgres_url, delivered) == [(count,)], 30)
        finally:
            assert stopped(process) == 0
    due_in = rows(postgres_url, "SELECT max(extract(epoch FROM next_attempt_at - now())) FROM alert_deliveries"
                                " WHERE status = 'pending'")  # fmt: skip
    states = dict(rows(postgres_url, "SELECT status, count(*) FROM alert_deliveries GROUP BY status"))
    assert states == {"delivered": count, probe_ends: 1}, f"{states}; still pending due in {due_in} s"
    after = [r.headers[IDEMPOTENCY_HEADER] for r in receiver.received[1:]]
    others = [alert_id for alert_id in after if alert_id != probe]
    assert len(others) == len(set(others)) == count  # each once
    assert after[0] == probe == "read-e000000000000001" and after[1] == "read-e000000000000002"  # a probe alone
    if probe_ends == "pending":  # tried again after its own back-off (1 s, 2 s, 4 s...): a few times, no more
        ((error,),) = rows(postgres_url, f"SELECT last_error FROM alert_deliveries WHERE alert_id = '{probe}'")
        print(f"the probe refused {refusal}: tried {after.count(probe)} times")
        assert error.startswith(REFUSED_FOR_NOW) and after.count(probe) <= 6
        # each refusal of it rests the receiver a second, the alerts not sent yet held behind a probe of their own
        assert others[-1] == live.alert_id
    else:
        assert after.count(probe) == 1
        assert others[1:] == sorted(others[1:-1]) + [live.alert_id]  # then the backlog released, oldest first
