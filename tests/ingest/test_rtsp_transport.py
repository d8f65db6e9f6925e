"""An RTSP camera is read over its RTSP connection (TCP) only, unless the operator chooses UDP for it
(ingest/ffmpeg_open.py). TCP first, as before, fell back to RTP over UDP where a camera refused TCP: any
host that reached the node's RTP port had its frames ingested as the camera's, and a camera naming
another address in its answer had the node send UDP there (a review). Where UDP is chosen, packets from
any address but the camera's are dropped."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import redis

from alpr.cli import main
from common.config import Settings
from common.errors import ConfigError, InputError
from common.metrics import Metrics
from ingest import camera_sampling
from ingest.cameras import CameraConfig, parse_cameras
from ingest.frame_source import FrameSource
from ingest.node import IngestNode
from ingest.reconnect import SourceKeeper
from ingest.video_source import VideoSource
from tests.ingest.rtsp_camera import inject_rtp, labelled_image, rtsp_camera

CAMERA_IMAGE = labelled_image("GATE", 60)
INJECTED_IMAGE = labelled_image("FAKE 123", 0)
TIMEOUT_MS = 4000


def difference(image: np.ndarray, other: np.ndarray) -> float:
    return float(np.abs(image.astype(int) - other.astype(int)).mean())


@contextmanager
def udp_listener(host: str = "127.0.0.3") -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """A UDP service on another address of the node's network (a cloud's metadata service, say); yields
    its port and the senders of the datagrams it got."""
    got: list[tuple[str, int]] = []
    done = threading.Event()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((host, 0))
    listener.settimeout(0.1)

    def receive() -> None:
        while not done.is_set():
            try:
                got.append(listener.recvfrom(65536)[1])
            except OSError:
                continue

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], got
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_an_rtsp_camera_is_read_over_tcp_and_one_refusing_tcp_not_over_udp_where_anyone_injects_frames():
    """The camera that takes TCP is read over it; the one that answers the TCP SETUP 461 (as many do) was
    read over UDP, and a third host's packets to the node's RTP port were ingested as its frames (a review:
    'FAKE 123', mean difference 0.3). Now it is not read at all: no SETUP but TCP's."""
    with rtsp_camera(CAMERA_IMAGE, udp=False) as camera:
        source = VideoSource(camera.url, 5.0, timeout_ms=TIMEOUT_MS)
        frame = next(source.frames())
        source.capture.release()
    assert difference(frame.image, CAMERA_IMAGE) < 10
    assert camera.transports and all("TCP" in transport for transport in camera.transports)

    with rtsp_camera(CAMERA_IMAGE, tcp=False) as camera, inject_rtp(INJECTED_IMAGE, camera):
        ingested: list[float] = []
        with pytest.raises(InputError, match="cannot connect to stream"):
            source = VideoSource(camera.url, 5.0, timeout_ms=TIMEOUT_MS)
            for frame in source.frames():
                ingested.append(difference(frame.image, INJECTED_IMAGE))
                break
            source.capture.release()
    assert ingested == [], f"the injected frames were ingested (mean difference {ingested})"
    assert camera.transports and all("TCP" in transport for transport in camera.transports)
    assert camera.client_ports == []


@pytest.mark.parametrize("run", ["ingest", "alpr run"])
def test_a_camera_cannot_send_the_node_to_another_address_over_udp(run, tmp_path):
    """A camera answering the TCP SETUP 461 and the UDP one with `source=` another host had the node send
    it UDP packets (a review: one to 127.0.0.3, from `open_source` and `alpr run` alike). Neither sends any
    now: nothing but a TCP SETUP is asked."""
    with udp_listener() as (port, got), rtsp_camera(CAMERA_IMAGE, tcp=False, source="127.0.0.3",
                                                     server_port=port) as camera:  # fmt: skip
        if run == "ingest":
            with pytest.raises(InputError, match="cannot connect to stream"):
                VideoSource(camera.url, 5.0, timeout_ms=TIMEOUT_MS).capture.release()
        else:
            assert main(["run", camera.url, "--no-progress", "--out", str(tmp_path / "out")]) == 2
        time.sleep(0.5)
    assert got == [], f"the node sent {len(got)} datagrams to the address the camera named"
    assert camera.transports and all("TCP" in transport for transport in camera.transports)


