"""The cameras file: valid files load; every malformed one is a one-line ConfigError naming the file,
the camera and the field."""

import os
import time

import pytest

from common.config import Settings
from common.errors import ConfigError
from ingest.cameras import load_cameras, parse_cameras

SETTINGS = Settings.load({})
"""The settings a camera without a `sample_fps` or `region` of its own takes them from: the defaults."""

GOOD = {"id": "gate-3", "source": "rtsp://10.0.0.5/stream", "sample_fps": 4, "region": "eu",
        "roi": [[0, 0], [100, 0], [100, 80]]}  # fmt: skip


def test_a_valid_file_loads(tmp_path):
    path = tmp_path / "cameras.yaml"
    path.write_text(
        "cameras:\n  - id: gate-3\n    source: /videos/gate.mp4\n  - id: gate-4\n    source: x\n    enabled: false\n"
    )
    cameras = load_cameras(path, SETTINGS)
    assert [c.id for c in cameras] == ["gate-3", "gate-4"] and cameras[0].region == "us" and not cameras[1].enabled


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cameras": [{**GOOD, "sample_fps": 0}]}, "camera 'gate-3': field sample_fps"),
        ({"cameras": [{**GOOD, "sample_fps": 1e-300}]}, "sample_fps: .*at least one frame an hour"),  # failed later
        ({"cameras": [{**GOOD, "regoin": "eu"}]}, "camera 'gate-3': field regoin: Extra inputs are not permitted"),
        ({"cameras": [{**GOOD, "region": "mars"}]}, "camera 'gate-3': field region: .*unknown plate region 'mars'"),
        ({"cameras": [{**GOOD, "roi": [[0, 0], [1, 1]]}]}, "camera 'gate-3': field roi"),
        ({"cameras": [{**GOOD, "id": "bad id!"}]}, "camera 'bad id!': field id"),
        ({"cameras": [{"id": "cam-9"}]}, "camera 'cam-9': field source: Field required"),
        ({"cameras": [GOOD, GOOD]}, "camera ids must be unique; repeated: gate-3"),
        ({"cameras": [GOOD, {**GOOD, "id": "Gate-3"}]}, "camera ids gate-3 and Gate-3 differ only in case"),
        ({"cameras": [{**GOOD, "enabled": False}]}, "no enabled camera"),
        (  # looped recorded footage was dated further ahead of the clock each pass (9 minutes in 20 s: a review)
            {"cameras": [{**GOOD, "loop": True, "realtime": False}]},
            "camera 'gate-3': field \\(entry\\): loop: true needs realtime: true",
        ),
        ({"camera": [GOOD]}, "expected a mapping with one key, `cameras`"),
        ([GOOD], "expected a mapping"),
    ],
)
def test_errors_name_the_camera_and_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_cameras(raw, SETTINGS, "cameras.yaml")


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_cameras(tmp_path / "none.yaml", SETTINGS)
    (tmp_path / "bad.yaml").write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_cameras(tmp_path / "bad.yaml", SETTINGS)


CAMERA = "cameras:\n  - id: gate-3\n    source: /videos/gate.mp4\n"
"""One valid camera, its fields at four spaces: a case appends a field to it."""
BILLION_LAUGHS = "\n".join(
    [f'l0: &l0 "{"lol" * 3}"']
    + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
    + [CAMERA + "    roi: *l9"]
)


