"""What a camera's claim tells a reader of the queues' Redis about its source (ingest/camera_fingerprint.py):
other settings are told apart, and a camera's password cannot be tested offline against the digest."""

from __future__ import annotations

import hashlib
import json

from ingest.camera_fingerprint import camera_fingerprint, differing
from ingest.cameras import CameraConfig

SOURCE = "rtsp://admin:hunter2@10.0.0.5:554/Streaming/Channels/101"
GUESSES = ["admin", "12345", "password", "hunter2", "letmein"]


def published_source(fingerprint: str) -> str:
    return str(json.loads(fingerprint)["source"])


def guessed_digests(template: str) -> set[str]:
    """What a reader of Redis computes for each guessed password: the plain digest of the whole URL."""
    return {hashlib.sha256(template.format(pw).encode()).hexdigest()[:24] for pw in GUESSES}


def test_without_a_job_key_a_cameras_password_cannot_be_guessed_from_its_claim():
    published = published_source(camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE)))
    assert published not in guessed_digests("rtsp://admin:{}@10.0.0.5:554/Streaming/Channels/101")
    # the password alone changed is the same camera to the comparison; another host or path is not
    same = camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE.replace("hunter2", "rotated")))
    assert differing(camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE)), same) == []
    elsewhere = camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE.replace("10.0.0.5", "10.0.0.6")))
    assert differing(same, elsewhere) == ["source"]


def test_with_a_job_key_every_change_of_the_source_is_told_and_the_digest_is_keyed():
    mine = camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE), key="k" * 32)
    rotated = camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE.replace("hunter2", "rotated")), "k" * 32)
    assert differing(mine, rotated) == ["source"]
    assert published_source(mine) not in guessed_digests("rtsp://admin:{}@10.0.0.5:554/Streaming/Channels/101")
    assert published_source(mine) != published_source(camera_fingerprint(CameraConfig(id="cam-1", source=SOURCE)))


def fingerprint_of_the_version_before(camera: CameraConfig) -> str:
    """A camera's fingerprint as `alpr ingest` wrote it before the source's digest was masked (written out
    here, not taken from the code under test): a plain digest of the whole URL, and no scheme named."""
    roi = None if camera.roi is None else hashlib.sha256(json.dumps(camera.roi).encode()).hexdigest()[:16]
    fields = {"source": hashlib.sha256(camera.source.strip().encode()).hexdigest()[:24], "roi": roi,
              "sample_fps": camera.sample_fps, "region": camera.region, "enabled": camera.enabled}  # fmt: skip
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def test_a_fingerprint_of_another_scheme_leaves_the_source_unknown_and_compares_the_rest():
    """A review: the digest of a source without a job key changed (masked URL), so the first node of the new
    version to claim a camera after one of the old found "settings differ: source" and counted
    alpr_camera_settings_changed_total (AlprCameraSettingsChanged fired at every upgrade, and at a rollback).
    Fingerprints name their digest's scheme: two of different schemes (an older one names none) leave the
    source unknown, not differing; every other setting is still compared."""
    camera = CameraConfig(id="cam-1", source=SOURCE)
    older = fingerprint_of_the_version_before(camera)
    assert differing(camera_fingerprint(camera), older) == differing(older, camera_fingerprint(camera)) == []
    assert differing(camera_fingerprint(camera, "k" * 32), older) == []  # keyed: its scheme named too
    faster = fingerprint_of_the_version_before(CameraConfig(id="cam-1", source=SOURCE, sample_fps=2))
    assert differing(camera_fingerprint(camera), faster) == ["sample_fps"]
    # one scheme: compared as before (a key on one node and none on the other: two schemes, unknown)
    elsewhere = CameraConfig(id="cam-1", source=SOURCE.replace("10.0.0.5", "10.0.0.6"))
    assert differing(camera_fingerprint(camera), camera_fingerprint(elsewhere)) == ["source"]
    assert differing(camera_fingerprint(camera, "k" * 32), camera_fingerprint(elsewhere, "k" * 32)) == ["source"]
    assert differing(camera_fingerprint(camera, "k" * 32), camera_fingerprint(camera)) == []


