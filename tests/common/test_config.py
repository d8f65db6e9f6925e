import logging
import os

import pytest

from alpr.cli import main
from common import defaults
from common.config import Settings
from common.errors import ConfigError


def test_environment_and_overrides():
    settings = Settings.load({"ALPR_OCR_ENGINE": "tesseract", "ALPR_DETECTOR_IMGSZ": "640"}, ocr_region="eu")
    assert (settings.ocr_engine, settings.detector_imgsz, settings.ocr_region) == ("tesseract", 640, "eu")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ALPR_OCR_ENGIN": "ppocr"}, "unknown setting ALPR_OCR_ENGIN"),
        ({"ALPR_OCR_ENGINE": "easyocr"}, "ALPR_OCR_ENGINE"),
        ({"ALPR_DETECTOR_IMGSZ": "641"}, "ALPR_DETECTOR_IMGSZ"),
        ({"ALPR_DETECTOR_DEVICE": "gpu"}, "ALPR_DETECTOR_DEVICE"),
        ({"ALPR_SAMPLE_FPS": "-1"}, "ALPR_SAMPLE_FPS"),
        ({"ALPR_JOB_TIMEOUT_S": "30"}, "ALPR_DB_PATIENCE_S .90. must be below ALPR_JOB_TIMEOUT_S .30."),
        # frames would expire before a killed worker's job runs again
        ({"ALPR_JOB_TIMEOUT_S": "900", "ALPR_FRAME_TTL_S": "60"}, "ALPR_FRAME_TTL_S .60. must be at least"),
        ({"ALPR_MAX_FRAME_AGE_S": "700"}, "ALPR_MAX_FRAME_AGE_S .700. must be below ALPR_FRAME_TTL_S"),
        # past Redis's limit every frame write was refused, taken for Redis down: every frame skipped, exit 0
        ({"ALPR_FRAME_TTL_S": "99999999999999999"}, r"ALPR_FRAME_TTL_S: must be at most 86400 s \(a day\), got 9"),
        ({"ALPR_FRAME_TTL_S": "86401"}, r"ALPR_FRAME_TTL_S: must be at most 86400 s"),
        # above a day less the recovery no frame TTL could be valid: the message said to raise the TTL past its maximum
        ({"ALPR_JOB_TIMEOUT_S": "86326"}, r"ALPR_JOB_TIMEOUT_S: must be at most 86325 s \(the frame TTL's maximum,"),
        ({"ALPR_JOB_TIMEOUT_S": "86326", "ALPR_FRAME_TTL_S": "86400"}, r"ALPR_JOB_TIMEOUT_S: must be at most 86325"),
        # not 0, yet read as 0: kept without limit, where 0.000001 is refused
        ({"ALPR_RETENTION_DAYS": "1e-400"}, "ALPR_RETENTION_DAYS: 1e-400 is not 0, yet too small to tell from it"),
        ({"ALPR_AUDIT_RETENTION_DAYS": "-1e-400"}, "ALPR_AUDIT_RETENTION_DAYS: -1e-400 is not 0, yet too small"),
        ({"ALPR_KEEP_DIR": "kept_frames"}, "ALPR_KEEP_DIR: must be an absolute path"),
        ({"ALPR_KEEP_FRAMES": "some"}, "ALPR_KEEP_FRAMES"),
        ({"ALPR_METRICS_PORT": "70000"}, "ALPR_METRICS_PORT"),
        # 10,000 threads started, 16 GB resident, SIGINT ignored, never ready
        ({"ALPR_DETECTOR_THREADS": "100000"}, "ALPR_DETECTOR_THREADS: Input should be less than or equal to 256"),
        ({"ALPR_OCR_THREADS": "65"}, "ALPR_OCR_THREADS: Input should be less than or equal to 64"),
        ({"ALPR_REDIS_PASSWORD": "a", "ALPR_REDIS_PASSWORD_FILE": "/etc/hostname"}, "not both"),
        ({"ALPR_REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "ALPR_REDIS_PASSWORD_FILE: the file it names: cannot read"),
        ({"ALPR_SECRET_FILE": "/etc/hostname"}, "unknown setting ALPR_SECRET_FILE"),
        ({"ALPR_REDIS_URL": "redis://redis:63x9/0"}, "ALPR_REDIS_URL: the port is not a number"),
        ({"ALPR_FRAME_STORE_URL": "redis://frames:6379/frames"}, "ALPR_FRAME_STORE_URL: the database .the URL's path."),
        # with a slow camera each frame waits the whole batch wait: every one would be skipped as too old
        ({"ALPR_MAX_BATCH_WAIT_MS": "24000"}, "ALPR_MAX_BATCH_WAIT_MS .24000. must be below 80% of"),
        ({"ALPR_MAX_FRAME_AGE_S": "0.2"}, "ALPR_MAX_BATCH_WAIT_MS .250. must be below 80% of ALPR_MAX_FRAME_AGE_S"),
        ({"ALPR_ALERT_GIVE_UP_S": "inf"}, "ALPR_ALERT_GIVE_UP_S"),  # loaded, then failed in Postgres's interval
        ({"ALPR_OCR_REGION": "uk"}, "ALPR_OCR_REGION: .*unknown plate region 'uk'; known: any, br, eu, us"),
        ({"ALPR_REDIS_URL": "redis://127.0.0.1:6379/0?socket_timout=5"}, "ALPR_REDIS_URL: the driver cannot parse"),
        ({"ALPR_DETECTOR_MAX_DOWNSCALE": "0.5"}, "ALPR_DETECTOR_MAX_DOWNSCALE: must be 0 .never tiled. or at least 1"),
        # FP16 is the torch backend's on CUDA: anywhere else it would be ignored (ultralytics runs FP32 on a CPU)
        (
            {"ALPR_DETECTOR_HALF": "1"},
            "ALPR_DETECTOR_HALF: FP16 runs the torch backend on a CUDA device; here the backend is onnx on cpu",
        ),
        ({"ALPR_DETECTOR_HALF": "1", "ALPR_DETECTOR_BACKEND": "torch"}, "here the backend is torch on cpu"),
        ({"ALPR_DETECTOR_HALF": "1", "ALPR_DETECTOR_DEVICE": "cuda:0"}, "here the backend is onnx on cuda:0"),
        ({"ALPR_JOB_KEY": "short"}, "ALPR_JOB_KEY: must be 16 to 1024 characters long, got 5$"),  # not "16 items"
        ({"ALPR_JOB_KEY": "k" * 1025}, "ALPR_JOB_KEY: must be 16 to 1024 characters long, got 1025$"),
    ],
)
def test_bad_settings_name_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.load(environ)