def camera_with(field_yaml: str) -> bytes:
    return (CAMERA + field_yaml + "\n").encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"cameras:\n  - id: gate-\xff\n", "line 2: not UTF-8", id="not-utf8"),
        pytest.param(b"\xff\xfe" + "cameras: []".encode("utf-16-le"), "line 1: not UTF-8", id="utf16"),
        pytest.param(b"cameras: [" + b"[" * 3000 + b"]" * 3000 + b"]", "nested deeper than 20 levels", id="deep-lists"),
        pytest.param(b"cameras: " + b"{a: " * 3000 + b"1" + b"}" * 3000, "nested deeper than 20", id="deep-maps"),
        pytest.param(b"- " * 3000 + b"x", "nested deeper than 20", id="deep-block"),
        pytest.param(camera_with("    roi: [[0, 0], [.nan, 1], [5, 5]]"), "field roi.1.0: .*finite", id="roi-nan"),
        pytest.param(camera_with("    roi: [[0, 0], [.inf, 1], [5, 5]]"), "field roi.1.0: .*finite", id="roi-inf"),
        pytest.param(camera_with("    roi: [[0, 0], [-.inf, 1], [5, 5]]"), "field roi.1.0: .*finite", id="roi-ninf"),
        pytest.param(camera_with("    sample_fps: .nan"), "field sample_fps: .*finite", id="fps-nan"),
        pytest.param(camera_with("    sample_fps: .inf"), "field sample_fps: .*finite", id="fps-inf"),
        pytest.param(camera_with("    sample_fps: yes"), "field sample_fps: must be a number", id="fps-bool"),
        pytest.param(camera_with("    roi: [[0, 0], [1, 1], [2, 2]]"), "field roi: .*encloses no area", id="roi-line"),
        pytest.param(camera_with("    roi: [[3, 3], [3, 3], [3, 3]]"), "field roi: .*encloses no area", id="roi-point"),
        pytest.param(
            camera_with("    roi: [[0, 0], [100, 100], [100, 0], [0, 100]]"),
            "field roi: .*edges 1 and 3 cross \\(a bow tie\\)",
            id="roi-bow-tie",
        ),  # its lobes' areas cancel: it was said to lie on one line
        pytest.param(
            camera_with("    roi: [[0, 0], [300, 100], [300, 0], [0, 100]]"), "field roi: .*cross", id="roi-bow-tie-2"
        ),
        pytest.param(
            camera_with("    roi: [[0, 0], [1e300, 0], [0, 1e300]]"),
            "field roi.1.0: .*less than or equal to 1000000",
            id="roi-huge",
        ),
        pytest.param(camera_with("    roi: [[0, 0], [true, 0], [0, 1]]"), "field roi: points must be", id="roi-bool"),
        pytest.param(
            camera_with("    id: gate-4"), r"key 'id' repeated in one mapping \(first at line 2\) at line 4,", id="dup"
        ),
        pytest.param(b"cameras: [{id: a, source: x, id: b}]", "key 'id' repeated", id="dup-key-inline"),
        pytest.param(b"cameras: []\ncameras: []\n", r"key 'cameras' repeated .*line 1\) at line 2", id="dup-top-key"),
        pytest.param(b"cameras:\n  - just a string\n", "camera #1: expected a mapping of fields.*got str", id="str"),
        pytest.param(CAMERA.encode() + b"  - 42\n", "camera #2: expected a mapping.*got int", id="int-entry"),
        pytest.param(CAMERA.encode() + b"  -\n", "camera #2: expected a mapping.*got NoneType", id="null-entry"),
        pytest.param(CAMERA.encode() + b"  - [a, b]\n", "camera #2: expected a mapping.*got list", id="list-entry"),
        pytest.param(BILLION_LAUGHS.encode(), r"aliases \(\*l0\) are not allowed", id="billion-laughs"),
        pytest.param(b"base: &b {source: x}\ncameras: [*b]\n", "aliases", id="alias"),
        pytest.param(CAMERA.encode() + b"#" * (1024 * 1024), "larger than 1 MiB", id="oversized"),
        pytest.param(camera_with("    when: 2001-02-30"), "the value as timestamp: day is out", id="date"),
        pytest.param(camera_with("    sample_fps: !!int abc"), "read the value as int at line 4", id="bad-int-tag"),
        pytest.param(camera_with("    loop: !!bool maybe"), "cannot read the value as bool", id="bad-bool-tag"),
        pytest.param(camera_with("    sample_fps: " + "9" * 5000), "as int: Exceeds the limit", id="huge-int"),
        pytest.param(camera_with("    sample_fps: !!int"), "cannot read the value as int", id="empty-int-tag"),
        pytest.param(b"cameras: !!set x\n", "not valid YAML: expected a mapping node", id="set-on-scalar"),
        pytest.param(b"cameras: !!python/object/apply:os.system [ls]\n", "could not determine a constructor", id="py"),
        pytest.param(b"cameras:\n  - ? [a, b]\n    : 1\n", "not valid YAML: found unhashable key", id="list-key"),
        pytest.param(b"cameras: [\x01]\n", "not valid YAML: unacceptable character", id="control-char"),
        pytest.param(b"cameras: [\n", r"not valid YAML: .* at line 2, column 1", id="unclosed"),
        pytest.param(CAMERA.encode() + b"---\n" + CAMERA.encode(), "expected a single document", id="two-documents"),
        pytest.param(b"", "expected a mapping with one key", id="empty"),
    ],
)
def test_malformed_files_are_one_line_config_errors(tmp_path, content, message):
    path = tmp_path / "cameras.yaml"
    path.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=message) as refused:
        load_cameras(path, SETTINGS)
    assert time.monotonic() - started < 10.0  # unguarded, billion laughs takes minutes (2 s flaked under load)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("rtsp//10.0.0.5/stream", r"looks like a malformed rtsp URL: expected rtsp://host/"),
        ("rtsp:/10.0.0.5/stream", "looks like a malformed rtsp URL"),
        ("http:camera.local/mjpeg", "looks like a malformed http URL"),
        ("HTTPS//camera.local/mjpeg", "looks like a malformed https URL"),
        ("rtsps:camera.local", "looks like a malformed rtsps URL"),
        ("ftp://10.0.0.5/clip.mp4", "unsupported URL scheme 'ftp'; supported: rtsp, rtsps, rtmp, http, https, udp"),
        ("file:///videos/gate.mp4", "unsupported URL scheme 'file'"),
        ("rtsp:///stream", r"has no host \(expected rtsp://host/...\)"),
        ("rtsp://admin:hunter2@/stream", "has no host"),
        ("udp://@", r"has no host \(expected udp://host:port or udp://@:port to listen\)"),
        ("rtsp://10.0.0.5:99999/stream", "not a valid URL"),
        ("rtsp://10.0.0.5:abc/stream", "not a valid URL"),
        ("http://[::1/mjpeg", "not a valid URL"),
        (" /videos/gate.mp4", "leading or trailing whitespace"),
        ("/videos/gate\x00.mp4", "contains control characters"),
        ("   ", "source is empty"),
    ],
)
def test_malformed_sources_are_refused(source, message):
    with pytest.raises(ConfigError, match=f"camera 'gate-3': field source: .*{message}"):
        parse_cameras({"cameras": [{**GOOD, "source": source}]}, SETTINGS, "cameras.yaml")


