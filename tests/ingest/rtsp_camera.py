"""An RTSP camera for the tests, in plain Python (tests/ingest/test_rtsp_transport.py): it serves a JPEG
as RTP/JPEG (RFC 2435) over its RTSP connection or over UDP, answers a SETUP of a transport it does not
take with 461 (as many cameras refuse TCP), and may name another address as its packets' source; and a
host of the network that sends RTP packets of its own to the node (`inject_rtp`)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import cv2
import numpy as np

SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 26\r\na=control:track1\r\n"
)
"""One video track of RTP/JPEG (payload type 26)."""

FRAME_INTERVAL_S = 0.1
"""The camera's frame interval (10 frames/s)."""


def labelled_image(text: str, grey: int) -> np.ndarray:
    """A 320x240 frame of one grey with `text` on it: the camera's, or an injected one."""
    image = np.full((240, 320, 3), grey, np.uint8)
    cv2.putText(image, text, (20, 140), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 5)
    return image


def rtp_jpeg_packets(image: np.ndarray, sequence: int, timestamp: int, ssrc: int) -> list[bytes]:
    """RFC 2435 packets of one baseline 4:2:0 JPEG of `image` (OpenCV's encoder: the standard Huffman
    tables, so only the quantisation tables travel, in the first packet)."""
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    tables, at = [], 2
    while True:
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        segment = jpeg[at + 4 : at + 2 + length]
        if marker == 0xDB:  # quantisation tables: a precision/id byte and 64 values each
            while segment:
                tables.append(segment[1:65])
                segment = segment[65:]
        if marker == 0xDA:  # start of scan: the entropy-coded data follows, to the end marker
            scan = jpeg[at + 2 + length : -2]
            break
        at += 2 + length
    height, width = image.shape[:2]
    quantisation = bytes([0, 0]) + struct.pack(">H", 64 * len(tables)) + b"".join(tables)
    packets, offset = [], 0
    while offset < len(scan):
        chunk = scan[offset : offset + 1200]
        last = offset + len(chunk) >= len(scan)
        header = struct.pack(">BBHII", 0x80, (0x80 if last else 0) | 26, sequence & 0xFFFF, timestamp, ssrc)
        jpeg_header = struct.pack(">I", offset & 0xFFFFFF) + bytes([1, 255, width // 8, height // 8])
        packets.append(header + jpeg_header + (quantisation if offset == 0 else b"") + chunk)
        offset += len(chunk)
        sequence += 1
    return packets


@dataclass
class RtspCamera:
    """What the camera saw: each request's first line, each SETUP's Transport, the RTP ports the node
    asked UDP packets on; `url` is its stream's."""

    url: str
    requests: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)
    client_ports: list[int] = field(default_factory=list)


def udp_sender(rtp: socket.socket, address: tuple[str, int]) -> Callable[[bytes], object]:
    """What sends a packet from `rtp` to `address`."""
    return lambda packet: rtp.sendto(packet, address)


@dataclass
class Session:
    """One RTSP connection's state: the transport its SETUP was answered with, and its RTP socket (UDP)."""

    connection: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    chosen: str = ""
    rtp: socket.socket | None = None

    def send(self, data: bytes) -> None:
        with self.lock:
            self.connection.sendall(data)

    def interleaved(self, packet: bytes) -> None:
        self.send(b"$\x00" + struct.pack(">H", len(packet)) + packet)


@dataclass
class CameraServer:
    """The camera's RTSP server (`rtsp_camera`)."""

    image: np.ndarray
    tcp: bool
    udp: bool
    source: str | None
    server_port: int | None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RtspCamera:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.1)
        self.camera = RtspCamera(f"rtsp://127.0.0.1:{self.server.getsockname()[1]}/live")
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()
        return self.camera

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.server.close()

    def accept(self) -> None:
        while not self.done.is_set():
            try:
                connection = self.server.accept()[0]
            except OSError:  # the timeout, or the socket closed
                continue
            threading.Thread(target=self.serve, args=(Session(connection),), daemon=True).start()

    def stream(self, send: Callable[[bytes], object]) -> None:
        """Send the image's packets with `send` every frame interval until the camera stops."""
        sequence = 1
        for frame in range(100_000):
            if self.done.is_set():
                return
            packets = rtp_jpeg_packets(self.image, sequence, frame * 9000, 0x1234)
            sequence += len(packets)
            try:
                for packet in packets:
                    send(packet)
            except OSError:
                return
            time.sleep(FRAME_INTERVAL_S)

    def serve(self, session: Session) -> None:
        buffer = b""
        with session.connection:
            session.connection.settimeout(0.2)
            while not self.done.is_set():
                try:
                    data = session.connection.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buffer = self.answer_requests(session, buffer + data)
        if session.rtp is not None:
            session.rtp.close()

    def answer_requests(self, session: Session, buffer: bytes) -> bytes:
        """Answer each whole request in `buffer` (passing over the node's interleaved RTCP); the rest."""
        while True:
            if buffer.startswith(b"$"):
                if len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">H", buffer[2:4])[0]:
                    return buffer
                buffer = buffer[4 + struct.unpack(">H", buffer[2:4])[0] :]
                continue
            if b"\r\n\r\n" not in buffer:
                return buffer
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            self.camera.requests.append(lines[0])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            method, cseq = lines[0].split(" ")[0], headers.get("cseq", "0")
            status, more, body = self.answer(session, method, headers.get("transport", ""))
            session.send(f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{more}\r\n{body}".encode())
            if method == "PLAY" and session.chosen == "tcp":
                threading.Thread(target=self.stream, args=(session.interleaved,), daemon=True).start()
            elif method == "PLAY" and session.chosen == "udp" and session.rtp is not None:
                send = udp_sender(session.rtp, ("127.0.0.1", self.camera.client_ports[-1]))
                threading.Thread(target=self.stream, args=(send,), daemon=True).start()

    def answer(self, session: Session, method: str, asked: str) -> tuple[str, str, str]:
        """A request's status, headers (each ending CRLF) and body."""
        if method == "OPTIONS":
            return "200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n", ""
        if method == "DESCRIBE":
            headers = f"Content-Base: {self.camera.url}/\r\nContent-Type: application/sdp\r\n"
            return "200 OK", f"{headers}Content-Length: {len(SDP)}\r\n", SDP
        if method == "SETUP":
            self.camera.transports.append(asked)
            if "TCP" in asked and self.tcp:
                session.chosen = "tcp"
                return "200 OK", "Session: 77\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n", ""
            if "TCP" not in asked and self.udp:
                session.chosen = "udp"
                ports = asked.split("client_port=")[1].split(";")[0]
                self.camera.client_ports.append(int(ports.split("-")[0]))
                session.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                session.rtp.bind(("127.0.0.1", 0))
                own = self.server_port or session.rtp.getsockname()[1]
                named = f";source={self.source}" if self.source else ""
                transport = f"RTP/AVP/UDP;unicast;client_port={ports};server_port={own}-{own + 1}{named}"
                return "200 OK", f"Session: 77\r\nTransport: {transport}\r\n", ""
            return "461 Unsupported Transport", "", ""
        if method == "PLAY":
            return "200 OK", "Session: 77\r\nRange: npt=0.000-\r\n", ""
        return "200 OK", "Session: 77\r\n", ""


@contextmanager
def rtsp_camera(
    image: np.ndarray, tcp: bool = True, udp: bool = True, source: str | None = None, server_port: int | None = None
) -> Iterator[RtspCamera]:
    """A camera serving `image` at 10 frames/s over the transports it takes (`tcp`: interleaved in its RTSP
    connection; `udp`: RTP from its own UDP port, or `server_port`), answering a SETUP of another 461. Its
    UDP SETUP answer names `source` as its packets' source where given (any address, as a hostile camera
    may). Yields what it saw."""
    server = CameraServer(image, tcp, udp, source, server_port)
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def inject_rtp(image: np.ndarray, camera: RtspCamera, host: str = "127.0.0.5") -> Iterator[list[int]]:
    """Another host of the network (`host`, not the camera's address) sending RTP/JPEG packets of `image`
    to each RTP port the node asks the camera for, faster than the camera sends; yields the count sent."""
    sent, done = [0], threading.Event()

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((host, 0))
            sequence = 1
            for frame in range(100_000):
                if done.wait(FRAME_INTERVAL_S / 4):
                    return
                for port in list(camera.client_ports):
                    packets = rtp_jpeg_packets(image, sequence, frame * 2250, 0x1234)
                    sequence += len(packets)
                    for packet in packets:
                        with suppress(OSError):
                            sender.sendto(packet, ("127.0.0.1", port))
                            sent[0] += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        done.set()
        thread.join(5)