def test_the_bounds_of_frame_ttl_and_retention_take_what_they_name():
    """The positive control of the refusals above: a day's frame TTL, and 0 however written, are taken."""
    assert Settings.load({"ALPR_FRAME_TTL_S": "86400"}).frame_ttl_s == 86400
    longest = {"ALPR_JOB_TIMEOUT_S": "86325", "ALPR_FRAME_TTL_S": "86400"}
    assert Settings.load(longest).job_timeout_s == 86325
    for zero in ("0", "0.0", "-0", "0e5"):
        assert Settings.load({"ALPR_RETENTION_DAYS": zero, "ALPR_AUDIT_RETENTION_DAYS": zero}).retention_days == 0


def test_secrets_come_from_files_and_never_show(tmp_path):
    (tmp_path / "redis").write_text("s3cret-redis\n")
    (tmp_path / "pg").write_text("s3cret-pg")
    environ = {"ALPR_REDIS_PASSWORD_FILE": str(tmp_path / "redis"), "ALPR_DATABASE_PASSWORD_FILE": str(tmp_path / "pg")}
    settings = Settings.load(environ)
    assert settings.secret("redis_password") == "s3cret-redis" and settings.secret("database_password") == "s3cret-pg"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    (tmp_path / "bad").write_bytes(b"\xff\xfe s3cret")
    with pytest.raises(ConfigError) as error:
        Settings.load({"ALPR_REDIS_PASSWORD_FILE": str(tmp_path / "bad")})
    assert "s3cret" not in str(error.value)


def test_compose_variables_are_not_settings_and_not_refused():
    """The four docker-compose.yml reads on the host: exported for `docker compose up`, they stopped
    every `alpr` command in that shell (two of them were not known here)."""
    environ = {"ALPR_CAMERAS_FILE": "/x.yaml", "ALPR_SECRETS_DIR": "/run/s", "ALPR_RECEIVERS_FILE": "/r.yaml",
               "ALPR_ALERT_SECRETS_DIR": "/run/a"}  # fmt: skip
    assert Settings.load(environ).redis_url.startswith("redis")


