"""Footage cut short whose first frame tells nothing (it does not decode, or its reader dies grabbing it as the
footage is reopened) is read on from the frame reached, as footage whose first frame matches: taken for other
footage, such a file was read from its start under new frame ids at every reopening, for ever, and one whose
reader died at that first grab was failed for good, the rest unread (a review). Real capture children, killed."""

import os
import signal
import threading
import time
from contextlib import suppress
from pathlib import Path

from common.backoff import Backoff
from ingest.capture_process import IsolatedCapture
from ingest.reconnect import SourceKeeper
from tests.ingest.test_footage_cut_short import write_avi


def children_running(module: str) -> list[int]:
    """This process's capture children running `module`, by their command lines."""
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            with suppress(OSError):
                if module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
    return pids


def passes_read(clip: Path, module: str, kill_at: int, every_pass: bool) -> tuple[str, list[list[int]], list[str]]:
    """The keeper's end, each pass's frames read and the camera's states, its reader killed at frame `kill_at`
    (on the first pass, or `every_pass`)."""
    stop, passes, states = threading.Event(), [], []

    def read_pass(source) -> None:  # type: ignore[no-untyped-def]
        got = []
        for frame in source.frames():
            got.append(frame.index)
            if frame.index == kill_at and (every_pass or not passes):
                for pid in children_running(module):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.3)
        passes.append(got)
        if len(passes) >= 8:
            stop.set()

    keeper = SourceKeeper(str(clip), 10.0, "cam", stop, backoff=Backoff(0.01, 0.05),
                          on_state=lambda state, _: states.append(state))  # fmt: skip
    return keeper.run(read_pass), passes, states


def test_footage_whose_first_frame_does_not_decode_is_read_on_not_read_again(tmp_path, monkeypatch):
    module = "tests.ingest.faulty_capture_child"
    monkeypatch.setattr(IsolatedCapture, "child_module", module)
    monkeypatch.setenv("ALPR_TEST_CHILD_FAULT", "undecodable_first")
    ended, passes, states = passes_read(write_avi(tmp_path / "clip.avi", 60), module, 20, every_pass=False)
    read = [index for frames in passes for index in frames]
    assert ended == "ended" and "failed" not in states, (ended, states)
    assert sorted(read) == list(range(1, 60)) and len(read) == len(set(read)), passes  # frame 0: undecodable


def test_footage_whose_reader_dies_at_its_first_grab_when_reopened_is_read_on(tmp_path, monkeypatch):
    module = "tests.ingest.faulty_capture_child"
    monkeypatch.setattr(IsolatedCapture, "child_module", module)
    monkeypatch.setenv("ALPR_TEST_CHILD_FAULT", "dies_on_reopen")
    monkeypatch.setenv("ALPR_TEST_STARTS_FILE", str(tmp_path / "starts"))
    ended, passes, states = passes_read(write_avi(tmp_path / "clip.avi", 60), module, 20, every_pass=False)
    read = [index for frames in passes for index in frames]
    assert ended == "ended" and "failed" not in states, (ended, states)
    assert sorted(read) == list(range(60)) and len(read) == len(set(read)), passes
