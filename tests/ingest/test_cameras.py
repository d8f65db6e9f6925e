import pytest

from common.errors import ConfigError
from ingest.cameras import load_cameras, parse_cameras

GOOD = {"id": "gate-3", "source": "rtsp://10.0.0.5/stream", "sample_fps": 4, "region": "eu",
        "roi": [[0, 0], [100, 0], [100, 80]]}  # fmt: skip


def test_a_valid_file_loads(tmp_path):
    path = tmp_path / "cameras.yaml"
    path.write_text(
        "cameras:\n  - id: gate-3\n    source: /videos/gate.mp4\n  - id: gate-4\n    source: x\n    enabled: false\n"
    )
    cameras = load_cameras(path)
    assert [c.id for c in cameras] == ["gate-3", "gate-4"] and cameras[0].region == "us" and not cameras[1].enabled


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cameras": [{**GOOD, "sample_fps": 0}]}, "camera 'gate-3': field sample_fps"),
        ({"cameras": [{**GOOD, "regoin": "eu"}]}, "camera 'gate-3': field regoin: Extra inputs are not permitted"),
        ({"cameras": [{**GOOD, "region": "mars"}]}, "camera 'gate-3': field region: .*unknown plate region 'mars'"),
        ({"cameras": [{**GOOD, "roi": [[0, 0], [1, 1]]}]}, "camera 'gate-3': field roi"),
        ({"cameras": [{**GOOD, "id": "bad id!"}]}, "camera 'bad id!': field id"),
        ({"cameras": [{"id": "cam-9"}]}, "camera 'cam-9': field source: Field required"),
        ({"cameras": [GOOD, GOOD]}, "camera ids must be unique; repeated: gate-3"),
        ({"cameras": [{**GOOD, "enabled": False}]}, "no enabled camera"),
        ({"camera": [GOOD]}, "expected a mapping with one key, `cameras`"),
        ([GOOD], "expected a mapping"),
    ],
)
def test_errors_name_the_camera_and_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_cameras(raw, "cameras.yaml")


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_cameras(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_cameras(tmp_path / "bad.yaml")