@pytest.mark.parametrize(
    "source",
    ["rtsp//admin:hunter2@10.0.0.5/s1", "rtsp:/admin:hunter2@10.0.0.5/s1", "http:admin:hunter2@cam/mjpeg",
     "ftp://admin:hunter2@10.0.0.5/x", "rtsp://admin:hunter2@/s1", "rtsp://admin:hunter2@10.0.0.5:99999/s1"],
)  # fmt: skip
def test_a_refused_source_never_shows_its_password(source):
    with pytest.raises(ConfigError, match="admin:\\*\\*\\*@") as refused:
        parse_cameras({"cameras": [{**GOOD, "source": source}]}, SETTINGS, "cameras.yaml")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "camera",
    [{"id": "rtsp://admin:hunter2@10.0.0.5:554/a-very-long-stream-path"},  # the URL pasted as the id
     {**GOOD, "rtsp:/admin:hunter2@cam/s1": 1}],  # or as a field name, broken
)  # fmt: skip
def test_a_url_in_the_wrong_place_never_shows_its_password(camera):
    with pytest.raises(ConfigError) as refused:
        parse_cameras({"cameras": [camera]}, SETTINGS, "cameras.yaml")
    assert "hunter2" not in str(refused.value) and "admin:***@" in str(refused.value)


@pytest.mark.parametrize("value", ["rtsp:/admin:hunter2@10.0.0.5/s1", "admin:hunter2@", "hunter2"])
def test_a_badly_tagged_value_is_not_shown_it_may_be_a_password(tmp_path, value):
    path = tmp_path / "cameras.yaml"
    path.write_text(f"cameras:\n  - id: a\n    source: !!float {value}\n")
    with pytest.raises(ConfigError, match="cannot read the value as float at line 3") as refused:
        load_cameras(path, SETTINGS)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "source",
    ["rtsp://10.0.0.5/stream", "RTSP://Admin:pw@Camera.local:554/s1", "http://[::1]:8080/mjpeg", "udp://@:1234",
     "tcp://10.0.0.5:9000", "/videos/gate.mp4", "videos/rtsp_gate.mp4", "rtsp/gate.mp4", "clips/http-01.mp4", "."],
)  # fmt: skip
def test_well_formed_sources_are_accepted(source):
    assert parse_cameras({"cameras": [{**GOOD, "source": source}]}, SETTINGS)[0].source == source


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\xef\xbb\xbf" + CAMERA.encode(), id="byte-order-mark"),
        pytest.param(CAMERA.replace("id: gate-3", "id: &gate gate-3").encode(), id="anchor-without-alias"),
        pytest.param(b"cameras:\n  - <<: {source: /videos/gate.mp4}\n    id: gate-3\n", id="inline-merge-key"),
        pytest.param(camera_with("    roi: [[0, 0], [1280.5, 0], [1280, 720]]"), id="roi"),
    ],
)
def test_files_that_are_strict_but_legal_still_load(tmp_path, content):
    path = tmp_path / "cameras.yaml"
    path.write_bytes(content)
    cameras = load_cameras(path, SETTINGS)
    assert [c.id for c in cameras] == ["gate-3"] and cameras[0].source == "/videos/gate.mp4"


