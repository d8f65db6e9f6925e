"""A detect worker process whose RQ workers run as `alpr worker`'s do (alpr/worker_command.run_workers, a
stage that records its jobs): `python -m tests.alpr.named_worker REDIS_URL [burst] [TOKEN...]` prints "ready"
once its modules are loaded and starts when a line comes on its stdin, so that the test knows its pid, and so
the names its workers take, and plants in Redis meanwhile (tests/alpr/test_worker_names.py). Each TOKEN given
stands, in turn, for the random part of a worker's name, which the test must know to forge its registration
(the last one for every worker after). Its log's WARNINGs go to stderr."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import redis

import alpr.worker_command
from alpr.worker_command import run_workers
from common.config import Settings
from common.metrics import Metrics
from common.worker_context import WorkerContext
from tests.common.recording_stage import Recorder


def main(url: str, *rest: str) -> int:
    burst = bool(rest) and rest[0] == "burst"
    tokens = list(rest[1:] if burst else rest)
    if tokens:
        given = iter(tokens)
        alpr.worker_command.token_hex = lambda _bytes=None: next(given, tokens[-1])  # type: ignore[assignment]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings.load({"ALPR_REDIS_URL": url})
    context = WorkerContext(Recorder(), Metrics())  # type: ignore[arg-type]
    print("ready", flush=True)
    sys.stdin.readline()
    options = argparse.Namespace(stage="detect", burst=burst, max_jobs=None)
    return run_workers(options, settings, redis.Redis.from_url(url), context, threading.Event())


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
