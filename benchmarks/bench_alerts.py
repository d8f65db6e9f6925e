"""Watch-list alerts at live pace: how long from the capture of the frame whose read matched a listed
plate to the alert arriving at a webhook receiver (issue 10 §3: within 1 s, p99), through the whole
chain as separate processes on this machine: an ingest node with live cameras (synthetic clips played
at their own pace, sampled at 5 frames/s), two detector workers, an OCR, a redactor, a sighting and an
alert worker, a private Redis, Postgres, and an HTTP receiver in this process that checks each
alert's signature and notes when it arrived. Every plate of the clips is on the watch-list.

Also counted: alerts per car pass (one expected: an early alert on a confident read, none again when
the sighting closes) and sightings per car. Run once per ALPR_MAX_BATCH_WAIT_MS (how long the ingest
node fills a detect job: the largest share of the latency at live pace).

    .venv/bin/python benchmarks/bench_alerts.py [--cameras 2] [--cars 8] [--batch-wait-ms 500 100]

Postgres: $ALPR_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), in a schema of
its own that is dropped at the end.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
import yaml

from alert_worker.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from alpr.democlip import make_clip
from common.config import Settings
from detector_worker.weights import install_models

PLATES = ("KPX4721", "7ABC284", "GHT2093", "LMN5821", "4RTY532", "BDF3301", "CXZ7710", "8HJK204", "MPL3320",
          "RVT5508", "2WQE731", "HZD6042")  # fmt: skip
SECRET = "bench-hook-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """An HTTP receiver noting (arrival time, alert) of every correctly signed POST."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, object]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                arrived = time.time()
                if verify_signature(body, self.headers.get(TIMESTAMP_HEADER, ""),
                                    self.headers.get(SIGNATURE_HEADER, ""), SECRET):  # fmt: skip
                    owner.arrivals.append((arrived, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


def run(args: argparse.Namespace, batch_wait_ms: int, settings: Settings, work: Path) -> dict[str, str]:
    redis_port = free_port()
    redis_server = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
                                     "--dir", str(work)], stdout=subprocess.DEVNULL)  # fmt: skip
    base_url = os.environ.get("ALPR_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    database_url = f"{base_url}?options=-csearch_path%3D{schema}"
    receiver = Receiver()
    (work / "hook.secret").write_text(SECRET)
    (work / "receivers.yaml").write_text(yaml.safe_dump({"receivers": {"ops": {
        "type": "webhook", "url": receiver.url, "secret_file": str(work / "hook.secret")}}}))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "ALPR_DATABASE_URL": database_url,
        "ALPR_MODEL_DIR": str(settings.model_dir), "ALPR_KEEP_DIR": str(work / "kept"), "ALPR_DETECTOR_THREADS": "1",
        "ALPR_ALERT_RECEIVERS": str(work / "receivers.yaml"), "ALPR_MAX_BATCH_WAIT_MS": str(batch_wait_ms),
        "ALPR_JOB_KEY": secrets.token_hex(32),  # jobs signed and checked, as every deployment should
    })  # fmt: skip
    alpr = [sys.executable, "-m", "alpr.cli"]
    subprocess.run([*alpr, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    plates = [PLATES[i % len(PLATES)] for i in range(args.cameras * args.cars)]
    for plate in sorted(set(plates)):
        subprocess.run([*alpr, "watchlist", "add", plate, "--reason", "bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    cameras = []
    for camera in range(args.cameras):
        clip = work / f"cam{camera}.mp4"
        make_clip(clip, tuple(plates[camera * args.cars : (camera + 1) * args.cars]), seed=camera)
        cameras.append({"id": f"cam{camera}", "source": str(clip), "sample_fps": 5, "realtime": True})
    (work / "cameras.yaml").write_text(yaml.safe_dump({"cameras": cameras}))
    workers = [subprocess.Popen([*alpr, "worker", stage], env=env, stdout=subprocess.DEVNULL)
               for stage in ("detect", "detect", "ocr", "redact", "sight", "alert")]  # fmt: skip
    try:
        time.sleep(25)  # models loaded
        subprocess.run([*alpr, "ingest", "--cameras", str(work / "cameras.yaml")], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        with psycopg.connect(database_url) as db:
            while time.monotonic() < deadline:
                sightings = db.execute("SELECT camera_id, plate FROM sightings").fetchall()
                if len(sightings) >= len(plates) and len(receiver.arrivals) >= len(plates):
                    break
                time.sleep(0.5)
            time.sleep(4)  # late duplicates, were there any
            sightings = db.execute("SELECT camera_id, plate FROM sightings").fetchall()
            read_latency = [float(r[0]) for r in db.execute(
                "SELECT extract(epoch FROM r.logged_at - r.captured_at) FROM plate_reads r").fetchall()]  # fmt: skip
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=30)
        redis_server.terminate()
        receiver.server.shutdown()
        with psycopg.connect(base_url, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")
    latencies = [arrived - float(str(alert["captured_at_s"])) for arrived, alert in receiver.arrivals]
    per_car = Counter((str(alert["camera_id"]), str(alert["watch_plate"])) for _, alert in receiver.arrivals)
    expected = Counter((f"cam{i // args.cars}", plate) for i, plate in enumerate(plates))
    sighted = Counter(sightings)
    kinds = dict(Counter(str(alert["kind"]) for _, alert in receiver.arrivals))
    return {
        "batch wait": f"{batch_wait_ms} ms",
        "alerts": f"{len(receiver.arrivals)} for {len(plates)} cars; kinds {kinds}",
        "alerts per car": compare(per_car, expected),
        "sightings per car": compare(sighted, expected),
        "capture -> alert at receiver": percentiles(latencies),
        "capture -> read logged (all reads)": percentiles(read_latency),
    }


def compare(got: Counter[tuple[str, str]], expected: Counter[tuple[str, str]]) -> str:
    return "exactly one each" if got == expected else f"MISMATCH extra {got - expected}, missing {expected - got}"


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {np.percentile(values, 50):.2f} s, p99 {np.percentile(values, 99):.2f} s, max {max(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--cars", type=int, default=6, help="cars per camera, one after another (4 s each)")
    parser.add_argument("--batch-wait-ms", type=int, nargs="*", default=[500, 250, 100])
    args = parser.parse_args()
    settings = Settings.load()
    install_models(settings.model_dir)
    for batch_wait_ms in args.batch_wait_ms:
        work = Path(tempfile.mkdtemp(prefix="alpr-alert-bench-"))
        try:
            report = run(args, batch_wait_ms, settings, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print()
        for key, value in report.items():
            print(f"{key:<36} {value}")


if __name__ == "__main__":
    main()