def test_a_camera_taken_from_a_node_of_the_version_before_counts_no_settings_change(redis_url, tmp_path):
    """On a private Redis, through a real round of claims and the node's metric: the holder record an older
    node left (its fingerprint of the older scheme, released at its upgrade) is no change of settings."""
    import time

    from common.config import Settings
    from common.metrics import Metrics
    from common.queues import connect_redis
    from ingest.claims import HOLDER_PREFIX
    from ingest.node import IngestNode

    connection = connect_redis(redis_url)
    camera = CameraConfig(id="gate", source="rtsp://admin:hunter2@127.0.0.1:9/stream")  # refused at once
    connection.hset(HOLDER_PREFIX + "gate", mapping={"node": "node-of-the-version-before", "released": "1",
                                                     "settings": fingerprint_of_the_version_before(camera),
                                                     "renewed": f"{time.time() - 5:.3f}"})  # fmt: skip
    metrics = Metrics()
    node = IngestNode([camera], Settings.load({}, redis_url=redis_url), connection, connection, metrics, None)
    found = node.claims.claim()
    assert found is not None and [(c.camera, c.previous, c.settings_differ) for c in found.won] == [
        ("gate", "node-of-the-version-before", [])
    ]
    node.claimed(found)
    node.stop.set()
    for thread in node.threads:
        thread.join(10)
    assert metrics.registry.get_sample_value("alpr_camera_settings_changed_total", {"camera": "gate"}) in (None, 0)


def test_a_node_standing_by_for_a_camera_its_live_holder_gives_other_settings_shows_it(redis_url):
    """A review: one edit of a cameras file, the node restarted, paged once per camera (21 warnings), as the
    change was told at the claim alone. A change nobody made is two live nodes whose files disagree: the one
    standing by shows it (alpr_camera_settings_differ, AlprCameraSettingsChanged) for as long as they do; a
    node agreeing with the holder shows 0. On a private Redis, through real rounds of claims."""
    from common.config import Settings
    from common.metrics import Metrics
    from common.queues import connect_redis
    from ingest.node import IngestNode

    connection = connect_redis(redis_url)
    settings = Settings.load({}, redis_url=redis_url)
    gate = CameraConfig(id="gate", source="rtsp://127.0.0.1:9/stream")  # refused at once
    holder = IngestNode([gate], settings, connection, connection, Metrics(), None)
    nodes = [holder]
    try:
        won = holder.claims.claim()
        assert won is not None and [c.camera for c in won.won] == ["gate"]
        shown = {}
        slower = CameraConfig(id="gate", source=gate.source, sample_fps=2)  # another cameras file's gate
        for name, camera in [("agreeing", gate), ("disagreeing", slower)]:
            metrics = Metrics()
            standby = IngestNode([camera], settings, connection, connection, metrics, None)
            nodes.append(standby)
            found = standby.claims.claim()
            assert found is not None and not found.won and list(found.held) == ["gate"]
            standby.claimed(found)
            shown[name] = metrics.registry.get_sample_value("alpr_camera_settings_differ", {"camera": "gate"})
    finally:
        for node in nodes:
            node.stop.set()
            for thread in node.threads:
                thread.join(10)
    assert shown == {"agreeing": 0, "disagreeing": 1}


def test_footage_is_compared_but_an_older_nodes_fingerprint_without_it_differs_not():
    """`footage` tells a live camera from recorded video at one URL: compared (an older fingerprint named
    no such setting). A node of the release before publishes no `footage`: nothing differs for it, either
    way round, while the other settings are still compared."""
    source = "http://10.0.0.40/exports/2026-11-30.mp4"
    live, footage = CameraConfig(id="cam-1", source=source), CameraConfig(id="cam-1", source=source, footage=True)
    assert json.loads(camera_fingerprint(footage))["footage"] is True
    assert differing(camera_fingerprint(live), camera_fingerprint(footage)) == ["footage"]
    assert differing(camera_fingerprint(footage), camera_fingerprint(footage)) == []
    before = json.loads(camera_fingerprint(live))
    del before["footage"]  # a fingerprint of the release before: every field but footage
    older = json.dumps(before, sort_keys=True, separators=(",", ":"))
    for mine in (live, footage):
        assert differing(camera_fingerprint(mine), older) == differing(older, camera_fingerprint(mine)) == []
    slower = json.loads(older) | {"sample_fps": 2.0}
    assert differing(camera_fingerprint(footage), json.dumps(slower)) == ["sample_fps"]
