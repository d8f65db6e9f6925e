"""Small helpers the tests share: dataset ground truth, demo clips (each drawn once a session) and their
frames, free ports, `alpr` processes, an MJPEG-over-HTTP camera (what many IP cameras serve) and Postgres
roles granted as the workers' or the prune's, or given exactly the rights a role's start check asks for."""

from __future__ import annotations

import atexit
import copy
import http.server
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from alpr.democlip import DEFAULT_PLATES, make_clip
from alpr.eval_scoring import iou
from alpr.ground_truth import Sample, load_samples


def scene_samples(datasets_dir: Path, region: str, count: int) -> list[Sample]:
    samples, _ = load_samples(datasets_dir / "openalpr-endtoend" / region)
    return samples[:count]


def demo_clip_plates_found(detector: Any, demo_clip: tuple[Path, dict[str, Any]]) -> tuple[int, int]:
    """Of every fifth frame of the demo clip, how many a detector finds the true plate in (IoU 0.5), of how many."""
    path, truth = demo_clip
    wanted = {b["frame_index"]: b for b in truth["boxes"] if b["frame_index"] % 5 == 0}
    frames = clip_frames(path, set(wanted))
    found = detector.detect([frames[i] for i in sorted(frames)])
    hits = sum(
        any(iou(box, tuple(wanted[i]["box_xyxy"])) >= 0.5 for box, _ in d.boxes())
        for i, d in zip(sorted(frames), found, strict=True)
    )
    return hits, len(frames)


DRAWN_CLIPS: dict[tuple[tuple[str | tuple[str, ...], ...], int], tuple[Path, dict[str, Any]]] = {}
"""make_clip's clips drawn this session: (plates, seed) -> the clip (in a folder removed at exit), its sidecar."""


def write_clip(path: Path, plates: tuple[str | tuple[str, ...], ...] = DEFAULT_PLATES, seed: int = 7) -> dict[str, Any]:
    """make_clip's clip of `plates` at `path`, with its sidecar; returns the sidecar's content. Drawn once a
    session for each (plates, seed), then copied: drawing takes 1-3 s a car (its every frame blurred, noised
    and encoded), and the tests ask for the same few clips some twenty times a run. The drawing is seeded:
    a copy holds the very bytes a new drawing writes."""
    key = (tuple(plates), seed)
    if key not in DRAWN_CLIPS:
        folder = Path(tempfile.mkdtemp(prefix="alpr-test-clip-"))
        atexit.register(shutil.rmtree, folder, True)
        DRAWN_CLIPS[key] = (folder / "clip.mp4", make_clip(folder / "clip.mp4", plates, seed))
    drawn, truth = DRAWN_CLIPS[key]
    shutil.copyfile(drawn, path)
    shutil.copyfile(drawn.with_suffix(".mp4.json"), path.with_suffix(path.suffix + ".json"))
    return copy.deepcopy(truth)


def clip_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index = {}, 0
    while len(frames) < len(indices):
        ok, frame = capture.read()
        if not ok:
            break
        if index in indices:
            frames[index] = frame
        index += 1
    capture.release()
    return frames


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


WITH_DEFAULTS = """
import json, sys
from common import defaults
for name, value in json.loads(sys.argv.pop(1)).items():
    assert hasattr(defaults, name), f"no default {name}"
    setattr(defaults, name, tuple(value) if isinstance(value, list) else value)
from alpr.cli import main
sys.exit(main(sys.argv[1:]))
"""
"""`alpr ARGS` run as `python -c WITH_DEFAULTS '{"NAME": value, ...}' ARGS`: common/defaults.py's NAMEs set to
the values first (what monkeypatch does in the tests' own process), before any other module is imported."""


def alpr_process(
    env: dict[str, str],
    args: list[str],
    log: Path,
    metrics_port: int | None = None,
    timers: Mapping[str, float | tuple[float, ...]] | None = None,
) -> subprocess.Popen:
    """`alpr ARGS` as a process of its own, its output in `log`; `timers` as for alpr_command."""
    env = dict(env)
    if metrics_port:
        env["ALPR_METRICS_PORT"] = str(metrics_port)
    handle = log.open("w")
    return subprocess.Popen(alpr_command(args, timers), env=env, stdout=handle, stderr=subprocess.STDOUT)


def alpr_command(args: list[str], timers: Mapping[str, float | tuple[float, ...]] | None = None) -> list[str]:
    """The command line of `alpr ARGS`; with `timers`, those defaults of common/defaults.py set first (a
    lease, a maintenance interval, a wait for Postgres: seconds a test would wait out)."""
    start = ["-c", WITH_DEFAULTS, json.dumps(dict(timers))] if timers else ["-m", "alpr.cli"]
    return [sys.executable, *start, *args]


