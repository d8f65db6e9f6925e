"""common/db.py on the real Postgres, each test in a schema of its own: a pool that cannot open says why
in one line, no password reaches a log line or an error, the password goes to psycopg apart from the URL,
every pooled session is ended by the server when frozen mid-transaction, and a pool serves again as soon
as Postgres is back."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg_pool import ConnectionPool

from alpr.cli import main
from common.db import open_pool
from common.errors import ConfigError


@pytest.fixture()
def pool(postgres_url: str) -> Iterator[ConnectionPool]:
    opened = open_pool(postgres_url)
    yield opened
    opened.close()


def with_password(url: str, password: str) -> str:
    """`url` with `password` (as written, encoded or not) in place of its own, whatever its user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


def test_a_malformed_password_never_reaches_a_log_line_or_the_error(postgres_url, caplog, capsys):
    # libpq quotes the token it cannot parse ("invalid percent-encoded token: ..."): the pool used to log
    # the password four times, and the last error line printed a password with a space as it stands
    for password in ("s3cr%zzet", "s3cr et"):
        url = with_password(postgres_url, password)
        with pytest.raises(ConfigError, match="the Postgres URL is malformed: the password has") as caught:
            open_pool(url, wait_s=1)
        assert "s3cr" not in str(caught.value)
        assert main(["db", "upgrade", "--database-url", url]) == 2
        assert "--database-url: the password has" in capsys.readouterr().err
    assert "s3cr" not in caplog.text and "s3cr" not in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_pool_that_cannot_open_says_why_in_one_line(postgres_url, caplog):
    """The last attempt's error is the message, and the pool's own warnings while it opens are kept quiet:
    four or five lines came first, then "pool initialization incomplete after 10.0 sec" (an ops review)."""
    caplog.set_level(logging.WARNING)
    for url, cause in (
        (postgres_url.replace(f"/{urlsplit(postgres_url).path.lstrip('/')}", "/alpr_no_such_db"),
         'database "alpr_no_such_db" does not exist'),
        (f"postgresql://postgres@127.0.0.1:{closed_port()}/test", "Connection refused"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            open_pool(url, wait_s=2)
        message = str(caught.value)
        assert "incomplete after" not in message and "\n" not in message, message
        assert message.endswith(cause), message
    assert not [r for r in caplog.records if r.name.startswith("psycopg")], caplog.text


def test_a_port_where_no_postgres_answers_is_said_so_within_the_connect_timeout(redis_url, caplog):
    """A Postgres URL at Redis's port waited 16 s, printed psycopg's "couldn't stop thread" warning and said
    only "pool initialization incomplete" (a review): libpq has no connect timeout of its own."""
    where = f"127.0.0.1:{urlsplit(redis_url).port}"
    caplog.set_level(logging.WARNING)
    for wait_s, within in ((1.0, "1.0"), (7.0, "5")):  # before libpq's first attempt gave up, and after
        started = time.monotonic()
        with pytest.raises(ConfigError) as caught:
            open_pool(f"postgresql://postgres@{where}/test", wait_s=wait_s)
        assert str(caught.value).endswith(f"no Postgres answered at {where} within {within} s (is it a Postgres"
                                          " server?)"), caught.value  # fmt: skip
        assert time.monotonic() - started < wait_s + 7
    assert not [r for r in caplog.records if r.name.startswith("psycopg")], caplog.text


def test_a_login_refused_for_good_fails_at_the_first_answer_and_an_outage_is_waited_out(postgres_url):
    """A mistyped database name is refused by Postgres at the first attempt: no wait mends it, and every
    command and worker given one waited the pool's full 10 s of retries before saying so. Nothing answering
    (Postgres starting, restarting) is still waited for, its wait_s."""
    from common.db import CannotConnectError

    url = postgres_url.replace(f"/{urlsplit(postgres_url).path.lstrip('/')}", "/alpr_no_such_db")
    started = time.monotonic()
    with pytest.raises(CannotConnectError) as refused:
        open_pool(url, wait_s=30)
    assert refused.value.for_good and time.monotonic() - started < 15  # a wait that ran out took 30
    started = time.monotonic()
    with pytest.raises(CannotConnectError) as unanswered:
        open_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", wait_s=1.5)
    assert not unanswered.value.for_good and time.monotonic() - started >= 1.5


def test_every_pooled_session_plans_without_jit(postgres_url):
    """A city's row estimates put the chain's short statements past jit_above_cost: Postgres compiled each
    (the sighting pool's round query 415-470 ms, 18-26 without): every kind of pool turns JIT off."""
    from common.db import MIGRATION_SESSION_SETTINGS, SIGHTING_SESSION_SETTINGS, STATUS_SESSION_SETTINGS

    for settings in (None, MIGRATION_SESSION_SETTINGS, SIGHTING_SESSION_SETTINGS, STATUS_SESSION_SETTINGS):
        opened = open_pool(postgres_url) if settings is None else open_pool(postgres_url, session_settings=settings)
        try:
            with opened.connection() as connection:
                assert connection.execute("SHOW jit").fetchone() == ("off",), settings
        finally:
            opened.close()


def test_the_password_goes_to_psycopg_apart_from_the_url(postgres_url):
    opened = open_pool(with_password(postgres_url, "s3cr%20et"), password="not-this-one")
    try:
        assert "s3cr" not in opened.conninfo and opened.kwargs["password"] == "s3cr et"  # the URL's, decoded
        with opened.connection() as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        opened.close()
    fallback = open_pool(postgres_url, password="s3cret-file")  # none in the URL: ALPR_DATABASE_PASSWORD's
    try:
        assert fallback.kwargs["password"] == "s3cret-file"
    finally:
        fallback.close()


def test_a_session_frozen_mid_transaction_is_ended_by_the_server(pool):
    """A process frozen or cut off holding row locks (a sighting worker's cameras) kept them for about
    two hours, until TCP keepalive noticed; every pooled session now has the server end it sooner."""
    with pool.connection() as connection:
        shown = {name: connection.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                 for name in ("idle_in_transaction_session_timeout", "tcp_keepalives_idle")}  # fmt: skip
    assert shown == {"idle_in_transaction_session_timeout": "2min", "tcp_keepalives_idle": "60"}


def test_a_pool_serves_again_as_soon_as_postgres_is_back_after_a_long_outage(private_postgres):
    """The pool's own attempts to replace its lost connection wait twice as long each time (1, 2, 4 ...
    s): after a 70 s outage it served again 58 s after Postgres was back, and the frames' reads and
    redactions expired meanwhile. It gives up after a few seconds now, and the next caller starts afresh."""
    server = private_postgres
    pool = open_pool(server.url)
    try:
        server.stop()
        down = time.monotonic()
        while time.monotonic() - down < 20:  # callers keep asking, as the workers' writes do
            with pytest.raises(Exception), pool.connection(timeout=1) as connection:  # noqa: B017 (refused, or none)
                connection.execute("SELECT 1")
            time.sleep(0.5)
        server.start()
        back = time.monotonic()
        while True:
            try:
                with pool.connection(timeout=1) as connection:
                    connection.execute("SELECT 1")
                break
            except Exception:  # noqa: BLE001 (not yet)
                assert time.monotonic() - back < 30
        assert time.monotonic() - back < 4  # 10 s and more at psycopg_pool's own give-up (300 s)
    finally:
        pool.close()