def test_an_empty_secret_file_is_refused_naming_the_variable(tmp_path):
    """An empty variable counts as unset; an empty file was a password of nothing, failing at connect."""
    (tmp_path / "pg").write_text("\n")
    with pytest.raises(ConfigError, match="ALPR_DATABASE_PASSWORD_FILE: the file it names is empty"):
        Settings.load({"ALPR_DATABASE_PASSWORD_FILE": str(tmp_path / "pg")})


def test_a_frame_store_of_its_own_defaults_to_the_queues_redis():
    assert Settings.load({}).store_url == Settings.load({}).redis_url
    assert Settings.load({"ALPR_FRAME_STORE_URL": "redis://frames:6379/0"}).store_url == "redis://frames:6379/0"


def test_a_secret_written_where_its_file_belongs_stays_out_of_the_message():
    with pytest.raises(ConfigError) as caught:
        Settings.load({"ALPR_REDIS_PASSWORD_FILE": "hunter2-the-password-itself"})
    assert "hunter2" not in str(caught.value) and str(caught.value).startswith("ALPR_REDIS_PASSWORD_FILE: ")


@pytest.mark.parametrize(
    ("variable", "url", "message"),
    [
        ("ALPR_DATABASE_URL", "postgresql://u:s3cr%zzet@127.0.0.1:5432/test", "the password has a '%' that is not"),
        ("ALPR_DATABASE_URL", "postgresql://u:s3cr et@127.0.0.1:5432/test", "the password has a space"),
        ("ALPR_REDIS_URL", "redis://:s3cr et@127.0.0.1:6379/0", "the password has a space"),
        ("ALPR_REDIS_URL", "redis://:s3cr%zzet@127.0.0.1:6379/0", "the password has a '%' that is not"),
        ("ALPR_FRAME_STORE_URL", "redis://:s3cr/et@frames:6379/0", "an '@', '/', .*must be percent-encoded"),
    ],
)
def test_a_malformed_server_url_is_refused_without_quoting_its_password(variable, url, message):
    with pytest.raises(ConfigError, match=f"{variable}: {message}") as caught:
        Settings.load({variable: url})
    assert "s3cr" not in str(caught.value)


def test_well_formed_server_urls_pass():
    environ = {
        "ALPR_REDIS_URL": "redis://:p%25w@redis:6379/2",
        "ALPR_FRAME_STORE_URL": "rediss://frames",
        "ALPR_DATABASE_URL": "postgresql://alpr:p%40ss@db1:5432,db2/alpr?sslmode=require",
    }
    settings = Settings.load(environ)
    assert (settings.redis_url, settings.store_url, settings.database_url) == tuple(environ.values())


def test_fp16_is_taken_for_the_torch_backend_on_cuda_and_a_flag_is_named_as_typed():
    environ = {"ALPR_DETECTOR_HALF": "1", "ALPR_DETECTOR_BACKEND": "torch", "ALPR_DETECTOR_DEVICE": "cuda:1"}
    assert Settings.load(environ).detector_half is True and Settings.load({}).detector_half is False
    with pytest.raises(ConfigError, match="invalid settings: --half: FP16 runs the torch backend on a CUDA device"):
        Settings.load({}, flag_names={"detector_half": "--half"}, detector_half=True)
    from alpr.arguments import build_parser

    assert build_parser().parse_args(["run", "--half", "clip.mp4"]).detector_half is True
    assert build_parser().parse_args(["run", "clip.mp4"]).detector_half is None  # ALPR_DETECTOR_HALF stands


@pytest.mark.parametrize(
    ("environ", "early"),
    [({}, 0.9),
     ({"ALPR_OCR_MIN_CONFIDENCE": "0.99"}, 0.99),  # raised to cut false alerts: early alerts are cut too
     ({"ALPR_OCR_MIN_CONFIDENCE": "0.5"}, 0.9),
     ({"ALPR_OCR_MIN_CONFIDENCE": "0.99", "ALPR_WATCH_READ_MIN_CONFIDENCE": "0.995"}, 0.995),
     ({"ALPR_WATCH_READ_MIN_CONFIDENCE": "0.85"}, 0.85)],  # at the default trusted-read threshold: taken
)  # fmt: skip
def test_the_early_match_threshold_follows_the_trusted_read_threshold_unless_set(environ, early):
    assert Settings.load(environ).early_match_min_confidence == early