def test_a_folder_or_an_unreadable_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_cameras(tmp_path, SETTINGS)
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "cameras.yaml"
    path.write_text(CAMERA)
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read: Permission denied"):
        load_cameras(path, SETTINGS)


def test_a_read_refused_by_the_system_is_a_config_error(tmp_path, monkeypatch):
    """As for a file without permission, where the tests run as root."""
    path = tmp_path / "cameras.yaml"
    path.write_text(CAMERA)

    real_open = os.open

    def refuse(file: object, *args: object, **kwargs: object) -> int:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ConfigError, match=f"{path}: cannot read: Permission denied"):
        load_cameras(path, SETTINGS)


def test_cameras_reading_one_source_are_named_at_start(tmp_path, redis_url, caplog):
    """A camera entry copied with its source left unchanged read every car twice: two sightings, two
    alerts for one listed car, unseen. Two regions of one view may be meant: said at start, not refused."""
    from alpr.cli import main
    from ingest.cameras import shared_sources
    from tests.helpers import write_clip

    clip = tmp_path / "gate.mp4"
    write_clip(clip, ("KPX4721",))
    (tmp_path / "link.mp4").symlink_to(clip)
    cameras = parse_cameras({"cameras": [
        {"id": "gate", "source": str(clip)}, {"id": "gate-copy", "source": str(tmp_path / "link.mp4")},
        {"id": "lane", "source": "rtsp://10.0.0.5/s1"}, {"id": "lane2", "source": "rtsp://10.0.0.5/s1"},
        {"id": "off", "source": "rtsp://10.0.0.5/s1", "enabled": False}, {"id": "other", "source": "rtsp://10.0.0.6/s1"},
    ]}, SETTINGS)  # fmt: skip
    assert shared_sources(cameras) == [["gate", "gate-copy"], ["lane", "lane2"]]
    path = tmp_path / "cameras.yaml"
    path.write_text(
        f"cameras:\n  - {{id: a, source: {clip}, realtime: false}}\n  - {{id: b, source: {clip}, realtime: false}}\n"
    )
    assert main(["ingest", "--cameras", str(path), "--redis-url", redis_url, "--max-seconds", "1"]) == 0
    assert "cameras a, b read the same source" in caplog.text


def test_every_mistake_of_a_cameras_file_is_said_in_one_run():
    """A file with several mistakes was refused at its first: one run to learn each."""
    raw = {"cameras": [
        {**GOOD, "id": "a", "sample_fps": 0}, {**GOOD, "id": "b", "region": "mars"}, {**GOOD, "id": "c"},
        "gate-9", {**GOOD, "id": "c"}, {**GOOD, "id": "C"},
    ]}  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        parse_cameras(raw, SETTINGS, "cameras.yaml")
    said = str(refused.value)
    assert said.startswith("cameras.yaml: camera 'a': field sample_fps") and "\n" not in said
    for mistake in ("camera 'b': field region: unknown plate region 'mars'", "camera #4: expected a mapping",
                    "repeated: c", "camera ids c and C differ only in case"):  # fmt: skip
        assert mistake in said, mistake


def test_past_twenty_mistakes_the_rest_are_counted():
    with pytest.raises(ConfigError, match=r"camera 'cam-19': field sample_fps[^;]*; and 5 more$") as refused:
        raw = {"cameras": [{**GOOD, "id": f"cam-{n}", "sample_fps": 0} for n in range(25)]}
        parse_cameras(raw, SETTINGS, "cameras.yaml")
    assert "cam-20" not in str(refused.value)


