"""Shared fixtures: the real detector and OCR, the synthetic demo clip, the evaluation photographs
(found through ALPR_DATASETS_DIR, default ../shared/datasets; tests skip clearly without them) and a
private schema on the real Postgres. Under ALPR_TESTS_REQUIRE_ALL=1 (CI) what is missing fails instead
of skipping: see `unavailable`."""

from __future__ import annotations

import http.server
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from alpr.democlip import make_clip
from alpr.wiring import build_detector, build_reader
from common.config import Settings
from detector_worker.core import PlateDetector
from detector_worker.weights import install_models
from ocr_worker.core import PlateReader
from tests.helpers import http_server
from tests.servers import PrivatePostgres, PrivateRedis

REPO = Path(__file__).resolve().parent.parent

REQUIRE_ALL = "ALPR_TESTS_REQUIRE_ALL"
"""Set to 1 (CI does): a missing server, binary, dataset or package fails the test instead of skipping it."""

TEST_DATABASE_URL = "ALPR_TEST_DATABASE_URL"
"""The Postgres the tests make their schemas in."""

TEST_ENV = {name: os.environ.pop(name) for name in (REQUIRE_ALL, TEST_DATABASE_URL) if name in os.environ}
"""The tests' own variables, read once as the tests start (and kept out of the processes they start)."""


def unavailable(reason: str) -> NoReturn:
    """What a test needs is missing: skip it, or fail it when ALPR_TESTS_REQUIRE_ALL=1. Usable at module
    level too (where a failure is a collection error, which fails the run)."""
    if TEST_ENV.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL} is set)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(autouse=True)
def private_ledger_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's ingest nodes spool in a folder of its own: a spool left in the home folder by one
    test's node was written by the next test's, into that test's frames log."""
    monkeypatch.setenv("ALPR_LEDGER_SPOOL_DIR", str(tmp_path / "ledger-spool"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    loaded = Settings.load()
    install_models(loaded.model_dir)
    return loaded


@pytest.fixture(scope="session")
def detector(settings: Settings) -> PlateDetector:
    return build_detector(settings)


@pytest.fixture(scope="session")
def reader_us(settings: Settings) -> PlateReader:
    return build_reader(settings, "us")


@pytest.fixture(scope="session")
def datasets_dir(settings: Settings) -> Path:
    path = settings.datasets_dir if settings.datasets_dir.is_absolute() else REPO / settings.datasets_dir
    if not (path / "openalpr-endtoend").is_dir():
        unavailable(f"evaluation photographs not found at {path} (set ALPR_DATASETS_DIR)")
    return path


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_clip(path)
    return path, json.loads(path.with_suffix(".mp4.json").read_text())


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh schema on the real Postgres (ALPR_TEST_DATABASE_URL, default this machine's `test`)."""
    try:
        import psycopg
    except ImportError as error:
        unavailable(f"psycopg is not installed: {error}")
    base = TEST_ENV.get(TEST_DATABASE_URL, "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as error:
        unavailable(f"no Postgres at {base}: {error}")
    yield f"{base}?options=-csearch_path%3D{schema}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server for one test (so tests may fill, stop or restart it)."""
    try:
        server = PrivateRedis(tmp_path)
    except FileNotFoundError as error:
        unavailable(str(error))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: PrivateRedis) -> str:
    return redis_server.url


@pytest.fixture()
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private Postgres cluster for one test (so tests may stop or restart it)."""
    try:
        server = PrivatePostgres()
    except FileNotFoundError as error:
        unavailable(str(error))
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secrets of the compose stack (the deployment tests), made by deploy/make-secrets.sh in a temporary
    folder."""
    from tests.deploy_files import run_make_secrets

    folder = tmp_path_factory.mktemp("compose") / "secrets"
    run_make_secrets(str(folder))
    return folder


@pytest.fixture()
def stalled_camera() -> Iterator[str]:
    """A live camera's URL that answers nothing: it accepts the connection and stalls."""
    released = threading.Event()

    class Stalled(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            released.wait(60)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Stalled) as base:
        yield f"{base}/video"
        released.set()
