"""alpr/wiring.py, alpr/connections.py and the start checks and warnings, on real Redis servers: a
frame store that writes to disk is warned about at start (raw frames would reach it), a redactor that
cannot write its keep folder and a detector asked for a CUDA device its backend lacks are refused at
start, each in one line."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from alpr.cli import main
from alpr.connections import reach_frame_store
from alpr.start_checks import cuda_devices
from alpr.start_warnings import warn_if_redis_open
from alpr.wiring import build_detector
from common.config import Settings
from common.errors import ConfigError
from tests.helpers import alpr_process, free_port, wait_for
from tests.servers import PrivateRedis


def frame_store_warnings(caplog: pytest.LogCaptureFixture, environ: dict[str, str]) -> list[str]:
    """The WARNING lines of reaching the frame store of these settings."""
    settings = Settings.load(environ)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reach_frame_store(settings, redis.Redis.from_url(settings.redis_url))
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_frame_store_that_persists_is_warned_about(redis_url, caplog):
    shared = {"ALPR_REDIS_URL": redis_url}
    assert frame_store_warnings(caplog, shared) == []  # the test servers write nothing to disk
    server = redis.Redis.from_url(redis_url)
    server.config_set("save", "3600 1")  # a stock Redis's snapshots
    [warning] = frame_store_warnings(caplog, shared)
    assert "RDB snapshots (save 3600 1)" in warning and "unblurred, will be written to disk" in warning
    assert (
        "the queues' Redis too (ALPR_FRAME_STORE_URL unset or the same)" in warning
        and "point ALPR_FRAME_STORE_URL" in warning
    )
    server.config_set("save", "")
    server.config_set("appendonly", "yes")
    [warning] = frame_store_warnings(caplog, {"ALPR_FRAME_STORE_URL": redis_url})  # a store of its own
    assert "an append-only file (appendonly yes)" in warning and "is unset" not in warning


def test_a_frame_store_with_a_replica_or_a_sync_through_a_file_is_warned_about(redis_server, tmp_path, caplog):
    """Its replica (by default) loads the sync through an RDB file and keeps it: raw frames on the
    replica's disk, with `save ""` and `appendonly no` on both (an audit); a sync through a file writes
    them on the store's own disk."""
    store = {"ALPR_FRAME_STORE_URL": redis_server.url}
    server = redis.Redis.from_url(redis_server.url)
    server.config_set("repl-diskless-sync", "no")  # Redis 6's default: nothing written while no replica syncs
    assert frame_store_warnings(caplog, store) == []  # every role warned on every plain Redis 6 (a review)
    replica_server = PrivateRedis(tmp_path / "replica")
    (tmp_path / "replica").mkdir()
    replica_server.start()
    try:
        replica = redis.Redis(port=replica_server.port)
        replica.replicaof("127.0.0.1", redis_server.port)
        wait_for(lambda: int(server.info("replication")["connected_slaves"]) == 1, 20, "the replica to connect")
        [warning] = frame_store_warnings(caplog, store)
        assert "1 replica(s), which write what they are sent to disk unless" in warning
        assert "and an RDB file here for each one's sync (repl-diskless-sync no)" in warning
    finally:
        replica_server.stop()


