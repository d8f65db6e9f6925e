"""common/server_urls.py: malformed Redis and Postgres URLs are named, never quoted; a Postgres URL's
password is taken out for psycopg."""

import re

import pytest

from common.server_urls import split_password, url_problem

SECRET = "s3cr"


@pytest.mark.parametrize(
    ("url", "kind", "problem"),
    [
        ("redis://127.0.0.1:6379/0", "redis", None),
        ("redis://:p%25w@redis:6379/0", "redis", None),
        ("rediss://alpr:pw@[::1]:6380", "redis", None),
        ("redis://redis/", "redis", None),
        ("postgresql://alpr:p%40ss@db/alpr?options=-csearch_path%3Dx", "postgres", None),
        ("postgresql://alpr@h1:5432,h2:5433/alpr", "postgres", None),
        ("postgresql:///alpr", "postgres", None),
        ("postgresql://u:s3cr%zzet@db:5432/alpr", "postgres", "the password has a '%' that is not percent-encoding"),
        ("postgresql://u:s3cr%@db/alpr", "postgres", "encode it as %25"),
        ("postgresql://u:s3 cr3t@db/alpr", "postgres", "the password has a space"),
        ("redis://:s3cr\tet@redis/0", "redis", "the password has a space or control character"),
        ("postgresql://u:s3cr/et@db/alpr", "postgres", "must be percent-encoded"),
        ("postgresql://u:s3cr@et@db/alpr", "postgres", "must be percent-encoded"),
        ("redis://:s3cr?et@redis:6379/0", "redis", "must be percent-encoded"),
        ("redis://:?xK9pq@redis.invalid:6379/0", "redis", "must be percent-encoded"),
        ("redis://:#xK9pq@redis.invalid:6379/0", "redis", "must be percent-encoded"),
        ("postgresql://u:?s3cret@db.invalid/alpr", "postgres", "must be percent-encoded"),
        ("postgresql://u@db/alpr?application_name=alpr@gate", "postgres", None),  # an '@' in a value
        ("postgresql://u@db/alpr?sslmode=require&s3cr@et=x", "postgres", "must be percent-encoded"),
        ("redis://redis:63x9/0", "redis", "the port is not a number from 1 to 65535"),
        ("redis://redis:70000/0", "redis", "the port is not a number"),
        ("postgresql://u@h1:5432,h2:54x/alpr", "postgres", "the port is not a number"),
        ("redis://redis:6379/frames", "redis", "the database .the URL's path. must be a number"),
        ("redis://redis:6379/0?db=x", "redis", "the driver cannot parse it"),
        ("postgresql://u:s3cret@db/alpr?passwrd=s3cret", "postgres", "the driver cannot parse it"),
        ("postgresql://u@db/alpr?password=s3cr%zz", "postgres", "the path or query has a '%'"),
        # a Redis on its unix socket alone (a review: refused as a database named by its path)
        ("unix:///run/redis/redis.sock?db=2", "redis", None),
        ("unix://:s3cr@/run/redis/redis.sock", "redis", None),
        ("unix://redis/run/redis.sock", "redis", "names no host"),
        ("unix:///run/redis/redis.sock?db=two", "redis", "the database .the `db` parameter"),
        ("unix:///run/redis/redis.sock?dbx=2", "redis", "the driver cannot parse it"),
    ],
)
def test_url_problems_are_named_and_never_quoted(url, kind, problem):
    found = url_problem(url, kind)
    if problem is None:
        assert found is None
    else:
        assert found is not None and re.search(problem, found), found
        assert SECRET not in found and "63x9" not in found


@pytest.mark.parametrize(
    ("url", "bare", "password"),
    [
        ("postgresql://alpr:p%40ss%20w@db:5432/alpr", "postgresql://alpr@db:5432/alpr", "p@ss w"),
        ("postgresql://:pw@db/alpr", "postgresql://db/alpr", "pw"),
        ("postgresql://alpr@db/alpr", "postgresql://alpr@db/alpr", None),
        ("postgresql://alpr:@db/alpr", "postgresql://alpr@db/alpr", None),
        (
            "postgresql://alpr@db/alpr?options=-csearch_path%3Dx&password=a%26b&sslmode=require",
            "postgresql://alpr@db/alpr?options=-csearch_path%3Dx&sslmode=require",
            "a&b",
        ),
        ("postgresql://db/alpr?password=pw", "postgresql://db/alpr", "pw"),
    ],
)
def test_the_password_is_taken_out_of_the_url(url, bare, password):
    assert split_password(url) == (bare, password)


def test_a_worker_and_status_reach_a_redis_on_its_unix_socket_alone(tmp_path, capsys, settings):
    """`port 0` and `unixsocket`: the settings refused the URL redis-py connects by."""
    import subprocess
    import time

    import redis

    from alpr.cli import main

    socket = tmp_path / "redis.sock"
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(socket), "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(200):
            if socket.exists():
                break
            time.sleep(0.05)
        url = f"unix://{socket}?db=3"
        assert main(["status", "--interval", "0.1", "--redis-url", url]) == 0
        assert "detect" in capsys.readouterr().out
        assert main(["worker", "detect", "--burst", "--redis-url", url]) == 0
        assert redis.Redis(unix_socket_path=str(socket), db=3).keys("rq:*")  # the worker's own records
    finally:
        server.kill()
        server.wait(timeout=10)
