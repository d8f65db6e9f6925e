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
