"""The distributed chain on this machine: 1, 4 and 16 synthetic cameras fed as fast as the chain takes
them, then 2 cameras at live pace (5 frames/s each), after one unreported warm-up run. An ingest node,
two detector workers, one OCR and one redactor worker run as separate processes on a private Redis and
Postgres. Prints frames/s end to end, p50/p99 latency from capture to logged read (for live cameras:
recorded footage is dated by its time in the footage, not when it is read), the CPU the queue and frame
store add per frame (the chain's CPU minus the cores' CPU on the same frames, with one inference thread
per process), and the ratio to the original design's naive loop (one process: read frame -> YOLO (torch)
-> pytesseract -> blur -> CSV), all measured in this one run. Last, a 2x overload: live cameras offering
about twice what the chain detects, for two minutes, at the default maximum frame age: p50/p99 capture
-> logged of the frames that are processed, and the share skipped (back-pressure at ingest, too old at
detection).

    .venv/bin/python benchmarks/bench_chain.py [--cameras 1 4 16] [--overload-cameras 5] [--overload-s 120]

Postgres: $ALPR_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), in a schema
of its own that is dropped at the end.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psycopg
import redis
import yaml

from alpr.democlip import make_clip
from alpr.wiring import build_detector, build_reader
from common import defaults, geometry
from common.config import Settings
from detector_worker.weights import install_models
from ingest.sources import open_source
from redactor_worker.core import redact

PLATES = ("KPX4721", "7ABC284", "GHT2093", "LMN5821", "4RTY532", "BDF3301", "CXZ7710", "8HJK204")
SAMPLE_FPS = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_until(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def cores_cpu_per_frame(settings: Settings, clip: Path) -> tuple[float, float]:
    """CPU seconds per frame of decode + detect + read + redact + writing the kept frame, in one process:
    the cores alone, without queue or frame store; and of the video decoding alone."""
    detector, reader = build_detector(settings), build_reader(settings, "us")
    frames = [f.image for f in open_source(str(clip), SAMPLE_FPS).frames()]
    detector.detect(frames[:2])
    spent = dict.fromkeys(("decode", "detect", "read", "redact+write"), 0.0)
    mark = time.process_time()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.process_time()
        spent[stage] += now - mark
        mark = now

    for frame in open_source(str(clip), SAMPLE_FPS).frames():
        lap("decode")
        found = detector.detect([frame.image])[0]
        lap("detect")
        boxes = list(found.boxes())
        reader.read_plates([geometry.crop(frame.image, box, settings.ocr_crop_margin) for box, _ in boxes], boxes)
        lap("read")
        cv2.imencode(".jpg", redact(frame.image, [box for box, _ in found.boxes()]))  # the kept frame
        lap("redact+write")
    print("cores alone, CPU ms per frame: " + ", ".join(f"{k} {1000 * v / len(frames):.1f}" for k, v in spent.items()))
    return sum(spent.values()) / len(frames), spent["decode"] / len(frames)


def naive_loop_fps(settings: Settings, clip: Path, out_csv: Path) -> float:
    """The original design: one process reads a frame, runs YOLO (torch), pytesseract, blurs, writes CSV."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import pytesseract
    from ultralytics import YOLO

    model = YOLO(str(settings.model_dir / "plate_yolov8n.pt"))
    capture = cv2.VideoCapture(str(clip))
    step = max(1, round(capture.get(cv2.CAP_PROP_FPS) / SAMPLE_FPS))
    frames, index = 0, 0
    start = time.perf_counter()
    with out_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            index += 1
            if (index - 1) % step:
                continue
            result = model.predict(
                frame, imgsz=settings.detector_imgsz, conf=settings.detector_confidence, verbose=False
            )[0]
            for x1, y1, x2, y2 in result.boxes.xyxy.cpu().numpy().astype(int):
                gray = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
                gray = cv2.bilateralFilter(gray, 11, 17, 17)
                _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                text = pytesseract.image_to_string(binary, config="--psm 7").strip()
                frame[y1:y2, x1:x2] = cv2.GaussianBlur(frame[y1:y2, x1:x2], (51, 51), 0)
                writer.writerow([index, text])
            frames += 1
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--overload-cameras", type=int, default=5, help="live 5 fps cameras (0: no overload run)")
    parser.add_argument("--overload-s", type=float, default=120.0)
    args = parser.parse_args()
    # One inference thread per process: CPU time is then a stable measure (no spinning or oversubscribed
    # threads), and the 2 cores are used by running two detector workers.
    settings = Settings.load(detector_threads=1)
    install_models(settings.model_dir)
    work = Path(tempfile.mkdtemp(prefix="alpr-chain-bench-"))
    clips = []
    for i in range(max([*args.cameras, args.overload_cameras, 2])):
        clips.append(work / f"cam{i}.mp4")
        make_clip(clips[-1], (PLATES[i % len(PLATES)], PLATES[(i + 3) % len(PLATES)]), seed=i)  # 40 frames
    frames_per_clip = sum(1 for _ in open_source(str(clips[0]), SAMPLE_FPS).frames())

    redis_port = free_port()
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )
    base_url = os.environ.get("ALPR_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    database_url = f"{base_url}?options=-csearch_path%3D{schema}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env.update({
        "ALPR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "ALPR_DATABASE_URL": database_url,
        "ALPR_MODEL_DIR": str(settings.model_dir), "ALPR_KEEP_DIR": str(work / "kept"),
        "ALPR_MAX_QUEUE_DEPTH": "100000", "ALPR_FRAME_TTL_S": "3600", "ALPR_DETECTOR_THREADS": "1",
        "ALPR_MAX_FRAME_AGE_S": "3000",  # throughput rows: every frame processed, however long it queued
        "ALPR_JOB_KEY": secrets.token_hex(32),  # jobs signed and checked, as every deployment should
    })  # fmt: skip
    alpr = [sys.executable, "-m", "alpr.cli"]
    subprocess.run([*alpr, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    workers, ports = {}, []
    for name in ("detect", "detect2", "ocr", "redact"):
        port = free_port()
        stage = name.rstrip("2")
        workers[name] = subprocess.Popen([*alpr, "worker", stage], env={**env, "ALPR_METRICS_PORT": str(port)})
        ports.append(port)
        wait_until(lambda p=port: _listening(p), 120, f"the {name} worker")
    time.sleep(2)  # models loaded: from here on, CPU is the work's

    startup = startup_cpu_seconds(alpr[0], env)
    cores_cpu, decode_cpu = cores_cpu_per_frame(settings, clips[0])
    chain = Chain(clips, frames_per_clip, env, alpr, workers, ports, database_url, work, startup, decode_cpu)
    naive_fps = naive_loop_fps(settings, clips[0], work / "naive.csv")
    rows = []
    overload = None
    try:  # a first, unreported run: the workers' first inferences (allocations, lazy loads) are not per-frame
        chain.run(1, live=False)
        rows = [chain.run(cameras, live=False) for cameras in args.cameras]
        rows.append(chain.run(2, live=True))
        if args.overload_cameras:
            overload = chain.overload(args.overload_cameras, args.overload_s)
    finally:
        for process in workers.values():
            process.terminate()
        for process in workers.values():
            process.wait(timeout=30)
        redis_server.terminate()
        with psycopg.connect(base_url, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ningest process start-up (imports), left out of its CPU: {1000 * startup:.0f} ms")
    print(f"cores alone (decode + detect + read + redact, one process): {1000 * cores_cpu:.1f} ms CPU per frame")
    print(f"naive loop (torch YOLO + pytesseract + blur + CSV, one process): {naive_fps:.2f} frames/s\n")
    print("added: the chain's CPU per frame minus the cores' — measured alone beforehand (A), and measured")
    print("inside the chain's own processes during the same run (B: alpr_core_cpu_seconds + video decoding)\n")
    print("p50/p99: capture -> read logged (read), capture -> frame blurred, kept and recorded (done)\n")
    print(f"{'cameras':>7} {'frames':>6} {'frames/s':>8} {'read p50':>8} {'p99':>6} {'done p50':>8} {'p99':>6} "
          f"{'CPU ms/frame':>12} {'added A':>8} {'added B':>8} {'vs naive':>8}")  # fmt: skip
    for cameras, frames, fps, p50, p99, cpu, core_in_run, done50, done99 in rows:
        added_a, added_b = (cpu - cores_cpu) / cores_cpu, (cpu - core_in_run) / core_in_run
        times = f"{p50:>8.2f} {p99:>6.2f} {done50:>8.2f} {done99:>6.2f}".replace("nan", "  -")  # recorded: none
        print(f"{cameras:>7} {frames:>6} {fps:>8.2f} {times} "
              f"{1000 * cpu:>12.1f} {100 * added_a:>7.1f}% {100 * added_b:>7.1f}% "
              f"{fps / naive_fps:>7.2f}x")  # fmt: skip
    if overload:
        print(f"\n2x overload ({args.overload_cameras} live cameras x {SAMPLE_FPS:g} fps for {args.overload_s:.0f} s, "
              f"max frame age {defaults.MAX_FRAME_AGE_S:g} s):")  # fmt: skip
        for key, value in overload.items():
            print(f"  {key}: {value}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def startup_cpu_seconds(python: str, env: dict[str, str]) -> float:
    """CPU an ingest process spends importing its modules: a one-off, not a per-frame cost."""
    code = "import alpr.cli, alpr.ingest_command, ingest.node, ingest.cameras, ingest.sources, common.queues"
    process = subprocess.Popen([python, "-c", code], env=env)
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return usage.ru_utime + usage.ru_stime


def core_cpu_seconds(ports: list[int]) -> float:
    """alpr_core_cpu_seconds summed over the workers' metrics endpoints."""
    total = 0.0
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("alpr_core_cpu_seconds_total{"))  # fmt: skip
    return total


@dataclass
class Chain:
    """The running workers and what a run of the chain needs."""

    clips: list[Path]
    frames_per_clip: int
    env: dict[str, str]
    alpr: list[str]
    workers: dict[str, subprocess.Popen]
    ports: list[int]
    database_url: str
    work: Path
    startup: float
    decode_cpu: float

    def run(self, cameras: int, live: bool) -> tuple[str, int, float, float, float, float, float, float, float]:
        """(label, frames, frames/s, p50, p99 capture -> read logged, CPU s per frame, cores' CPU s per frame
        in this run, p50, p99 capture -> frame done: blurred, kept and recorded)."""
        redis.Redis.from_url(self.env["ALPR_REDIS_URL"]).flushdb()
        with psycopg.connect(self.database_url, autocommit=True) as db:
            db.execute("TRUNCATE frames, plate_reads")
        config = self.work / f"cameras{cameras}.yaml"
        entries = [{"id": f"cam{i}", "source": str(self.clips[i]), "sample_fps": SAMPLE_FPS, "realtime": live}
                   for i in range(cameras)]  # fmt: skip
        config.write_text(yaml.safe_dump({"cameras": entries}))
        expected = cameras * self.frames_per_clip
        before = {s: cpu_seconds(p.pid) for s, p in self.workers.items()}
        core_before = core_cpu_seconds(self.ports)
        start = time.perf_counter()
        ingest = subprocess.Popen(
            [*self.alpr, "ingest", "--cameras", str(config)], env=self.env, stdout=subprocess.DEVNULL
        )
        _, _, usage = os.wait4(ingest.pid, 0)
        ingest.returncode = 0
        with psycopg.connect(self.database_url) as db:
            # every frame with a final outcome and, where it has plates, read too
            done_sql = "SELECT count(*) FROM frames WHERE outcome <> 'pending' AND (plates = 0 OR stage_ms ? 'ocr')"
            wait_until(lambda: db.execute(done_sql).fetchone()[0] >= expected, 1800, "the chain")
            elapsed = time.perf_counter() - start
            latencies = [float(r[0]) for r in db.execute(
                "SELECT extract(epoch FROM r.logged_at - r.captured_at) FROM plate_reads r"
            ).fetchall()]  # fmt: skip
            done_latencies = [float(r[0]) for r in db.execute(
                "SELECT extract(epoch FROM done_at - captured_at) FROM frames WHERE outcome = 'done'"
            ).fetchall()]  # fmt: skip
        per_role = {s: cpu_seconds(p.pid) - before[s] for s, p in self.workers.items()}
        per_role["ingest"] = usage.ru_utime + usage.ru_stime - self.startup
        core = core_cpu_seconds(self.ports) - core_before + self.decode_cpu * expected
        print(
            f"{cameras} cameras, CPU ms per frame by role: "
            + ", ".join(f"{role} {1000 * seconds / expected:.1f}" for role, seconds in per_role.items())
            + f"; cores within: {1000 * core / expected:.1f}"
        )
        cpu = sum(per_role.values())
        if not live:  # dated by the footage (from the pass's start), not when read: no latency to measure
            latencies, done_latencies = [], []
        p50, p99 = (float(np.percentile(latencies, q)) if latencies else float("nan") for q in (50, 99))
        done50, done99 = (float(np.percentile(done_latencies, q)) if done_latencies else float("nan") for q in (50, 99))
        return (
            f"{cameras}{' live' if live else ''}",
            expected,
            expected / elapsed,
            p50,
            p99,
            cpu / expected,
            core / expected,
            done50,
            done99,
        )

    def overload(self, cameras: int, seconds: float) -> dict[str, str]:
        """Live cameras offering more than the chain detects, at the default maximum frame age: how fresh
        the processed frames stay, and how many are skipped (every sampled frame accounted for)."""
        redis.Redis.from_url(self.env["ALPR_REDIS_URL"]).flushdb()
        with psycopg.connect(self.database_url, autocommit=True) as db:
            db.execute("TRUNCATE frames, plate_reads")
        config = self.work / "overload.yaml"
        entries = [{"id": f"cam{i}", "source": str(self.clips[i]), "sample_fps": SAMPLE_FPS, "loop": True}
                   for i in range(cameras)]  # fmt: skip
        config.write_text(yaml.safe_dump({"cameras": entries}))
        # the chain's defaults: queue cap, and the maximum frame age (detector workers restarted with it)
        env = {**self.env, "ALPR_MAX_QUEUE_DEPTH": str(defaults.MAX_QUEUE_DEPTH),
               "ALPR_MAX_FRAME_AGE_S": str(defaults.MAX_FRAME_AGE_S)}  # fmt: skip
        for name in ("detect", "detect2"):
            self.workers[name].terminate()
            self.workers[name].wait(timeout=30)
            port = free_port()
            self.workers[name] = subprocess.Popen([*self.alpr, "worker", "detect"],
                                                  env={**env, "ALPR_METRICS_PORT": str(port)})  # fmt: skip
            wait_until(lambda p=port: _listening(p), 120, f"the {name} worker")
        time.sleep(2)
        start = time.perf_counter()
        subprocess.run([*self.alpr, "ingest", "--cameras", str(config), "--max-seconds", str(seconds)], env=env,
                       stdout=subprocess.DEVNULL, check=True)  # fmt: skip
        with psycopg.connect(self.database_url) as db:
            pending = "SELECT count(*) FROM frames WHERE outcome = 'pending'"
            wait_until(lambda: db.execute(pending).fetchone()[0] == 0, 1800, "the chain to drain")
            elapsed = time.perf_counter() - start
            outcomes = dict(db.execute("SELECT outcome || ' ' || coalesce(detail, ''), count(*) FROM frames"
                                       " GROUP BY 1").fetchall())  # fmt: skip
            latencies = [float(r[0]) for r in db.execute(
                "SELECT extract(epoch FROM max(r.logged_at) - min(r.captured_at)) FROM plate_reads r GROUP BY frame_id"
            ).fetchall()]  # fmt: skip
        sampled = sum(outcomes.values())
        skipped = sum(n for k, n in outcomes.items() if k.startswith("skipped"))
        p50, p99 = (float(np.percentile(latencies, q)) if latencies else float("nan") for q in (50, 99))
        return {
            "frames sampled": f"{sampled} ({sampled / seconds:.1f}/s offered)",
            "outcomes": ", ".join(f"{k.strip()}: {n}" for k, n in sorted(outcomes.items())),
            "skipped": f"{100 * skipped / sampled:.1f}%",
            "processed frames/s": f"{outcomes.get('done ', 0) / elapsed:.1f}",
            "capture -> logged, frames with reads": f"p50 {p50:.1f} s, p99 {p99:.1f} s",
        }


if __name__ == "__main__":
    main()