def test_alpr_ingest_names_every_source_that_cannot_work_and_the_file(tmp_path, redis_url, capsys):
    """`source /srv/nope1.mp4 does not exist` named neither the file nor the next camera's missing source."""
    from alpr.cli import main

    path = tmp_path / "cameras.yaml"
    path.write_text(
        "cameras:\n  - {id: a, source: /srv/nope1.mp4}\n  - {id: b, source: /srv/nope2.mp4}\n"
        "  - {id: c, source: rtsp://10.0.0.5/s1, sample_fps: 0}\n  - {id: d, source: /srv/nope3.mp4, enabled: false}\n"
    )
    assert main(["ingest", "--cameras", str(path), "--redis-url", redis_url]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"alpr: error: {path}: camera 'a': source /srv/nope1.mp4 does not exist; camera 'b': source /srv/nope2.mp4"
        " does not exist; camera 'c': field sample_fps: Input should be greater than 0\n"
    )  # a disabled camera's source is not opened


IN_FORCE = Settings.load({"ALPR_OCR_REGION": "eu", "ALPR_SAMPLE_FPS": "10"})
"""Settings that name another plate region and sampling rate than the defaults (us, 5 frames/s)."""


def test_a_camera_without_its_own_rate_or_region_takes_alpr_sample_fps_and_ocr_region():
    """`alpr run` samples at ALPR_SAMPLE_FPS and reads with ALPR_OCR_REGION's formats; a cameras file's entry
    that named neither was sampled at 5 frames/s and read as "us" whatever the two said (a review)."""
    raw = {"cameras": [{"id": "plain", "source": "rtsp://10.0.0.5/s1"},
                       {"id": "own", "source": "rtsp://10.0.0.5/s2", "sample_fps": 2, "region": "br"}]}  # fmt: skip
    plain, own = parse_cameras(raw, IN_FORCE)
    assert (plain.sample_fps, plain.region) == (10.0, "eu")
    assert (own.sample_fps, own.region) == (2.0, "br")  # the camera's own still wins
    assert [(c.sample_fps, c.region) for c in parse_cameras(raw, SETTINGS)] == [(5.0, "us"), (2.0, "br")]


def test_alpr_sample_fps_past_a_cameras_bound_is_refused_naming_the_setting():
    """ALPR_SAMPLE_FPS goes to 240 (`alpr run`), a camera to 60: a camera that takes it is refused, and the
    message names the variable, which its entry does not."""
    fast = Settings.load({"ALPR_SAMPLE_FPS": "100"})
    raw = {"cameras": [{"id": "plain", "source": "rtsp://10.0.0.5/s1"}]}
    with pytest.raises(ConfigError) as refused:
        parse_cameras(raw, fast, "cameras.yaml")
    assert str(refused.value) == (
        "cameras.yaml: camera 'plain': field sample_fps (ALPR_SAMPLE_FPS 100.0): Input should be less than or"
        " equal to 60"
    )
    assert parse_cameras({"cameras": [{**raw["cameras"][0], "sample_fps": 25}]}, fast)[0].sample_fps == 25