def short_recovery(lease_s: int = 6, maintenance_s: int = 3, margin_s: int = 10) -> dict[str, float]:
    """Timers for `alpr_process` under which a killed worker's job runs again within seconds: its lease
    lapses `lease_s` after its last renewal (renewed every third of it) and idle workers clean RQ's registries
    every `maintenance_s` (defaults: 15 s each); RECOVERY_S, which ALPR_FRAME_TTL_S must cover past the job
    timeout, reckoned from them as common/defaults_jobs.py does, with `margin_s` for its margin (30 s)."""
    return {
        "JOB_LEASE_S": lease_s,
        "WORKER_MAINTENANCE_S": maintenance_s,
        "RECOVERY_S": lease_s + 2 * maintenance_s + margin_s,
    }


def wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` every half second; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def write_cameras(path: Path, cameras: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"cameras": cameras}))
    return path


@contextmanager
def mjpeg_camera(
    jpegs: list[bytes],
    fps: float,
    per_connection: int | None = None,
    connections: list[float] | None = None,
    then: Callable[[BinaryIO], None] | None = None,
) -> Iterator[str]:
    """Serve the JPEGs in a loop as a live multipart/x-mixed-replace stream at `fps`; yields its URL.
    With `per_connection`, each connection is closed after that many frames (a camera that ends its
    streams), `then` given the connection first to write what it will; `connections` gets the time of
    each one opened."""

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            index = 0
            if connections is not None:
                connections.append(time.monotonic())
            try:
                while per_connection is None or index < per_connection:
                    data = jpegs[index % len(jpegs)]
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                    self.wfile.write(head + data + b"\r\n")
                    index += 1
                    time.sleep(1 / fps)
                if then is not None:
                    then(self.wfile)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Camera) as base:
        yield f"{base}/video.mjpg"


@contextmanager
def served_video(path: Path) -> Iterator[tuple[str, list[str]]]:
    """The file at `path` served over HTTP with byte ranges (as a web server or an NVR's export does: an
    MP4 whose index is at its end is read so); yields its URL and the requests made for it (each its
    Range header, or "whole")."""
    data = path.read_bytes()
    requests: list[str] = []

    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked = self.headers.get("Range", "")
            requests.append(asked or "whole")
            start, _, end = asked.removeprefix("bytes=").partition("-")
            first = int(start) if start.isdigit() else 0
            last = min(int(end), len(data) - 1) if end.isdigit() else len(data) - 1
            self.send_response(206 if asked else 200)
            if asked:
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(last + 1 - first))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data[first : last + 1])

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Server) as base:
        yield f"{base}/{path.name}", requests


@contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free local port, one thread per request; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


__all__ = [
    "alpr_command",
    "alpr_process",
    "clip_frames",
    "free_port",
    "http_server",
    "iou",
    "mjpeg_camera",
    "scene_samples",
    "served_video",
    "wait_for",
    "write_cameras",
]


@contextmanager
def workers_role(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A new login role given the workers' rights (`alpr db upgrade --grant`): its name and a URL that logs
    in as it; dropped afterwards."""
    with granted_role(postgres_url, "--grant", "alpr_app") as role_and_url:
        yield role_and_url


@contextmanager
def pruner_role(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A new login role given the prune's rights (`alpr db upgrade --grant-pruner`): its name and a URL
    that logs in as it; dropped afterwards."""
    with granted_role(postgres_url, "--grant-pruner", "alpr_pruner") as role_and_url:
        yield role_and_url


@contextmanager
def reader_role(postgres_url: str, rights: str) -> Iterator[tuple[str, str]]:
    """A login role that may read every table and add to none (`select-only`), or the pruner's role: its
    name and a URL that logs in as it; dropped afterwards."""
    if rights == "pruner":
        with pruner_role(postgres_url) as role_and_url:
            yield role_and_url
        return
    import uuid

    import psycopg

    role = f"alpr_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        row = admin.execute("SELECT current_schema()").fetchone()
        assert row is not None
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA {row[0]} TO {role}")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {row[0]} TO {role}")
    try:
        yield role, as_role(postgres_url, role)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@contextmanager
def role_with_rights(postgres_url: str, needs: Mapping[str, tuple[str, ...]]) -> Iterator[tuple[str, str]]:
    """A new login role given exactly `needs` (table, sequence or function -> rights, as common/db_rights.py's
    constants; USAGE is a sequence's, EXECUTE a function's) and what every process reads at start (the schema,
    the migrations' record), nothing more: its name and a URL that logs in as it; dropped afterwards."""
    import uuid

    import psycopg
    from psycopg import sql

    role = f"alpr_exact_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        row = admin.execute("SELECT current_schema()").fetchone()
        assert row is not None
        name = sql.Identifier(role)
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(row[0]), name))
        admin.execute(sql.SQL("GRANT SELECT ON schema_migrations TO {}").format(name))
        for table, rights in needs.items():
            for right in rights:
                kind = sql.SQL({"USAGE": "SEQUENCE", "EXECUTE": "FUNCTION"}.get(right, "TABLE"))
                called = sql.SQL("()" if right == "EXECUTE" else "")
                admin.execute(sql.SQL("GRANT {} ON {} {}{} TO {}").format(
                    sql.SQL(right), kind, sql.Identifier(table), called, name))  # fmt: skip
    try:
        yield role, as_role(postgres_url, role)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(name))
            admin.execute(sql.SQL("DROP ROLE {}").format(name))


def without(needs: Mapping[str, tuple[str, ...]], table: str, right: str) -> dict[str, tuple[str, ...]]:
    """`needs` less one right."""
    assert right in needs[table]
    return {name: tuple(r for r in rights if (name, r) != (table, right)) for name, rights in needs.items()}


def refused_at_start(
    postgres_url: str,
    capsys: Any,
    who: str,
    needs: Mapping[str, tuple[str, ...]],
    missing: tuple[str, str],
    argv: list[str],
) -> str:
    """Run `alpr ARGV --database-url URL` as a role given `needs` less the `missing` (table, right): it must
    exit 2 with one line naming `who`, the role, the right and the mend; that line."""
    from alpr.cli import main

    table, right = missing
    with role_with_rights(postgres_url, without(needs, table, right)) as (role, url):
        assert main([*argv, "--database-url", url]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"alpr: error: the {who}: Postgres role {role} may not {right} {table}: log in as the workers'"
    ), line
    assert f"`alpr db upgrade --grant {role}`" in line
    return line


@contextmanager
def granted_role(postgres_url: str, grant_flag: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A new login role named `prefix` and a random tail, given rights by `alpr db upgrade grant_flag`:
    its name and a URL that logs in as it; dropped afterwards."""
    import uuid

    import psycopg

    from alpr.cli import main

    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        assert main(["db", "upgrade", "--database-url", postgres_url, grant_flag, role]) == 0
        yield role, as_role(postgres_url, role)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def as_role(postgres_url: str, role: str) -> str:
    """`postgres_url` (the tests' superuser, postgres) logging in as `role` instead."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(postgres_url)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace("postgres@", f"{role}@")))


def user_alone_in_own_group() -> tuple[int, int]:
    """The uid and gid of a user of this host (root aside) whose primary group holds her alone: listed in no
    group's members, no other user's primary group (useradd's private group, Debian's `daemon`). Skips the test
    where there is none: a test makes no users (it would change the host's user database)."""
    import grp
    import pwd

    import pytest

    users = pwd.getpwall()
    for user in users:
        try:
            group = grp.getgrgid(user.pw_gid)
        except KeyError:
            continue
        sharing = [other for other in users if other.pw_gid == user.pw_gid and other.pw_uid != user.pw_uid]
        if user.pw_uid != 0 and not group.gr_mem and not sharing:
            return user.pw_uid, user.pw_gid
    pytest.skip("no user of this host is alone in her own group")


@contextmanager
def lock_held(
    url: str,
    statements: list[tuple[str, tuple[object, ...]]],
    seconds: float,
    application: str = "mallory-psql",
    let_go: threading.Event | None = None,
) -> Iterator[int]:
    """Another session, `application`, that runs `statements` (taking a lock) in its transaction and holds it for
    `seconds` at most (less where `let_go` is set first, or the test ends first); yields its pid."""
    import psycopg

    held, done, pids = threading.Event(), let_go or threading.Event(), []

    def hold() -> None:
        with psycopg.connect(url, application_name=application) as other, other.transaction():
            for sql, params in statements:
                other.execute(sql, params)  # type: ignore[arg-type]
            pids.append(other.info.backend_pid)
            held.set()
            done.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        yield pids[0]
    finally:
        done.set()
        holder.join()


class LetGoOnceTold(logging.Handler):
    """Lets a lock's holder go (`let_go`) a second after a WARNING containing `phrase` has said who holds it:
    within the wait's next slice (a wait polled at each slice's end, not queued on the lock, would go on only
    at that end), noting when. A holder let go a fixed time after it took the lock raced the command's own
    start (an argument parse, a connection: up to 1.4 s on a loaded machine): no WARNING yet (flaky)."""

    def __init__(self, let_go: threading.Event, phrase: str) -> None:
        super().__init__(logging.WARNING)
        self.let_go, self.phrase, self.let_go_at = let_go, phrase, 0.0
        self.timer = threading.Timer(1.0, self.letting_go)

    def emit(self, record: logging.LogRecord) -> None:
        if self.phrase in record.getMessage() and not self.timer.is_alive() and not self.let_go_at:
            self.timer.start()

    def letting_go(self) -> None:
        self.let_go_at = time.monotonic()
        self.let_go.set()