def test_a_frame_store_that_refuses_config_is_warned_about_not_fatal(redis_url, caplog):
    admin = redis.Redis.from_url(redis_url)  # an ACL user without CONFIG, as a renamed CONFIG answers
    admin.acl_setuser("ingest", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all", "-config"])
    url = redis_url.replace("redis://", "redis://ingest:s3cret@", 1)
    [warning] = frame_store_warnings(caplog, {"ALPR_FRAME_STORE_URL": url})
    assert (
        "cannot check whether the frame store's Redis" in warning
        and "no permissions to run the 'config|get'" in warning
    )
    assert "s3cret" not in warning and "ingest:***@" in warning


def test_a_redactor_that_cannot_write_its_keep_folder_stops_at_start(redis_url, postgres_url, tmp_path, monkeypatch,
                                                                    capsys):  # fmt: skip
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    (tmp_path / "a-file").write_text("")  # a folder inside a file cannot be made, even by root
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "a-file" / "kept"))
    worker = ["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]
    assert main(worker) == 2
    assert "ALPR_KEEP_DIR: the redactor cannot write kept frames to" in capsys.readouterr().err
    monkeypatch.setenv("ALPR_KEEP_FRAMES", "none")  # nothing kept: nothing to write
    assert main(worker) == 0
    monkeypatch.setenv("ALPR_KEEP_FRAMES", "plates")
    monkeypatch.setenv("ALPR_KEEP_DIR", str(tmp_path / "new" / "kept"))
    assert main(worker) == 0 and (tmp_path / "new" / "kept").is_dir()
    assert list((tmp_path / "new" / "kept").iterdir()) == []  # the check leaves no file behind


@pytest.mark.parametrize("loose", ["keep folder", "camera folder", "day folder"])
def test_a_keep_folder_others_may_write_in_stops_the_redactor_at_start(loose, redis_url, postgres_url, tmp_path,
                                                                      monkeypatch, capsys):  # fmt: skip
    """A keep folder of mode 0777 was taken as it was: another local user made a camera folder in it and
    swapped its day folder for a link in a loop, and kept frames landed in her folder (an audit)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    keep_dir = tmp_path / "kept"
    day = keep_dir / "gate" / "2026-12-04"
    day.mkdir(parents=True)
    folder = {"keep folder": keep_dir, "camera folder": day.parent, "day folder": day}[loose]
    monkeypatch.setenv("ALPR_KEEP_DIR", str(keep_dir))
    worker = ["worker", "redact", "--burst", "--redis-url", redis_url, "--database-url", postgres_url]
    assert main(worker) == 0  # a positive control: the folders are the redactor's own
    for mode in (0o777, 0o770, 0o1777):
        folder.chmod(mode)
        assert main(worker) == 2
        assert f"ALPR_KEEP_DIR: {folder} is another user's or others may write in it" in capsys.readouterr().err
    folder.chmod(0o755)
    assert main(worker) == 0
    if os.geteuid() == 0:  # root may give it away: another user's folder (nobody's)
        os.chown(folder, 65534, -1)
        assert main(worker) == 2
        assert f"ALPR_KEEP_DIR: {folder} is another user's" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_cuda_device_the_backend_lacks_is_refused_at_start(settings: Settings, backend: str):
    asked = settings.model_copy(update={"detector_backend": backend, "detector_device": "cuda:0"})
    if cuda_devices(backend) == 0:  # this machine: no CUDA for the backend (it used to fall back quietly)
        with pytest.raises(ConfigError, match=f"ALPR_DETECTOR_DEVICE: cuda:0 asked for, but no CUDA device is"
                                              f" available to it .ALPR_DETECTOR_BACKEND={backend}."):  # fmt: skip
            build_detector(asked)
    else:  # a GPU machine: the device is used (ONNX Runtime's session checked for its CUDA provider)
        assert build_detector(asked).backend is not None
    beyond = settings.model_copy(update={"detector_backend": backend, "detector_device": "cuda:63"})
    if cuda_devices(backend) is not None:  # torch, or ONNX Runtime without CUDA, count devices
        with pytest.raises(ConfigError, match="ALPR_DETECTOR_DEVICE: cuda:63 asked for"):
            build_detector(beyond)


def test_a_metrics_address_that_cannot_be_served_names_the_setting(redis_url, monkeypatch, capsys):
    monkeypatch.setenv("ALPR_METRICS_ADDRESS", "no-such-host.invalid")
    assert main(["worker", "detect", "--burst", "--redis-url", redis_url, "--metrics-port", "9"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("alpr: error: ALPR_METRICS_ADDRESS / ALPR_METRICS_PORT: cannot serve metrics on")
    assert "no-such-host.invalid port 9" in error


@pytest.mark.parametrize("stage", ["sight", "ocr"])
def test_a_worker_failing_at_start_answers_no_scrape(stage, redis_url, postgres_url, tmp_path):
    """Metrics are served once the worker is ready: one whose database does not exist answered scrapes
    from its second second to its exit at the tenth, so under Compose's restarts (every 12 s) it looked up
    most of the time and no alert on a process down fired (an ops review)."""
    port = free_port()
    missing = urlunsplit(urlsplit(postgres_url)._replace(path="/alpr_no_such_db", query=""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env |= {"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": missing}
    process = alpr_process(env, ["worker", stage], tmp_path / "worker.log", metrics_port=port)
    answered = 0
    while process.poll() is None:
        with socket.socket() as probe:
            answered += probe.connect_ex(("127.0.0.1", port)) == 0
        time.sleep(0.2)
    log = (tmp_path / "worker.log").read_text()
    assert process.returncode == 2 and 'database "alpr_no_such_db" does not exist' in log, log
    assert answered == 0


def test_a_detector_worker_says_the_inference_threads_it_got(redis_url, caplog):
    """The README said workers log the inference threads they really got; only the gauge said it (a
    review walking the README)."""
    from alpr.wiring import build_worker_context
    from common.metrics import Metrics

    settings = Settings.load({"ALPR_REDIS_URL": redis_url, "ALPR_DETECTOR_THREADS": "1"})
    with caplog.at_level(logging.INFO, logger="alpr.wiring"):
        context = build_worker_context("detect", settings, redis.Redis.from_url(redis_url), Metrics())
    assert context.stage.name == "detect"
    assert "detector: 1 inference threads (ALPR_DETECTOR_THREADS 1)" in [r.getMessage() for r in caplog.records]


def test_the_sighting_pool_matches_single_reads_no_less_sure_than_its_trusted_reads(redis_url, postgres_url):
    """ALPR_OCR_MIN_CONFIDENCE raised to 0.99 left early alerts at 0.9: a single 0.92 misread raised an
    alert that the voted sighting would not have (a review)."""
    from alpr.wiring import build_sighting_stage
    from common.metrics import Metrics

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    settings = Settings.load({"ALPR_OCR_MIN_CONFIDENCE": "0.99"}, redis_url=redis_url, database_url=postgres_url)
    stage = build_sighting_stage(settings, redis.Redis.from_url(redis_url), Metrics())
    try:
        assert (stage.settings.read_min_confidence, stage.settings.sighting_min_confidence) == (0.99, 0.99)
    finally:
        stage.pool.close()


@pytest.mark.parametrize(("stage", "named", "missing"), [
    ("ocr", "the OCR worker",
     "INSERT plate_reads, USAGE plate_reads_id_seq, INSERT sighting_cursors, INSERT frames, UPDATE frames"),
    ("redact", "the redactor", "INSERT frames, UPDATE frames"),
])  # fmt: skip
def test_an_ocr_or_redact_worker_whose_role_cannot_write_stops_at_start(stage, named, missing, redis_url,
                                                                      postgres_url, monkeypatch, capsys):  # fmt: skip
    """Started as the pruner's role it ran, then failed every job, three attempts each, each a traceback
    (an operator review); it now says at start which role lacks which rights, and how to mend it."""
    from tests.helpers import pruner_role, workers_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    monkeypatch.setenv("ALPR_KEEP_FRAMES", "none")
    with pruner_role(postgres_url) as (role, url):
        assert main(["worker", stage, "--burst", "--redis-url", redis_url, "--database-url", url]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"alpr: error: {named}: Postgres role {role} may not {missing}: log in as the workers'")
    assert f"`alpr db upgrade --grant {role}`" in line
    if stage == "redact":  # the positive control: the workers' role starts (the OCR worker's model is slow)
        with workers_role(postgres_url) as (_, url):
            assert main(["worker", stage, "--burst", "--redis-url", redis_url, "--database-url", url]) == 0


def test_a_right_the_role_lacks_is_one_line_naming_the_role_and_the_mend(redis_url, postgres_url, capsys):
    """`alpr watchlist` (as the ingest node and the sighting worker) printed psycopg's `InsufficientPrivilege:
    permission denied for table watchlist`, neither role nor fix; a replay's dry run said Postgres "refused
    the write" of what is a read (an operator review)."""
    from tests.helpers import pruner_role

    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    with pruner_role(postgres_url) as (role, url):
        assert main(["watchlist", "list", "--database-url", url]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line == (
            f"alpr: error: Postgres role {role} lacks a right this needs (permission denied for table watchlist):"
            f" log in as the workers' role (the one `alpr db upgrade --grant ROLE` named) or the schema's owner;"
            f" for {role} to be the workers' role, grant it with `alpr db upgrade --grant {role}` as the owner"
        )
        replay = ["replay", "--stage", "alert", "--dry-run", "--redis-url", redis_url, "--database-url", url]
        assert main(replay) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"alpr: error: Postgres role {role} lacks a right this needs (Postgres refused the"
                               " read: InsufficientPrivilege (SQLSTATE 42501): permission denied for table"
                               " alert_deliveries)"), line  # fmt: skip


def test_a_smaller_letterbox_is_warned_about_while_frames_are_kept(settings: Settings, caplog):
    """Plates a smaller letterbox misses go unblurred in the kept frames (2 of the demo clip's 24 at 320, a
    review): said at start, unless no frame is kept."""

    def warnings(**update: object) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            build_detector(settings.model_copy(update=update))
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    assert warnings() == []
    [warning] = warnings(detector_imgsz=320)
    assert "ALPR_DETECTOR_IMGSZ 320 is under the default 960" in warning and "not blurred" in warning
    assert warnings(detector_imgsz=320, keep_frames="none") == []


def test_a_queues_redis_that_evicts_keys_stops_every_role_and_a_frame_store_that_does_is_warned_of(
    redis_server, tmp_path, postgres_url, caplog, capsys
):  # fmt: skip
    """allkeys-lru on a full Redis dropped RQ's job hashes: 104 of 120 frames stayed `pending`, no line
    logged, until the sweep called them lost 12 minutes later (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    server = redis.Redis.from_url(redis_server.url)
    server.config_set("maxmemory", "64mb")  # noeviction with a bound: what Compose runs, accepted
    assert main(["worker", "ocr", "--burst", "--redis-url", redis_server.url, "--database-url", postgres_url]) == 0
    server.config_set("maxmemory-policy", "allkeys-lru")
    capsys.readouterr()
    for role in (["worker", "sight", "--burst"], ["worker", "detect", "--burst"], ["status"]):
        assert main([*role, "--redis-url", redis_server.url, "--database-url", postgres_url]) == 2
        error = capsys.readouterr().err
        assert "drops keys when full (maxmemory-policy allkeys-lru)" in error, role
        assert "set maxmemory-policy noeviction" in error
    store = PrivateRedis(tmp_path / "store")
    (tmp_path / "store").mkdir()
    store.start()
    try:
        redis.Redis(port=store.port).config_set("maxmemory", "64mb")
        redis.Redis(port=store.port).config_set("maxmemory-policy", "volatile-ttl")
        server.config_set("maxmemory-policy", "noeviction")
        [warning] = frame_store_warnings(
            caplog, {"ALPR_REDIS_URL": redis_server.url, "ALPR_FRAME_STORE_URL": store.url}
        )
        assert "the frame store's Redis" in warning and "(maxmemory-policy volatile-ttl)" in warning
    finally:
        store.stop()


def test_a_redis_that_answers_but_refuses_the_workers_writes_is_retried_with_backoff(
    redis_url, postgres_url, tmp_path
):  # fmt: skip
    """A queues' Redis at its maxmemory (noeviction) answers PING but refuses BLMOVE: the pool started
    the next RQ worker at once, some 1,500 a second, each with a WARNING, one core busy (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")}
    env |= {"ALPR_REDIS_URL": redis_url, "ALPR_DATABASE_URL": postgres_url}
    port = free_port()
    process = alpr_process(env, ["worker", "ocr"], tmp_path / "worker.log", metrics_port=port)

    def serving() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(serving, 60, "the worker to start")  # metrics are served once it is ready
        time.sleep(1)
        server = redis.Redis.from_url(redis_url)
        server.config_set("maxmemory", str(int(server.info("memory")["used_memory"]) // 2))  # full: writes refused
        lost = lambda: set(re.findall(r"worker (\S+) lost Redis", (tmp_path / "worker.log").read_text()))  # noqa: E731

        def refused() -> bool:
            """Whether the worker lost Redis; its dequeue in hand (a BLMOVE of 15 s, which the test waited out)
            ended as at its timeout, so that the next one is refused now."""
            for client in server.client_list():
                if client["cmd"] == "blmove":
                    server.client_unblock(int(client["id"]))
            return bool(lost())

        wait_for(refused, 30, "the worker to lose Redis")  # its blocking dequeue refused
        first = len(lost())
        time.sleep(8)
        assert len(lost()) - first <= 5, f"{len(lost()) - first} more workers lost Redis in 8 s"
        assert "the next one in" in (tmp_path / "worker.log").read_text()
        server.config_set("maxmemory", "0")  # room again: the pool works on
    finally:
        process.terminate()
        assert process.wait(30) == 0


def test_a_redis_reached_with_no_password_is_warned_of_at_start(redis_server, postgres_url, caplog):
    """The frames Redis holds raw frames and plate crops, which anyone who reaches it can GET; every role
    ran against unauthenticated servers with INFO lines only (a review)."""
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0

    def open_warnings(url: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alpr.start_warnings"):
            assert main(["worker", "ocr", "--burst", "--redis-url", url, "--database-url", postgres_url]) == 0
        return [r.getMessage() for r in caplog.records if "with no password" in r.getMessage()]

    [warning] = open_warnings(redis_server.url)
    assert "the queues' and the frame store's Redis" in warning and "requirepass" in warning
    redis.Redis.from_url(redis_server.url).config_set("requirepass", "s3cret-pass")
    assert open_warnings(redis_server.url.replace("redis://", "redis://:s3cret-pass@", 1)) == []


@pytest.mark.parametrize("given_by", ["url", "secret"])
def test_a_password_given_to_a_redis_that_needs_none_is_warned_of_at_start(given_by, tmp_path, caplog):
    """A password in the URL or the `redis_password` secret hid that the server had no `requirepass`: Redis
    takes AUTH then, and answers anyone without it (a review). A server that asks for it is not warned of."""
    open_server = PrivateRedis(tmp_path / "open")
    guarded = PrivateRedis(tmp_path / "guarded")
    for server in (open_server, guarded):
        server.directory.mkdir()
        server.start()
    redis.Redis(port=guarded.port).config_set("requirepass", "s3cret-pass")
    try:

        def warnings(server: PrivateRedis) -> list[str]:
            url, overrides = server.url, {"redis_password": "s3cret-pass"}
            if given_by == "url":
                url, overrides = url.replace("redis://", "redis://:s3cret-pass@", 1), {}
            settings = Settings.load({}, redis_url=url, **overrides)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="alpr.start_warnings"):
                warn_if_redis_open(settings)
            return [record.getMessage() for record in caplog.records]

        [warning] = warnings(open_server)
        assert f"Redis at redis://{':***@' if given_by == 'url' else ''}127.0.0.1:{open_server.port}/0" in warning
        assert "accepts connections without a password; the one given protects nothing" in warning
        assert "s3cret-pass" not in warning
        assert warnings(guarded) == []
    finally:
        for server in (open_server, guarded):
            server.stop()


RECEIVERS_FILE_SLIP = (
    "ALPR_RECEIVERS_FILE is set, but it is docker-compose.yml's (the host file compose mounts as the receivers"
    " file), read by no alpr command: set ALPR_ALERT_RECEIVERS=FILE instead"
)


def test_a_compose_receivers_file_set_for_a_worker_is_named_with_what_to_set(
    redis_url, postgres_url, caplog, monkeypatch
):
    """ALPR_RECEIVERS_FILE (docker-compose.yml's name) set by hand for a sighting or alert worker: the
    warning and the refusal named ALPR_ALERT_RECEIVERS only, and the operator who set the other believed
    it read."""
    from alpr.wiring import build_alert_stage, build_sighting_stage
    from common.metrics import Metrics

    monkeypatch.setenv("ALPR_RECEIVERS_FILE", "/etc/alpr/receivers.yaml")
    settings = Settings.load({}, redis_url=redis_url, database_url=postgres_url)
    connection = redis.Redis.from_url(redis_url)
    with pytest.raises(ConfigError) as refused:
        build_alert_stage(settings, connection, Metrics())
    assert str(refused.value).endswith(f"; {RECEIVERS_FILE_SLIP}")
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        stage = build_sighting_stage(settings, connection, Metrics())
    stage.pool.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.endswith(f"; {RECEIVERS_FILE_SLIP}") and "ALPR_ALERT_RECEIVERS unset" in w for w in warnings)
    assert "/etc/alpr" not in caplog.text