def test_alpr_ingest_samples_and_tags_a_camera_as_the_settings_in_force_say_and_status_shows_them(
    tmp_path, redis_url, capsys
):
    """The repro: ALPR_OCR_REGION=eu ALPR_SAMPLE_FPS=10 `alpr ingest` of a camera naming neither queued
    every frame as "us", 0.2 s apart in the footage (5 frames/s), while `alpr status --json` showed the
    ingest pool with ALPR_SAMPLE_FPS 10 in force (and no plate region). A camera's own rate and region
    still win; status shows what the node samples and tags by."""
    import json
    import shutil
    import signal
    import statistics

    from alpr.cli import main
    from common.queues import connect_redis
    from common.role_settings import role_settings
    from tests.helpers import alpr_process, wait_for, write_cameras, write_clip
    from tests.ingest.helpers import queued_frames

    clip = tmp_path / "gate.mp4"
    write_clip(clip, ("KPX4721",))  # 10 frames/s
    shutil.copy(clip, tmp_path / "lane.mp4")
    cameras = write_cameras(tmp_path / "cameras.yaml", [
        {"id": "gate", "source": str(clip), "loop": True},
        {"id": "lane", "source": str(tmp_path / "lane.mp4"), "loop": True, "sample_fps": 2, "region": "br"},
    ])  # fmt: skip
    variables = {"ALPR_OCR_REGION": "eu", "ALPR_SAMPLE_FPS": "10"}
    chain = {"ALPR_REDIS_URL": redis_url, "ALPR_LEDGER_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_")} | variables | chain
    connection = connect_redis(redis_url)

    def by_camera() -> dict[str, list]:
        frames: dict[str, list] = {"gate": [], "lane": []}
        for frame in queued_frames(connection):
            frames[frame.camera_id].append(frame)
        return frames

    node = alpr_process(env, ["ingest", "--cameras", str(cameras), "--max-seconds", "60"], tmp_path / "ingest.log")
    try:
        wait_for(lambda: len(by_camera()["lane"]) >= 3 or node.poll() is not None, 60, "frames of both cameras")
        capsys.readouterr()
        assert main(["status", "--json", "--redis-url", redis_url]) == 0
        ingest = json.loads(capsys.readouterr().out)["pools"]["ingest"]
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
    assert node.returncode == 0, (tmp_path / "ingest.log").read_text()
    for camera, region, step_s in (("gate", "eu", 0.1), ("lane", "br", 0.5)):
        frames = sorted(by_camera()[camera], key=lambda frame: frame.seq)
        assert len(frames) >= 3 and {frame.region for frame in frames} == {region}, camera
        steps = [round(b.source_time_s - a.source_time_s, 3) for a, b in zip(frames, frames[1:], strict=False)]
        forward = [step for step in steps if step > 0]  # (a looped file starts its time again)
        assert min(forward) == pytest.approx(step_s, abs=0.01), (camera, steps)
        assert statistics.median(forward) == pytest.approx(step_s, abs=0.01), (camera, steps)

    (group,) = ingest["fingerprints"].values()
    assert group["settings"] == role_settings(Settings.load(variables), "ingest").values
    assert group["settings"]["ocr_region"] == "eu" and group["settings"]["sample_fps"] == 10.0


@pytest.mark.parametrize(
    ("source", "secrets"),
    [
        ("rtsp://admin:1234/5678@10.0.0.5:554/x", ["admin", "1234", "5678"]),
        ("http://admin:4242#k@10.0.0.5/snap.jpg", ["admin", "4242"]),
        ("rtsp://1234/abcd@10.0.0.5/live", ["1234", "abcd"]),
        ("http://admin:12?ab@10.0.0.5/x", ["admin", "12?ab"]),
        ("rtsp://admin:p@ss/w@10.0.0.5/live", ["admin", "p@ss"]),
        # an '@' meant in the path or query of a URL without credentials cannot be told from one: %40
        ("http://10.0.0.5/snap.jpg?notify=ops@example.com", ["ops"]),
    ],
)  # fmt: skip
def test_a_source_with_an_at_sign_after_its_host_is_refused_without_showing_it(tmp_path, source, secrets):
    """A password typed raw with a '/', '#' or '?' after 1-5 digits ends the host early: the camera was
    accepted (host `admin`, port 1234), never connected, and `rtsp://admin:1234` logged (a review)."""
    path = tmp_path / "cameras.yaml"
    path.write_text(f'cameras:\n  - id: gate-3\n    source: "{source}"\n')
    with pytest.raises(ConfigError, match="camera 'gate-3': field source: source [a-z]+://… has an '@' after its host"
                       r" \(in its path, query or fragment\): a '/', '\?' or '#' in the user name or password must be"
                       r" written %2F, %3F or %23 \(an '@' in the path or query, %40\)") as refused:  # fmt: skip
        load_cameras(path, SETTINGS)
    assert not any(secret in str(refused.value) for secret in secrets), refused.value


@pytest.mark.parametrize(
    "source",
    ["rtsp://admin:1234%2F5678@10.0.0.5:554/x", "http://admin:4242%23k@10.0.0.5/snap.jpg",
     "rtsp://admin:12%3Fab@10.0.0.5/x", "rtsp://admin:p@ss@10.0.0.5/live", "rtsp://ad@min:pw@10.0.0.5/live",
     "http://10.0.0.5/snap.jpg?notify=ops%40example.com"],
)  # fmt: skip
def test_a_source_with_its_credentials_percent_encoded_is_accepted(source):
    assert parse_cameras({"cameras": [{**GOOD, "source": source}]}, SETTINGS)[0].source == source
