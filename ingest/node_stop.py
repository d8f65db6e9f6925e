"""What stops an ingest node's camera threads: the node's stop (`NodeStop`, the node's threading.Event),
which stops every camera, and each camera thread's own (`CameraStop`, made by `NodeStop.camera`), which
`NodeStop.lose` sets apart when another node has taken that camera (its claim lapsed: ingest/claims.py).
One stop for all, a node that lost one camera stopped whole: its other cameras dark until an operator
restarted it."""

from __future__ import annotations

import threading


class CameraStop(threading.Event):
    """One camera thread's stop: set by its node's stop, or apart when the camera is lost (`lost`)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = False
        """Another node took the camera: its state, watermark and claim are that node's now."""


class NodeStop(threading.Event):
    """The node's stop; setting it sets every camera's stop too."""

    def __init__(self) -> None:
        super().__init__()
        self.cameras: dict[str, CameraStop] = {}  # camera id -> the stop of its latest thread

    def set(self) -> None:
        super().set()
        for camera in list(self.cameras.values()):
            camera.set()

    def camera(self, camera_id: str) -> CameraStop:
        """The stop of a new thread of the camera (set already when the node has stopped)."""
        stop = CameraStop()
        self.cameras[camera_id] = stop  # before the check: a node stopping meanwhile sets it either way
        if self.is_set():
            stop.set()
        return stop

    def lose(self, camera_id: str) -> None:
        """Stop the camera's thread alone: another node samples the camera now."""
        if (stop := self.cameras.get(camera_id)) is not None:
            stop.lost = True
            stop.set()