@pytest.mark.parametrize(
    "environ",
    [
        {"ALPR_RETENTION_DAYS": "1"},  # the default keep age (72 h) past it: bounded where frames are kept
        {"ALPR_RETENTION_DAYS": "2", "ALPR_KEEP_MAX_AGE_H": "100000", "ALPR_ALERT_REPEAT_S": "86400"},
    ],
)
def test_settings_past_the_retention_load_for_every_command(environ):
    """Bounded by the retention at the start of the roles that keep them (Settings.within_retention:
    tests/alpr/test_retention_bounds.py), not in every command's settings: `alpr db prune` and `alpr status`
    were refused with a short retention (a review)."""
    Settings.load(environ)


def test_a_watch_read_threshold_below_the_trusted_reads_is_refused_where_it_is_used():
    """A single 0.92 misread alerted though the trusted-read threshold, and so the voted sighting, said no;
    refused where the threshold is used (the sighting pool's start: tests/alpr/test_retention_bounds.py),
    not in every command's settings."""
    settings = Settings.load({"ALPR_OCR_MIN_CONFIDENCE": "0.99", "ALPR_WATCH_READ_MIN_CONFIDENCE": "0.9"})
    message = "ALPR_WATCH_READ_MIN_CONFIDENCE .0.9. must be at least ALPR_OCR_MIN_CONFIDENCE .0.99.: .* leave it unset"
    with pytest.raises(ConfigError, match=message):
        _ = settings.early_match_min_confidence


def test_a_keep_age_past_a_century_is_refused_whatever_the_retention():
    with pytest.raises(ConfigError, match="ALPR_KEEP_MAX_AGE_H: Input should be less than"):
        Settings.load({"ALPR_KEEP_MAX_AGE_H": "1e9", "ALPR_RETENTION_DAYS": "0"})


@pytest.mark.parametrize("variable", ["ALPR_REDIS_PASSWORD_FILE", "ALPR_JOB_KEY_FILE", "ALPR_DATABASE_PASSWORD_FILE"])
@pytest.mark.parametrize(("mode", "group"), [(0o666, None), (0o602, None), (0o660, 54321)])
def test_a_secret_file_other_users_may_write_is_refused(tmp_path, variable, mode, group):
    """Anyone local rewrote a 0666 ALPR_JOB_KEY_FILE (which jobs every role runs) or Redis password file:
    it was read silently. Writable by others, or by a group with another member (an unknown group is taken
    to have one): refused, saying the fix; readable by others (compose's 0644 secrets) is fine."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value-0123456789\n")
    os.chmod(secret, 0o644)
    assert Settings.load({variable: str(secret)}).secret(variable[5:-5].lower()) == "s3cret-value-0123456789"
    if group is not None:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another group")
        os.chown(secret, -1, group)
    os.chmod(secret, mode)
    with pytest.raises(ConfigError) as refused:
        Settings.load({variable: str(secret)})
    assert str(refused.value) == (
        f"{variable}: the file it names may be written by other users of this host (mode {mode:04o}): whoever"
        f" writes it sets {variable[:-5]}; make it writable by its owner alone: chmod go-w on it"
        " (others may still read it)"
    )


@pytest.mark.parametrize(
    ("variable", "meant"),
    [("ALPR_OCR_ENGIN", "ALPR_OCR_ENGINE"), ("ALPR_RETENTION_DAY", "ALPR_RETENTION_DAYS"),
     ("ALPR_JOB_KEYFILE", "ALPR_JOB_KEY_FILE"), ("ALPR_REDIS_ULR", "ALPR_REDIS_URL"), ("ALPR_FOO", None)],
)  # fmt: skip
def test_an_unknown_setting_names_the_one_it_is_likely_a_slip_for_first(variable, meant):
    """The refusal listed every known setting (53 names): the one misspelt was left to find among them."""
    with pytest.raises(ConfigError) as refused:
        Settings.load({variable: "1"})
    guess = f" (did you mean {meant}?)" if meant else ""
    assert str(refused.value).startswith(f"unknown setting {variable}{guess}; known: ALPR_MODEL_DIR, ")


@pytest.mark.parametrize("field", ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile"])
@pytest.mark.parametrize("variable", ["ALPR_REDIS_URL", "ALPR_FRAME_STORE_URL"])
def test_a_tls_file_a_redis_url_names_must_exist_where_redis_is_reached(variable, field, tmp_path, capsys, monkeypatch):
    """A missing CA file read as "cannot reach Redis … No such file or directory", after the role had tried
    to connect (a review): now one line naming the setting and the query field, the password never. Checked
    where Redis is reached, not when the settings load: there it stopped `alpr db prune` on a host whose
    shared environment names the chain's CA file but holds none (a diff review)."""
    from alpr.connections import reach_redis

    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    url = f"rediss://:s3cret-pw@10.0.0.5:6380/0?{field}={tmp_path / 'missing.pem'}"
    settings = Settings.load({variable: url})  # loads: only the roles reaching that Redis need the file
    with pytest.raises(ConfigError) as refused:
        reach_redis(settings, url, "frame store" if variable == "ALPR_FRAME_STORE_URL" else "queues")
    assert str(refused.value) == (
        f"{variable}: the file its query's {field} names is missing or unreadable here"
        " (redis-py loads it at each connection: every one would fail)"
    )
    if variable == "ALPR_REDIS_URL":
        assert main(["status", "--redis-url", url]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert f"{field} names is missing" in line and "s3cret" not in line and "cannot reach" not in line
        monkeypatch.setenv(variable, url)  # a command that never reaches Redis runs
        assert main(["db", "prune", "--sqlite", str(tmp_path / "none.sqlite"), "--dry-run"]) == 2
        error = capsys.readouterr().err  # past the settings, to its own error
        assert "nothing to prune" in error and "names is missing" not in error


@pytest.mark.parametrize(
    "variable", ["alpr_sample_fps", "Alpr_Sample_Fps", "alpr_DATABASE_PASSWORD_FILE", "alpr_detector_weights_file"]
)
def test_a_setting_not_in_capitals_is_warned_of_by_name_not_value(variable, caplog):
    """`alpr_sample_fps=2` was ignored without a word: the operator believed it applied. Warned of (its
    name, never its value: it may be a secret), not refused. (`ALPR_sample_fps`, its prefix in capitals, is
    read as ALPR_SAMPLE_FPS, as it was.)"""
    with caplog.at_level(logging.WARNING, logger="common.config"):
        settings = Settings.load({variable: "s3cret-2"})
    assert settings.sample_fps == Settings.load({}).sample_fps  # not applied, not refused
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"{variable} is not read: settings are read from upper-case variables only; set {variable.upper()}"
    )
    assert "s3cret" not in caplog.text


