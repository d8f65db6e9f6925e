"""The ingest node's frame ledger and its spool journal: what it costs to record every sampled frame.

1. The ledger alone: FRAMES frames sampled and recorded (`pending`) through a FrameLedger writing to a
   real Postgres, with and without a spool folder (with one, each frame sampled and each record is
   appended to the spool file, which starts anew once all is written): CPU seconds of this process per
   1,000 frames, and the spool's lines left at the end.
2. A real `alpr ingest` node reading an image folder as recorded footage (`realtime: false`, as fast as
   it goes; no workers: the detect queue just grows) on a private redis-server: frames/s and the node's
   CPU per 1,000 frames (its rusage), with and without a spool folder; a node's start (imports, checks)
   taken out: the difference between a run of IMAGES frames and one of SMALL_RUN frames.

Run it on two checkouts to compare versions (PYTHONPATH picks the tree):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ledger.py [--frames 20000] [--images 3000]

Postgres: $ALPR_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), in a schema of
its own that is dropped at the end; redis-server from PATH on a free port.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import psycopg
import yaml

from common.db import open_pool
from common.frame_log import FrameLog, FrameRecord
from common.frame_store import frame_key
from common.jobs import FrameRef
from common.metrics import Metrics
from ingest.ledger import FrameLedger

BASE_URL = os.environ.get("ALPR_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upgraded_schema() -> str:
    """A fresh schema with the frames log's tables; its URL."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_URL, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = f"{BASE_URL}?options=-csearch_path%3D{schema}"
    subprocess.run([sys.executable, "-m", "alpr.cli", "db", "upgrade", "--database-url", url], check=True,
                   capture_output=True)  # fmt: skip
    return url


def drop_schema(url: str) -> None:
    schema = url.rsplit("%3D", 1)[1]
    with psycopg.connect(BASE_URL, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def ledger_alone(url: str, frames: int, spool: Path | None) -> tuple[float, float, int]:
    """CPU and wall milliseconds per 1,000 frames sampled and recorded, and the spool lines left."""
    pool = open_pool(url, wait_s=5)
    ledger = FrameLedger(lambda: FrameLog(pool, patience_s=0), Metrics(), capacity=200_000, spool_dir=spool)
    ledger.start()
    run = uuid.uuid4().hex[:8]
    refs = [FrameRef(frame_id=f"cam{i % 4}:{run}:{i}", camera_id=f"cam{i % 4}", seq=i, frame_index=i,
                     captured_at_s=time.time(), source_time_s=0.0, key=frame_key(f"cam{i % 4}:{run}:{i}"),
                     region="us", roi=None) for i in range(frames)]  # fmt: skip
    cpu, wall = time.process_time(), time.monotonic()
    for start in range(0, frames, 4):  # a job of 4 frames at a time, as a node packs them
        batch = refs[start : start + 4]
        for ref in batch:
            ledger.sampled(ref)
        ledger.add([FrameRecord(ref, "pending") for ref in batch])
    while True:
        with ledger.lock:
            if not ledger.buffer and not ledger.in_flight:
                break
        time.sleep(0.01)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    lines = sum(len(path.read_text().splitlines()) for path in spool.glob("ledger-*.jsonl")) if spool else 0
    ledger.close(10)
    pool.close()
    return 1e6 * cpu / frames, 1e6 * wall / frames, lines


SMALL_RUN = 50
"""The frames of the short run whose time and CPU (a node's start, mostly) are taken out."""


def ingest_node(url: str, images: Path, spool: Path | None, workdir: Path) -> tuple[float, float, int]:
    """A real `alpr ingest` over the image folder as recorded footage: wall and CPU seconds (user +
    system, its rusage), frames sampled."""
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        cameras = workdir / "cameras.yaml"
        camera = {"id": "bench", "source": str(images), "sample_fps": 30, "realtime": False}
        cameras.write_text(yaml.safe_dump({"cameras": [camera]}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
        env.update({"ALPR_REDIS_URL": f"redis://127.0.0.1:{port}/0", "ALPR_DATABASE_URL": url,
                    "ALPR_MAX_QUEUE_DEPTH": "1000000", "ALPR_FRAMES_PER_JOB": "4",
                    "ALPR_LEDGER_SPOOL_DIR": str(spool or workdir / "unused-spool")})  # fmt: skip
        if spool is None:
            env["ALPR_LEDGER_SPOOL_DIR"] = "/proc/self/no-spool"  # cannot be made: journalling off, warned once
        started = time.monotonic()
        node = subprocess.Popen([sys.executable, "-m", "alpr.cli", "ingest", "--cameras", str(cameras)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        _, status, usage = os.wait4(node.pid, 0)
        wall = time.monotonic() - started
        output = node.stdout.read() if node.stdout else ""
        assert os.waitstatus_to_exitcode(status) == 0, output
        match = re.search(r"bench: (\d+) frames queued, (\d+) skipped", output)
        assert match, output
        return wall, usage.ru_utime + usage.ru_stime, int(match[1]) + int(match[2])
    finally:
        redis.terminate()
        redis.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    workdir = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    url = upgraded_schema()
    try:
        images = workdir / "images"
        images.mkdir()
        rng = np.random.default_rng(1)
        small = workdir / "small"
        small.mkdir()
        for index in range(args.images):
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            (images / f"{index:05d}.jpg").write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
            if index < SMALL_RUN:
                shutil.copy(images / f"{index:05d}.jpg", small)
        for label, spool in (("no spool folder", None), ("spool folder", workdir / "spool")):
            for attempt in range(args.repeat):
                cpu_ms, wall_ms, lines = ledger_alone(url, args.frames, spool)
                print(f"ledger alone, {label}: {cpu_ms:.1f} ms CPU / 1000 frames, {wall_ms:.1f} ms wall / 1000"
                      f" frames, {lines} spool lines left (run {attempt + 1})", flush=True)  # fmt: skip
        for label, spool in (("no spool folder", None), ("spool folder", workdir / "spool-node")):
            for attempt in range(args.repeat):
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute("TRUNCATE frames")
                wall_s, cpu_s, sampled = ingest_node(url, images, spool, workdir)
                short_wall_s, short_cpu_s, short = ingest_node(url, small, spool, workdir)
                fps = (sampled - short) / (wall_s - short_wall_s)
                cpu_ms = 1e6 * (cpu_s - short_cpu_s) / (sampled - short)
                print(f"alpr ingest, {label}: {fps:.0f} frames/s, {cpu_ms:.0f} ms CPU / 1000 frames ({sampled}-{short}"
                      f" frames, start taken out; run {attempt + 1})", flush=True)  # fmt: skip
    finally:
        drop_schema(url)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
