"""The capture clock an ingest node dates frames by (ingest/clock.py), driven by given host clocks:
a host's clock cannot be stepped here (nor should a test step it). Frames keep their spacing through
a step of the host's clock; a step that holds is taken, forward at once, back by slewing; a camera's
frames are never dated back."""

from __future__ import annotations

import pytest

from ingest.camera_run import CameraRun
from ingest.cameras import CameraConfig
from ingest.clock import STEP_HOLD_S, CameraClock, CaptureClock


class HostClocks:
    """A monotonic clock that ticks `step_s` per reading, and a wall clock `offset_s` apart from it."""

    def __init__(self, offset_s: float = 1_700_000_000.0, step_s: float = 0.2) -> None:
        self.mono, self.offset_s, self.step_s = 100.0, offset_s, step_s

    def monotonic(self) -> float:
        self.mono += self.step_s
        return self.mono

    def wall(self) -> float:
        return self.mono + self.offset_s


def stamps(clock: CaptureClock, count: int) -> list[float]:
    return [clock.now() for _ in range(count)]


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def test_a_step_that_does_not_hold_leaves_the_frames_time_alone(caplog):
    """+1 h for 3 s, then corrected: frames were dated an hour ahead, then 1 ms apart for the next hour
    (an hour of frames in 18 s at 5 fps, a car's reads all at one instant)."""
    caplog.set_level("INFO", logger="ingest.clock")
    host = HostClocks()
    clock = CaptureClock(host.wall, host.monotonic)
    before = stamps(clock, 5)
    host.offset_s += 3600
    during = stamps(clock, 15)  # 3 s
    host.offset_s -= 3600
    after = stamps(clock, 50)
    times = before + during + after
    assert gaps(times) == pytest.approx([0.2] * (len(times) - 1))
    assert after[-1] == pytest.approx(host.wall(), abs=1e-6)  # on the host's clock all along
    assert caplog.text.count("the host's clock stepped +3600.0 s") == 1
    assert "within 1 s of the frames' time again" in caplog.text


def test_a_step_forward_that_holds_is_taken_and_one_back_is_slewed():
    host = HostClocks(offset_s=0.0)  # a box that booted at 1970: NTP then sets its clock
    clock = CaptureClock(host.wall, host.monotonic)
    stamps(clock, 3)
    host.offset_s += 1_700_000_000.0
    held = stamps(clock, int(STEP_HOLD_S / 0.2) + 2)
    assert held[-1] - host.wall() == pytest.approx(0.0, abs=0.3) and held[0] < 1e6  # taken once it held
    host.offset_s -= 600.0  # a clock 10 minutes ahead, corrected
    back = stamps(clock, int((STEP_HOLD_S + 2 * 600) / 0.2) + 10)
    assert min(gaps(back)) == pytest.approx(0.1)  # half speed while it slews back, never crowded
    assert back[-1] - host.wall() == pytest.approx(0.0, abs=0.3)  # met the host's clock


def test_a_small_step_back_is_slewed_too_and_a_cameras_frames_never_go_back():
    """Within a second the host's clock is followed, but back only by slewing: the sighting pool groups
    a camera's reads forward in capture time, and frames dated before the last were never grouped."""
    host = HostClocks()
    clock = CaptureClock(host.wall, host.monotonic)
    run = CameraRun(CameraConfig(id="cam", source="rtsp://cam/1"), run_ms=0, clock=clock)
    first = [run.capture_time(0.0) for _ in range(3)]
    host.offset_s -= 0.9
    then = [run.capture_time(0.0) for _ in range(20)]
    times = first + then
    assert min(gaps(times)) == pytest.approx(0.1, abs=1e-6)  # slewed at half speed, then on with the host
    assert then[-1] == pytest.approx(host.wall(), abs=1e-6)


def test_a_cameras_clock_starts_at_its_last_frame_and_slews_back_to_the_nodes():
    """A node whose host's clock is two minutes behind its predecessor's dated a camera's frames before
    those logged already; the camera's clock starts at its last frame, runs at half speed until the node's
    clock meets it, then is the node's."""
    host = HostClocks()
    node = CaptureClock(host.wall, host.monotonic)
    last_frame_s = host.wall() + 120
    camera = CameraClock(node, not_before_s=last_frame_s)
    times = stamps(camera, int(2 * 120 / 0.2) + 20)
    assert times[0] >= last_frame_s
    assert min(gaps(times)) == pytest.approx(0.1, abs=1e-6)  # never back, never crowded
    assert times[-1] == pytest.approx(node.now() - 0.2, abs=1e-6) and camera.lead_s == 0  # met the node's clock
    behind = CameraClock(node, not_before_s=host.wall() - 60)
    assert behind.lead_s == 0 and behind.now() == pytest.approx(host.wall(), abs=1e-6)  # the node's clock
