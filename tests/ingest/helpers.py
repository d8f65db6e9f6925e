"""Helpers of the ingest tests: letting go of a reader blocked on a FIFO (what the old code did); a
camera's snapshot URL behind Basic authentication; the frames an ingest node queued."""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.helpers import http_server


def release_fifo(fifo: Path) -> None:
    """Let a reader blocked opening `fifo` go (open and close its other end); nothing when none waits."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@dataclass
class SnapshotRequest:
    """One request a snapshot camera got: its path and query, and its Basic credentials decoded (or None)."""

    path: str
    credentials: str | None


@contextmanager
def snapshot_camera(jpeg: bytes, accepts: Callable[[SnapshotRequest], bool]) -> Iterator[tuple[str, list]]:
    """A camera serving `jpeg` at any path to a request it `accepts`, and 401 (Basic) to any other, as a
    camera's snapshot URL does; yields its base URL and the requests it got (SnapshotRequest)."""
    requests: list[SnapshotRequest] = []

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            given = self.headers.get("Authorization", "")
            credentials = base64.b64decode(given.split()[1]).decode() if given.startswith("Basic ") else None
            request = SnapshotRequest(self.path, credentials)
            requests.append(request)
            if not accepts(request):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield base, requests


def queued_frames(connection: Any) -> list[Any]:
    """The frames of every detect job waiting on the queue (read, not taken off: a node may run on)."""
    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob, stage_queue

    frames = []
    for job_id in stage_queue(connection, "detect").get_job_ids():
        job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        frames += parse_job(job.args[0], DetectJob).frames
    return frames


def take_queued_frames(connection: Any) -> list[Any]:
    """The frames of every detect job waiting on the queue, taking the jobs off it in one step (a job
    the node queues meanwhile is either read here or left for the next call, never dropped unseen)."""
    from rq.serializers import JSONSerializer

    from common.jobs import DetectJob, parse_job
    from common.queues import StageJob, stage_queue

    key = stage_queue(connection, "detect").key
    with connection.pipeline(transaction=True) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw_ids, _ = pipe.execute()
    frames = []
    for raw_id in raw_ids:
        job_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        job = StageJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        frames += parse_job(job.args[0], DetectJob).frames
    return frames


def taken_connections(connection: redis.Redis) -> list[float]:
    """When (time.monotonic()) each connection is taken from `connection`'s pool from now: a round trip begun."""
    taken: list[float] = []
    pool = connection.connection_pool
    take = pool.get_connection

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        taken.append(time.monotonic())
        return take(*args, **kwargs)

    pool.get_connection = get_connection  # type: ignore[method-assign]
    return taken
