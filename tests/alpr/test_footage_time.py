"""Recorded footage is dated by its frames' own timestamps: a recorder's file with a 10-minute gap and a
change of frame rate, run through `alpr run` (the same sources the ingest node reads), logs each car at
the time it passed, with one sighting per car; a video served over http:// is run as the file is."""

from __future__ import annotations

import csv
from datetime import datetime

import pytest

from alpr.cli import main
from tests.helpers import clip_frames, served_video
from tests.ingest.mkv import write_mjpeg_mkv


def test_a_recording_with_a_gap_and_a_change_of_rate_logs_each_car_when_it_passed(demo_clip, settings, tmp_path):
    """The demo clip's three cars (40 frames each at 10 frames/s) as a recorder on motion writes them:
    the first car, 10 minutes with no frame, the second, then the third at 5 frames/s. Dated by index
    over the stated rate, the second car was logged 596 s early and the third's pass squeezed into half
    its length (a review found 182 sightings for 6 cars where a file's stated rate was its average)."""
    path, truth = demo_clip
    frames = clip_frames(path, set(range(120)))
    times = [i * 0.1 if i < 40 else 600 + i * 0.1 if i < 80 else 604 + (i - 80) * 0.2 for i in range(120)]
    video = write_mjpeg_mkv(tmp_path / "recorder.mkv", [frames[i] for i in range(120)], times, fps=10)
    out = tmp_path / "run"
    args = ["run", str(video), "--sqlite", str(out / "reads.sqlite"), "--camera-id", "gate", "--no-progress"]
    assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
    exported = tmp_path / "sightings.csv"
    assert main(["export", "--csv", str(exported), "--reason", "test", "--sightings", "--sqlite",
                 str(out / "reads.sqlite")]) == 0  # fmt: skip
    rows = {row["plate"]: row for row in csv.DictReader(exported.open())}
    assert sorted(rows) == sorted(truth["plates"])  # one sighting per car
    first, second, third = (rows[plate] for plate in truth["plates"])

    def seen(row: dict[str, str], key: str) -> float:
        return datetime.fromisoformat(row[key]).timestamp()

    assert seen(second, "first_seen") - seen(first, "first_seen") == pytest.approx(604, abs=0.5)
    assert seen(third, "first_seen") - seen(second, "first_seen") == pytest.approx(4, abs=0.5)
    assert seen(third, "last_seen") - seen(third, "first_seen") == pytest.approx(7.8, abs=1.0)  # 40 frames at 5/s


def test_a_video_served_over_http_is_run_as_the_file_on_disk_is(demo_clip, settings, tmp_path, capsys):
    """`alpr run http://.../clip.mp4 --fps 2` gave 1 frame and 1 of the 3 cars, exit 0 (the same file on
    disk: 24 frames, 3 cars; a review): a URL stating its frame count was sampled by how fast it was read,
    as a live stream. It is footage: sampled and dated by its own timestamps, and it ends where it ends."""
    path, truth = demo_clip
    log = tmp_path / "reads.sqlite"
    with served_video(path) as (url, _):
        code = main(["run", url, "--fps", "2", "--sqlite", str(log), "--out", str(tmp_path / "out"), "--camera-id",
                     "nvr", "--no-progress", "--model-dir", str(settings.model_dir)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "24 frames in" in printed, printed
    exported = tmp_path / "sightings.csv"
    assert main(["export", "--csv", str(exported), "--reason", "test", "--sightings", "--sqlite", str(log)]) == 0
    assert sorted(row["plate"] for row in csv.DictReader(exported.open())) == sorted(truth["plates"])
