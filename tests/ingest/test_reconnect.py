"""SourceKeeper (ingest/reconnect.py), the one reconnect loop of an ingest node's cameras and of `alpr run`
on a live stream: a real MJPEG camera over HTTP that closes each connection is reopened with backoff,
logged once at WARNING when lost and at INFO when back; footage is read once; an error of the reader's
own is let out as it is, not taken for a drop."""

from __future__ import annotations

import logging
import sqlite3
import threading

import cv2
import numpy as np
import pytest

from common.backoff import Backoff
from ingest.reconnect import ReaderError, SourceKeeper
from ingest.sources import FrameSource
from tests.helpers import mjpeg_camera

QUICK = (0.05, 0.1)
"""A backoff of 50 ms doubling to 100 ms: the loop's logic, not its waits (defaults: 1 s to 30 s)."""


def jpegs(count: int) -> list[bytes]:
    return [cv2.imencode(".jpg", np.full((48, 64, 3), 20 * index, np.uint8))[1].tobytes() for index in range(count)]


def test_a_stream_that_drops_is_reopened_with_backoff_and_logged_once_each_way(caplog):
    caplog.set_level(logging.DEBUG, logger="ingest.reconnect")
    stop, states, counted, connections = threading.Event(), [], [], []
    passes: list[int] = []

    def read_pass(source: FrameSource) -> None:
        assert source.is_live
        passes.append(sum(1 for _ in source.frames()))
        if len(passes) == 3:
            stop.set()  # as a node's stop, or `alpr run`'s signal, during the third connection

    with mjpeg_camera(jpegs(4), fps=50, per_connection=4, connections=connections) as url:
        keeper = SourceKeeper(url, 25.0, "gate", stop, on_state=lambda state, errors: states.append((state, errors)),
                              on_error=lambda: counted.append(1), backoff=Backoff(*QUICK))  # fmt: skip
        assert keeper.run(read_pass) == "ended"
    assert len(connections) == 3 and all(frames >= 1 for frames in passes), passes
    assert keeper.errors == len(counted) == 2 and keeper.passes == 0  # two drops; live: no pass of footage
    assert states == [("connected", 0), ("reconnecting", 1), ("connected", 1), ("reconnecting", 2),
                      ("connected", 2), ("ended", 2)]  # fmt: skip
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "ingest.reconnect"]
    assert [message for level, message in lines if level == "WARNING"] == [
        "camera gate: the stream ended (closed by the camera, or no frame within the read timeout); reconnecting"
        " with backoff"
    ]  # once: the second drop came within STABLE_STREAM_S of the first, still one outage
    infos = [message for level, message in lines if level == "INFO"]
    assert infos[0].startswith("camera gate: connected to http://127.0.0.1:") and infos[1:] == [
        "camera gate: reconnected after 1 failed attempts",
        "camera gate: reconnected after 2 failed attempts",
    ]


def test_a_stop_during_the_backoff_ends_the_loop_without_another_attempt():
    stop, connections = threading.Event(), []
    with mjpeg_camera(jpegs(2), fps=50, per_connection=2, connections=connections) as url:
        keeper = SourceKeeper(url, 25.0, "gate", stop, backoff=Backoff(60.0, 60.0))
        runner = threading.Thread(target=keeper.run, args=(lambda source: list(source.frames()),), daemon=True)
        runner.start()
        while keeper.errors == 0 and runner.is_alive():  # the drop: now it waits a minute
            runner.join(0.05)
        stop.set()
        runner.join(5)
    assert not runner.is_alive() and len(connections) == 1 and keeper.errors == 1


def test_footage_is_read_once_and_ends(tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(10):
        writer.write(np.full((48, 64, 3), 20 * index, np.uint8))
    writer.release()
    states, passes = [], []
    keeper = SourceKeeper(str(clip), 5.0, "file", threading.Event(), on_state=lambda s, e: states.append(s))
    assert keeper.run(lambda source: passes.append(len(list(source.frames())))) == "ended"
    assert passes == [5] and states == ["connected", "ended"] and keeper.errors == 0


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database is locked"), OSError(28, "No space left")])
def test_an_error_of_the_readers_own_is_let_out_as_it_is_not_taken_for_a_drop(error):
    """`alpr run`'s cores and log run inside the pass: a full disk (an OSError) was a dropped stream to
    the loop, reopened for ever; a database error was swallowed as a camera failure."""
    connections: list[float] = []

    def read_pass(source: FrameSource) -> None:
        for _ in source.frames():
            raise ReaderError(error) from error

    with mjpeg_camera(jpegs(2), fps=50, connections=connections) as url:
        keeper = SourceKeeper(url, 25.0, "gate", threading.Event(), backoff=Backoff(*QUICK))
        with pytest.raises(type(error)) as raised:
            keeper.run(read_pass)
    assert raised.value is error and keeper.errors == 0 and len(connections) == 1