def test_variables_in_other_cases_that_name_no_setting_are_left_alone(caplog):
    with caplog.at_level(logging.WARNING, logger="common.config"):
        Settings.load({"alpr_no_such_thing": "1", "alpr_receivers_file": "/r.yaml", "path": "/bin"})
    assert not caplog.records


def test_a_lower_case_twin_of_a_set_variable_is_warned_of_only_where_it_differs(caplog):
    """Both `alpr_sample_fps` and `ALPR_SAMPLE_FPS` set alike said "set ALPR_SAMPLE_FPS", which was set (a
    review): the twin says nothing new. One that differs is named with the one read, never either value."""
    with caplog.at_level(logging.WARNING, logger="common.config"):
        settings = Settings.load({"alpr_sample_fps": "3", "ALPR_SAMPLE_FPS": "3"})
    assert settings.sample_fps == 3 and not caplog.records
    with caplog.at_level(logging.WARNING, logger="common.config"):
        settings = Settings.load({"alpr_sample_fps": "7", "ALPR_SAMPLE_FPS": "3"})
    assert settings.sample_fps == 3
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        "alpr_sample_fps is not read, and differs from ALPR_SAMPLE_FPS, which is: settings are read from"
        " upper-case variables only"
    )


def test_a_patch_of_the_slowest_sampling_reaches_its_check(monkeypatch):
    """The defaults' one function reads them from `common.defaults`, where a test's patch lands: moved into a
    topic module, it read that module's own MIN_SAMPLE_FPS and a patch reached the video source alone (a review)."""
    monkeypatch.setattr(defaults, "MIN_SAMPLE_FPS", 1.0)
    with pytest.raises(ValueError, match="at least one frame an hour"):
        defaults.at_least_a_frame_an_hour(0.5)
    with pytest.raises(ConfigError, match="at least one frame an hour"):
        Settings.load({"ALPR_SAMPLE_FPS": "0.5"})


def test_a_lower_case_variable_beside_an_empty_upper_case_one_says_to_set_it(caplog):
    """An empty ALPR_SAMPLE_FPS is taken for unset: its lower-case twin was said to differ from one that
    "is" read, while neither was and the default applied (a review)."""
    with caplog.at_level(logging.WARNING, logger="common.config"):
        settings = Settings.load({"alpr_sample_fps": "2", "ALPR_SAMPLE_FPS": ""})
    assert settings.sample_fps == Settings.load({}).sample_fps
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.endswith("; set ALPR_SAMPLE_FPS")