def test_udp_chosen_for_a_camera_takes_the_cameras_packets_only():
    """`rtsp_transport: udp` (the cameras file; `alpr run --rtsp-transport udp`) reads a camera that refuses
    TCP, with filter_src: another host's packets to the node's RTP port, sent faster than the camera's, are
    dropped and every frame read is the camera's. Its keeper reopens it so too."""
    images: list[np.ndarray] = []
    stop = threading.Event()

    def read_pass(source: FrameSource) -> None:
        for frame in source.frames():
            images.append(frame.image)
            if len(images) >= 5:
                stop.set()
                return

    with rtsp_camera(CAMERA_IMAGE, tcp=False) as camera, inject_rtp(INJECTED_IMAGE, camera) as injected:
        keeper = SourceKeeper(camera.url, 5.0, "gate", stop, rtsp_transport="udp")
        give_up = threading.Timer(30, stop.set)  # (a keeper of a camera it cannot read retries until stopped)
        give_up.daemon = True
        give_up.start()
        assert keeper.run(read_pass) == "ended"
        give_up.cancel()
    assert injected[0] > 0  # the other host did send
    assert len(images) == 5
    assert all(difference(image, CAMERA_IMAGE) < 10 for image in images), [
        (round(difference(image, CAMERA_IMAGE), 1), round(difference(image, INJECTED_IMAGE), 1)) for image in images
    ]
    assert camera.client_ports and not any("TCP" in transport for transport in camera.transports)


def test_the_cameras_file_chooses_udp_per_camera_and_the_node_opens_it_so(monkeypatch):
    """A camera's `rtsp_transport` reaches the keeper that opens it (the node's); TCP where it is not set."""
    opened: dict[str, str] = {}

    class Keeper:
        def __init__(self, uri: str, *args: object, rtsp_transport: str = "?", **kwargs: object) -> None:
            opened[uri] = rtsp_transport

        def run(self, read_pass: object) -> str:
            return "ended"

    monkeypatch.setattr(camera_sampling, "SourceKeeper", Keeper)
    cameras = [CameraConfig(id="udp", source="rtsp://cam-1/live", rtsp_transport="udp"),
               CameraConfig(id="tcp", source="rtsp://cam-2/live")]  # fmt: skip
    unused = redis.Redis(port=1)
    node = IngestNode(cameras, Settings.load({}), unused, unused, Metrics(), None)
    for camera in cameras:
        node.sample_camera(camera)
    assert opened == {"rtsp://cam-1/live": "udp", "rtsp://cam-2/live": "tcp"}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [({"source": "rtsp://cam/live", "rtsp_transport": "udp"}, None),
     ({"source": "rtsps://cam/live", "rtsp_transport": "tcp"}, None),
     ({"source": "http://cam/video.mjpg", "rtsp_transport": "udp"}, "field rtsp_transport: udp is for an rtsp://"),
     ({"source": "rtsp://cam/live", "rtsp_transport": "UDP"}, "field rtsp_transport: Input should be 'tcp' or 'udp'"),
     ({"source": "rtsp://cam/live", "rtsp_transport": "udp_multicast"}, "field rtsp_transport: Input should be")],
)  # fmt: skip
def test_a_cameras_transport_is_checked_with_the_rest_of_the_file(entry, problem):
    if problem is None:
        (camera,) = parse_cameras({"cameras": [{"id": "gate", **entry}]}, Settings.load({}))
        assert camera.rtsp_transport == entry["rtsp_transport"]
    else:
        with pytest.raises(ConfigError, match=re.escape(f"camera 'gate': {problem}")):
            parse_cameras({"cameras": [{"id": "gate", **entry}]}, Settings.load({}))
