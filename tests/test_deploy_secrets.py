"""The deployment's secrets: deploy/make-secrets.sh makes them once, at random, and never overwrites them (nor
trusts a folder another user made); Postgres starts only with its owner's password and the chain reads it alike;
only the migration logs in as the owner, the workers and the prune as their own roles, which
deploy/postgres-app-role.sh makes with their secrets (and again only resets them)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common.config import Settings
from tests.conftest import unavailable
from tests.deploy_files import (
    ALPR_SERVICES,
    DATABASE_LOGINS,
    MAKE_SECRETS,
    REPO,
    SECRET_NAMES,
    SERVICES,
    WITHOUT_DATABASE,
    container_environment,
    database_role,
    run_make_secrets,
    secret_names,
)


def test_postgres_takes_its_password_from_a_secret():
    postgres = SERVICES["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"] and "postgres_password" in secret_names(postgres)
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name, service in ALPR_SERVICES.items():
        if name in WITHOUT_DATABASE:
            continue
        assert urlsplit(service["environment"]["ALPR_DATABASE_URL"]).username == database_role(name), name
        assert "postgres_password" not in secret_names(service) or name == "migrate", name  # the owner's


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"owner-secret-0123\n", None),
        (b"owner-secret-0123", None),
        (b"owner-secret-0123\r\n\r\n", None),  # saved on Windows: initdb and the chain both leave the CR out
        (b"\xef\xbb\xbfowner-secret-0123\n", None),  # "UTF-8 with BOM": SCRAM's SASLprep drops the mark
        (b"owner-secret-0123\nsecond-line\n", "holds more than one line"),  # initdb takes the first alone
        (b"\r\nowner-secret-0123\n", "holds more than one line"),
        (b"", "empty postgres_password secret"),
        (b"\r\n", "empty postgres_password secret"),
    ],
)
def test_postgres_starts_only_with_an_owners_password_the_chain_reads_alike(content, said, tmp_path: Path):
    """The image reads POSTGRES_PASSWORD_FILE whole ($(< file)) and initdb takes its first line without its
    line end, `migrate` all of it but the line ends at its end: a secret of two lines made the owner's
    password one `migrate` never sent ("password authentication failed", no hint). The postgres service's
    start script (run here by sh, the image's entrypoint a stand-in) refuses it before the image makes
    anything, as Redis's refuses what its server would read otherwise. CRLF and a byte-order mark log in
    (measured with PostgreSQL 15's initdb and SCRAM): not refused, a working volume not stopped."""
    command = SERVICES["postgres"]["command"]
    assert command[:2] == ["sh", "-c"] and command[3:] == ["postgres-start", "postgres"]
    secret = tmp_path / "postgres_password"
    secret.write_bytes(content)
    script = command[2].replace("$$", "$").replace("/run/secrets/postgres_password", str(secret))
    assert script.count(str(secret)) == 1 and "docker-entrypoint.sh" in script
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entrypoint = bin_dir / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\necho "entrypoint $*"\n')
    entrypoint.chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", script, *command[3:]], env=environment, capture_output=True, text=True)
    assert "owner-secret" not in done.stdout + done.stderr
    if said is None:
        assert (done.returncode, done.stdout, done.stderr) == (0, "entrypoint postgres\n", "")
    else:
        assert done.returncode == 1 and done.stdout == "" and said in done.stderr, done.stderr


def test_only_the_migration_logs_in_as_the_owner_and_grants_the_workers_and_the_pruners_roles(secrets_dir: Path):
    assert SERVICES["migrate"]["command"] == ["db", "upgrade", "--grant", "alpr_app", "--grant-pruner", "alpr_pruner"]
    assert [name for name in ALPR_SERVICES if database_role(name) == "alpr"] == ["migrate"]
    assert [name for name in ALPR_SERVICES if database_role(name) == "alpr_pruner"] == ["prune"]
    prune = SERVICES["prune"]  # plate data kept 30 days, pruned every 6 hours, after the schema is current
    assert prune["command"] == ["db", "prune", "--every-h", "6"] and prune["restart"] == "unless-stopped"
    assert Settings.load(container_environment(prune, secrets_dir)).retention_days == 30
    assert prune["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert {"postgres_app_password", "postgres_pruner_password"} <= secret_names(SERVICES["postgres"])
    mounts = SERVICES["postgres"]["volumes"]
    assert "./deploy/postgres-app-role.sh:/docker-entrypoint-initdb.d/alpr-app-role.sh:ro" in mounts
    script = (REPO / "deploy" / "postgres-app-role.sh").read_text()
    assert "\\set secret `tr -d '\\r\\n' < :'secret_file'`" in script  # psql reads it: never on a command line
    for role, secret in DATABASE_LOGINS.items():
        if role != "alpr":  # the image makes the owner
            assert f"login_role {role} /run/secrets/{secret}\n" in script


def test_make_secrets_makes_random_passwords_once_and_never_overwrites_them(tmp_path: Path):
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "grafana_admin_password").write_text("chosen by hand\n")  # one the user made: kept
    first = run_make_secrets(str(folder))
    assert {p.name for p in folder.iterdir()} == SECRET_NAMES | {"alerts"}
    made = {name: (folder / name).read_text() for name in SECRET_NAMES}
    assert made["grafana_admin_password"] == "chosen by hand\n" and "kept" in first
    passwords = [made["redis_password"].strip(), made["postgres_password"].strip()]
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", password) for password in passwords)
    assert len(set(passwords)) == 2
    # The folder keeps every other host user out; the files are readable inside the containers, whose
    # non-root users (alpr, grafana) are not the host owner of a bind-mounted secret.
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("redis_password", "postgres_password"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644

    second = run_make_secrets(env={"ALPR_SECRETS_DIR": str(folder)})
    assert {name: (folder / name).read_text() for name in SECRET_NAMES} == made
    assert second.count("kept") == len(SECRET_NAMES) and "made" not in second  # alerts/ too: kept as it is

    other = tmp_path / "other"
    run_make_secrets(str(other))
    assert all((other / name).read_text() != made[name] for name in SECRET_NAMES)


def make_secrets_fails(folder: Path) -> str:
    """deploy/make-secrets.sh's error for `folder`; it must fail."""
    result = subprocess.run(["sh", str(MAKE_SECRETS), str(folder)], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr


def test_make_secrets_trusts_no_folder_or_file_another_user_made_nor_keeps_an_empty_one(tmp_path: Path):
    """Another user who made the folder first (in /tmp, a shared checkout) and planted a password she
    knew had it kept, the new secrets added beside it, and read them all: the folder stayed hers, however
    its mode (a review). A write that failed (a full disk) left empty files, kept for good; one killed
    before its chmod, a 0600 file the containers could not read, kept as it was."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "redis_password").write_text("")  # an earlier write that failed
    assert "redis_password is empty" in make_secrets_fails(folder)
    (folder / "redis_password").unlink()
    (folder / "redis_password").symlink_to(tmp_path / "elsewhere")
    assert "redis_password is not a regular file" in make_secrets_fails(folder)
    (folder / "redis_password").unlink()
    (folder / "redis_password").write_text("killed before its chmod\n")
    (folder / "redis_password").chmod(0o600)
    run_make_secrets(str(folder))
    assert stat.S_IMODE((folder / "redis_password").stat().st_mode) == 0o644
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no partial file left
    bin_folder = tmp_path / "bin"  # a file system without hard links (vfat, some SMB mounts): ln fails
    bin_folder.mkdir()
    (bin_folder / "ln").write_text("#!/bin/sh\nexit 1\n")
    (bin_folder / "ln").chmod(0o755)
    failed = subprocess.run(["sh", str(MAKE_SECRETS), str(tmp_path / "fresh")], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{bin_folder}:{os.environ['PATH']}"})  # fmt: skip
    assert failed.returncode == 1 and "could not make" in failed.stderr  # it said "kept" and exited 0, no secrets
    if os.geteuid() != 0:
        return  # only root can make a folder or a file another user's
    for path in (folder, folder / "redis_password"):
        os.chown(path, 65534, 65534)
    assert "is another user's folder" in make_secrets_fails(folder)
    os.chown(folder, 0, 0)
    assert "redis_password is another user's file" in make_secrets_fails(folder)


def test_make_secrets_writes_into_the_repository_by_default_from_any_folder(tmp_path: Path):
    """Without a folder named, secrets/ beside deploy/, where docker-compose.yml looks; git and the
    image's build context both leave it out."""
    copy = tmp_path / "checkout"
    (copy / "deploy").mkdir(parents=True)
    shutil.copy(MAKE_SECRETS, copy / "deploy" / "make-secrets.sh")
    environment = {k: v for k, v in os.environ.items() if k != "ALPR_SECRETS_DIR"}
    result = subprocess.run(["sh", "deploy/make-secrets.sh"], cwd=copy, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (copy / "secrets").iterdir()} == SECRET_NAMES | {"alerts"}  # alerts/: the receivers'
    assert (copy / "secrets" / "alerts").is_dir() and oct(
        (copy / "secrets" / "alerts").stat().st_mode & 0o777
    ) == "0o755"
    assert "/secrets/" in (REPO / ".gitignore").read_text().split()
    assert "secrets" in (REPO / ".dockerignore").read_text().split()
    assert os.access(MAKE_SECRETS, os.X_OK)


@pytest.mark.parametrize("relative", ["mysecrets", "./secrets", "../x/secrets"])
def test_make_secrets_refuses_a_relative_secrets_dir_which_compose_reads_from_elsewhere(relative, tmp_path: Path):
    """A relative ALPR_SECRETS_DIR was made in the current folder, while docker compose reads it from the
    project folder: the stack found none of the secrets (an operator review)."""
    result = subprocess.run(["sh", str(MAKE_SECRETS)], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "ALPR_SECRETS_DIR": relative})  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip() == (
        f"make-secrets.sh: ALPR_SECRETS_DIR={relative} is a relative path, which docker compose takes from the"
        " project folder and this script would from the current one: give an absolute path"
    )
    assert list(tmp_path.iterdir()) == []  # nothing made where the script stood
    made = run_make_secrets(env={"ALPR_SECRETS_DIR": str(tmp_path / relative)})  # an absolute one: made
    assert f"made {tmp_path / relative}/job_key" in made


def scram_verifies(stored: str, password: str) -> bool:
    """Whether Postgres's SCRAM-SHA-256 verifier `stored` is of `password` (RFC 5802: its StoredKey and
    ServerKey from the salted password)."""
    import base64
    import hashlib
    import hmac

    method, rest = stored.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(key) for key in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (
        method == "SCRAM-SHA-256"
        and hashlib.sha256(client_key).digest() == stored_key
        and hmac.new(salted, b"Server Key", "sha256").digest() == server_key
    )


def test_the_role_script_makes_the_roles_with_their_secrets_and_again_only_resets_them(tmp_path, postgres_url):
    """deploy/postgres-app-role.sh run by psql against this machine's Postgres, as the postgres image
    runs it at its first start (the secrets' paths pointed at files of the test's, the roles named its own:
    the machine's Postgres is shared, and the fixed names failed a run beside another using them); first
    on a cluster that has alpr_app and no alpr_pruner, as a volume made before the pruner's role has."""
    import psycopg

    psql = shutil.which("psql")
    if psql is None:
        unavailable("psql is not installed")
    tail = uuid.uuid4().hex[:8]
    app, pruner = f"alpr_app_{tail}", f"alpr_pruner_{tail}"
    roles = {app: tmp_path / "postgres_app_password", pruner: tmp_path / "postgres_pruner_password"}
    script = tmp_path / "alpr-app-role.sh"
    text = (REPO / "deploy" / "postgres-app-role.sh").read_text()
    for role, secret in zip(("alpr_app", "alpr_pruner"), roles.values(), strict=True):
        assert f"login_role {role} /run/secrets/{secret.name}" in text
        text = text.replace(f"login_role {role} /run/secrets/{secret.name}", f"login_role {role}_{tail} {secret}")
    script.write_text(text)
    parts = urlsplit(postgres_url)
    environment = {**os.environ, "POSTGRES_USER": parts.username or "postgres", "POSTGRES_DB": parts.path[1:],
                   "PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432)}  # fmt: skip
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE ROLE {app} LOGIN")  # the script of before made it alone
            hashes = []
            for run in ("first", "second"):
                for role, secret in roles.items():
                    secret.write_text(f"{run}-{role}-secret-0123\n")
                done = subprocess.run(["sh", str(script)], env=environment, capture_output=True, text=True)
                assert done.returncode == 0, done.stderr
                for role in roles:
                    assert f"{run}-{role}-secret" not in done.stdout + done.stderr
                    row = admin.execute(
                        "SELECT rolcanlogin, rolsuper, rolpassword FROM pg_authid WHERE rolname = %s", (role,)
                    )
                    can_login, superuser, hashed = row.fetchone()  # type: ignore[misc]
                    assert can_login and not superuser and hashed and "secret" not in hashed, role
                    assert scram_verifies(hashed, f"{run}-{role}-secret-0123"), role
                    hashes.append(hashed)
            assert len(set(hashes)) == 4  # run again (a volume made before), each password is its secret's
            roles[app].write_bytes(b"crlf-secret'0123\r\n")  # saved on Windows; a quote in it
            done = subprocess.run(["sh", str(script)], env=environment, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            row = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (app,)).fetchone()
            assert row and scram_verifies(row[0], "crlf-secret'0123")  # as the chain reads the file
            roles[app].write_bytes(b"\xef\xbb\xbfbom-secret-0123\n")  # saved "UTF-8 with BOM": the chain
            done = subprocess.run(["sh", str(script)], env=environment, capture_output=True, text=True)
            assert done.returncode == 1 and "starts with a byte-order mark" in done.stderr  # drops it, Postgres kept it
            row = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (app,)).fetchone()
            assert row and scram_verifies(row[0], "crlf-secret'0123")  # unchanged
            roles[app].write_bytes(b"crlf-secret'0123\r\nsecond-line\r\n")  # the chain reads both lines
            done = subprocess.run(["sh", str(script)], env=environment, capture_output=True, text=True)
            assert done.returncode == 1 and "holds more than one line" in done.stderr  # it joined them
            assert "second-line" not in done.stdout + done.stderr
            row = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (app,)).fetchone()
            assert row and scram_verifies(row[0], "crlf-secret'0123")  # unchanged
            roles[app].write_bytes(b"crlf-secret'0123\r\n")
            roles[pruner].unlink()  # a secrets folder from before the pruner: told, not a role without one
            done = subprocess.run(["sh", str(script)], env=environment, capture_output=True, text=True)
            assert done.returncode == 1 and f"no password for {pruner}" in done.stderr
            assert "run deploy/make-secrets.sh" in done.stderr
        finally:
            for role in roles:
                admin.execute(f"DROP ROLE IF EXISTS {role}")
