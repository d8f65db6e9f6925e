"""The standalone pipeline end to end through the `alpr` command, on the synthetic clip."""

import hashlib
import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from alpr.cli import main
from common import defaults
from ocr_worker.core import OcrSettings, PlateReader
from tests.helpers import clip_frames, iou, scene_samples


@pytest.fixture(scope="module")
def demo_run(demo_clip, tmp_path_factory, settings):
    path, truth = demo_clip
    out = tmp_path_factory.mktemp("run")
    code = main(
        [
            "run",
            str(path),
            "--out",
            str(out / "redacted"),
            "--sqlite",
            str(out / "reads.sqlite"),
            "--camera-id",
            "gate-3",
            "--no-progress",
            "--model-dir",
            str(settings.model_dir),
        ]
    )
    assert code == 0
    return out, truth


def test_known_plates_are_logged(demo_run):
    out, truth = demo_run
    with sqlite3.connect(out / "reads.sqlite") as db:
        rows = db.execute(
            "SELECT plate_text, confidence, format_match, camera_id, frame_index FROM plate_reads"
        ).fetchall()
    counts = {}
    for text, confidence, matched, camera, _ in rows:
        assert camera == "gate-3"
        if matched and confidence >= 0.5:
            counts[text] = counts.get(text, 0) + 1
    top = sorted(counts, key=counts.get, reverse=True)[: len(truth["plates"])]
    assert sorted(top) == sorted(truth["plates"]), counts
    assert all(counts[p] >= 8 for p in truth["plates"])  # each car is in view for 20 sampled frames


def test_redacted_video_hides_the_plates(demo_run, demo_clip):
    """Every fourth redacted frame, read where its plate is: no plate is read there, while the same
    region of the original frame is read by the same reader (a positive control), the rest of the frame
    is the original's, and the run itself read the plate in those frames."""
    out, truth = demo_run
    capture = cv2.VideoCapture(str(out / "redacted" / "redacted.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == len(truth["boxes"]) // 2  # 5 of the clip's 10 frames a second
    checked = {sampled * 8: frame for sampled, frame in enumerate(frames[::4])}  # every 4th of those
    originals = clip_frames(demo_clip[0], set(checked))
    reader = PlateReader(OcrSettings(region="us"))
    boxes = {b["frame_index"]: b for b in truth["boxes"]}
    readable, readable_unredacted = [], []
    for index, frame in checked.items():
        box = boxes[index]
        x1, y1, x2, y2 = (int(v) for v in box["box_xyxy"])
        if any(c.text == box["plate"] for c in reader.read(frame[y1:y2, x1:x2])):
            readable.append(index)
        if any(c.text == box["plate"] for c in reader.read(originals[index][y1:y2, x1:x2])):
            readable_unredacted.append(index)
        outside = np.ones(frame.shape[:2], bool)
        w, h = x2 - x1, y2 - y1
        outside[max(0, y1 - h) : y2 + h, max(0, x1 - w) : x2 + w] = False  # the plate and the blur's margin
        difference = cv2.absdiff(frame, originals[index])
        assert difference[outside].mean() < 4, index  # the same scene (two lossy encodings apart)
        assert difference[y1:y2, x1:x2].mean() > 3 * max(difference[outside].mean(), 1), index  # the plate changed
    assert len(checked) == 15 and readable == []
    assert len(readable_unredacted) >= 12, readable_unredacted  # unredacted, nearly every one is read
    with sqlite3.connect(out / "reads.sqlite") as db:
        logged = set(db.execute("SELECT frame_index, plate_text FROM plate_reads").fetchall())
    assert sum((i, boxes[i]["plate"]) in logged for i in checked) >= 12, logged  # read, then redacted


def test_export_csv_from_the_run(demo_run, tmp_path):
    out, _ = demo_run
    reads_csv = tmp_path / "reads.csv"
    assert main(["export", "--csv", str(reads_csv), "--reason", "case 1", "--sqlite", str(out / "reads.sqlite")]) == 0
    lines = reads_csv.read_text().splitlines()
    assert lines[0].startswith("camera_id,frame_id,frame_index,source_time_s,captured_at,plate_index,plate_text")
    assert len(lines) > 20
    candidates = json.loads(next(__import__("csv").DictReader(lines))["candidates"])
    assert candidates and {"text", "confidence", "format"} <= set(candidates[0])


def test_image_folder_writes_redacted_frames(datasets_dir, tmp_path, settings, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for sample in sorted((datasets_dir / "openalpr-endtoend" / "br").glob("*.jpg"))[:3]:
        (folder / sample.name).write_bytes(sample.read_bytes())
    code = main(
        [
            "run",
            str(folder),
            "--out",
            str(tmp_path / "out"),
            "--sqlite",
            str(tmp_path / "r.sqlite"),
            "--region",
            "br",
            "--no-progress",
            "--model-dir",
            str(settings.model_dir),
        ]
    )
    assert code == 0
    assert len(list((tmp_path / "out" / "redacted_frames").glob("*.jpg"))) == 3
    assert "3 frames" in capsys.readouterr().out


@pytest.mark.parametrize("linked", ["redacted_frames", "sightings"])
def test_a_folder_linked_elsewhere_in_the_output_is_refused_before_anything_is_written(
    linked, datasets_dir, tmp_path, settings, capsys
):
    """A privacy audit: links planted at out/redacted_frames and out/sightings took the redacted frames
    and snapshots into a folder the run never made private (0755)."""
    folder, out, elsewhere = tmp_path / "frames", tmp_path / "out", tmp_path / "elsewhere"
    for made in (folder, out, elsewhere):
        made.mkdir()
    sample = sorted((datasets_dir / "openalpr-endtoend" / "br").glob("*.jpg"))[0]
    (folder / sample.name).write_bytes(sample.read_bytes())
    (out / linked).symlink_to(elsewhere, target_is_directory=True)
    args = ["run", str(folder), "--out", str(out), "--sqlite", str(tmp_path / "r.sqlite"), "--region", "br"]
    assert main([*args, "--no-progress", "--model-dir", str(settings.model_dir)]) == 2
    assert f"{out / linked} is a symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{tmp}/missing.mp4"], "does not exist"),
        (["run", "{tmp}/empty_dir"], "holds no images"),
        (["run", "{tmp}/corrupt.mp4"], "cannot open video|no frame could be decoded"),
        (["run", "rtsp://127.0.0.1:9/cam"], "cannot connect to stream"),
        (
            ["run", "{tmp}/corrupt.mp4", "--database-url", "postgresql://x@127.0.0.1:1/none?connect_timeout=2"],
            "cannot open video",
        ),
        (["export", "--csv", "{tmp}/x.csv", "--reason", "c 1", "--sqlite", "{tmp}/none.sqlite"], "no reads to export"),
        (
            [
                "export",
                "--csv",
                "{tmp}/x.csv",
                "--reason",
                "c 1",
                "--database-url",
                "postgresql://x@127.0.0.1:1/none?connect_timeout=2",
            ],
            "cannot connect to Postgres",
        ),
        (["eval", "{tmp}/missing"], "does not exist"),
        (["eval", "{tmp}/empty_dir"], "holds no ground truth"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, message, tmp_path, capsys, settings, monkeypatch):
    monkeypatch.setattr(defaults, "DB_OPEN_WAIT_S", 1.0)  # nothing listens on port 1: no server starting to wait for
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 4000)
    code = main(
        [a.format(tmp=tmp_path) for a in args] + ["--model-dir", str(settings.model_dir)] * (args[0] != "export")
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("alpr: error:"), err
    assert __import__("re").search(message, err[0]), err[0]


def test_bad_setting_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("ALPR_DETECTOR_BACKEND", "tensorrt")
    assert main(["export", "--csv", "x.csv", "--reason", "case 1"]) == 2
    assert "ALPR_DETECTOR_BACKEND" in capsys.readouterr().err


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0


def test_the_run_logs_one_sighting_per_car_with_its_plate_and_a_blurred_snapshot(demo_run, demo_clip, tmp_path):
    """Each of the clip's three cars passes once: one sighting each, the voted plate right, its snapshot
    the best read's frame with the plate hidden (the same region of the original frame reads: the
    positive control)."""
    out, truth = demo_run
    csv_path, recorded = tmp_path / "sightings.csv", ["--reason", "case 1", "--sightings"]
    assert main(["export", "--csv", str(csv_path), *recorded, "--sqlite", str(out / "reads.sqlite")]) == 0
    rows = list(__import__("csv").DictReader(csv_path.open()))
    assert sorted(row["plate"] for row in rows) == sorted(truth["plates"])
    assert all(int(row["reads"]) >= 15 and float(row["confidence"]) >= 0.85 for row in rows), rows
    assert all(row["camera_id"] == "gate-3" for row in rows)
    reader = PlateReader(OcrSettings(region="us"))
    indexes = {int(row["best_frame_id"].rsplit(":", 1)[1]) for row in rows}
    originals = clip_frames(demo_clip[0], indexes)
    for row in rows:
        snapshot = cv2.imread(row["snapshot_path"])
        x1, y1, x2, y2 = (int(float(row[k])) for k in ("x1", "y1", "x2", "y2"))
        original = originals[int(row["best_frame_id"].rsplit(":", 1)[1])]
        assert snapshot is not None and snapshot.shape == original.shape
        assert not any(c.text == row["plate"] for c in reader.read(snapshot[y1:y2, x1:x2]))
        assert any(c.text == row["plate"] for c in reader.read(original[y1:y2, x1:x2]))
    assert main(["export", "--csv", str(csv_path), *recorded, "--sqlite", str(out / "reads.sqlite")]) == 0
    assert len(csv_path.read_text().splitlines()) == 4  # exported again: the same three


def digest(where: str) -> str:
    return "_p" + hashlib.sha1(where.encode()).hexdigest()[:6]


@pytest.mark.parametrize(
    ("source", "camera_id"),
    [
        ("rtsp://admin:hunter2@10.0.0.5", "10.0.0.5"),
        ("rtsp://admin:hunter2@cam.local:554/live/main", "cam.local_554" + digest("live/main")),
        ("http://cam/video.cgi?user=admin&pwd=hunter2", "cam" + digest("video.cgi?user=admin&pwd=***")),
        ("rtsp://admin@site:hunter2@10.0.0.5/s1", "10.0.0.5" + digest("s1")),
        # a review: credentials in the path, as cheap recorders take them, were copied into the id
        ("rtsp://10.0.0.7:554/user=admin&password=Hunter2secret&channel=1&stream=0.sdp",
         "10.0.0.7_554" + digest("user=admin&password=***&channel=1&stream=0.sdp")),
        ("/videos/gate 2.mp4", "gate_2"),
    ],
)  # fmt: skip
def test_a_camera_id_made_of_a_url_holds_no_credential(source, camera_id):
    from alpr.run_command import default_camera_id

    assert default_camera_id(source) == camera_id
    assert "hunter2" not in camera_id.lower() and "admin" not in camera_id


def test_two_channels_of_one_recorder_are_two_cameras_and_their_token_changes_neither():
    from alpr.run_command import default_camera_id

    one, two = (default_camera_id(f"rtsp://nvr:554/cam/realmonitor?channel={c}&token=s3cret") for c in (1, 2))
    assert one != two and one.startswith("nvr_554_p")
    assert default_camera_id("rtsp://nvr:554/cam/realmonitor?channel=1&token=other") == one
    assert default_camera_id("rtsp://nvr/ch1") != default_camera_id("rtsp://nvr/ch2")
    assert len(default_camera_id("rtsp://" + "n" * 80 + "/ch1")) == 64  # the digest kept whole


def test_argument_errors_mask_the_passwords_they_quote(capsys):
    for argv in (
        ["--database-url", "postgresql://alpr:hunter2@db/alpr", "status"],
        ["export", "--csv", "a.csv", "--reason", "case 1", "--redis-url", "redis://:hunter2@h/0"],
    ):
        with pytest.raises(SystemExit):
            main(argv)
        error = capsys.readouterr().err  # an argument no parser knows: the subcommand's own usage and error
        assert ("alpr: error" in error or "alpr export: error" in error) and "hunter2" not in error and "***" in error


def test_status_shows_garbled_statistics_as_nothing_instead_of_failing(redis_url, capsys):
    import redis

    from common import queues

    connection = redis.Redis.from_url(redis_url)
    connection.hset(queues.CAMERA_STATE_KEY, mapping={"gate": "not json", "yard": '["a list"]', b"\xffcam": "{}",
                                                      "deep": "[" * 100000,
                                                      "dock": '{"state": "live", "since": "yesterday"}'})  # fmt: skip
    connection.hset(queues.STATS_BUSY_KEY, mapping={"detect": "nan", "ocr": "x"})
    connection.hset(queues.STATS_FRAMES_KEY, mapping={"detect": "1e999", "ocr": b"\xff"})
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    table = capsys.readouterr().out
    assert all(camera in table for camera in ("gate", "yard", "dock")) and "pool " in table


def test_status_shows_a_camera_whose_node_is_gone_as_such(redis_url, capsys):
    """A killed node's cameras showed `connected` for ever (their state has no expiry): a camera left live
    that no node claims any more (its claim lapsed) is shown `node gone` (a review)."""
    import json
    import time

    import redis

    from common import queues
    from ingest.claims import CLAIM_PREFIX

    connection = redis.Redis.from_url(redis_url)
    live = json.dumps({"state": "connected", "since": time.time() - 60, "errors": 0})
    ended = json.dumps({"state": "ended", "since": time.time() - 60, "errors": 0})
    connection.hset(queues.CAMERA_STATE_KEY, mapping={"gate": live, "yard": live, "dock": ended})
    connection.set(CLAIM_PREFIX + "gate", "node-1", ex=30)  # gate's node renews its claim; yard's was killed
    assert main(["status", "--interval", "0.1", "--redis-url", redis_url]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.split()}
    assert "connected" in rows["gate"] and "node gone" in rows["yard"] and "ended" in rows["dock"], rows


def test_a_snapshot_is_logged_by_its_absolute_path_whatever_folder_the_run_was_given(
    demo_clip, tmp_path, settings, monkeypatch
):
    """`--out out` (the default is relative too) logged out/sightings/…jpg: an export read anywhere else
    named snapshots that were not there."""
    monkeypatch.chdir(tmp_path)
    args = ["run", str(demo_clip[0]), "--out", "out", "--sqlite", "reads.sqlite", "--no-progress"]
    assert main([*args, "--model-dir", str(settings.model_dir)]) == 0
    with sqlite3.connect(tmp_path / "reads.sqlite") as db:
        paths = [Path(p) for (p,) in db.execute("SELECT snapshot_path FROM sightings")]
    assert paths and all(p.is_absolute() and p.is_file() for p in paths)
    assert all(p.parent == tmp_path / "out" / "sightings" for p in paths)


def test_what_the_run_writes_is_for_its_owner_only(demo_run):
    """The log (plates, times, places), the redacted video and the snapshots (cars, faces, places):
    files 0600 in folders 0700, whatever the umask."""
    out, _ = demo_run
    written = [out / "reads.sqlite", out / "redacted" / "redacted.mp4", *(out / "redacted").rglob("*.jpg")]
    assert len(written) >= 5  # the log, the video and the three snapshots
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {"0o600"}
    folders = [out / "redacted", *(p for p in (out / "redacted").rglob("*") if p.is_dir())]
    assert {oct(folder.stat().st_mode & 0o777) for folder in folders} == {"0o700"}


@pytest.mark.parametrize("args", [["status", "--interval", "0"], ["status", "--interval", "nan"],
                                  ["replay", "--stage", "alert", "--max-age-h", "-1"]])  # fmt: skip
def test_a_time_that_is_not_above_zero_is_refused_in_one_line(args, capsys):
    """`alpr status --interval 0` divided by zero (a traceback); -1 asked time.sleep to go back."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and "must be a number above 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["worker", "alert", "--burst", "--max-jobs", "0"], "must be 1 or more"),
        (["worker", "alert", "--burst", "--max-jobs", "-5"], "must be 1 or more"),
        (["worker", "alert", "--burst", "--max-jobs", "2.5"], "not a whole number"),
        (["db", "prune", "--older-than-days", "-1"], "must be 0 or a number above 0"),
        # read as 0, "kept without limit", where 0.000001 is refused
        (["db", "prune", "--older-than-days", "1e-400"], "'1e-400' is not 0, yet too small to tell from it"),
        (["db", "prune", "--older-than-days=-1e-400"], "'-1e-400' is not 0, yet too small to tell from it"),
    ],
)
def test_a_count_or_age_no_run_can_mean_is_refused_in_one_line(args, says, capsys):
    """`--max-jobs 0` ran a job a worker and started another without end (a negative one ran one job).
    (`alpr db prune --older-than-days 0` keeps everything, as ALPR_RETENTION_DAYS=0: tests/common/test_retention.py.)"""
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_alpr_run_groups_the_reads_the_chain_logs_and_no_plate_found_but_not_read():
    """The chain logs only plates with a reading and its sighting pool groups those; `alpr run` fed the
    tracker unread plates too: they bridged gaps the chain splits at, and made sightings of no plate."""
    import time

    from alpr.standalone import observations
    from common.frame_store import frame_key
    from common.jobs import FrameRef
    from common.plate_log import read_rows
    from common.types import PlateCandidate, PlateRead

    frame = FrameRef(frame_id="cam:1:0", camera_id="cam", seq=0, frame_index=0, captured_at_s=time.time(),
                     source_time_s=0.0, key=frame_key("cam:1:0"), region="us")  # fmt: skip
    reads = [
        PlateRead((0.0, 0.0, 90.0, 30.0), 0.9),  # found, not read
        PlateRead((200.0, 0.0, 290.0, 30.0), 0.9, (PlateCandidate("KPX4721", 0.95, "us"),)),
    ]
    grouped = observations(frame, reads)
    logged = read_rows(frame, reads)
    assert [(o.plate_index, o.text) for o in grouped] == [(row[5], row[6]) for row in logged] == [(1, "KPX4721")]


def test_a_video_the_encoder_refuses_is_an_error_not_an_empty_file_said_to_be_the_output(tmp_path):
    """A 1x1 first frame: the encoder opened nothing, wrote a 0-byte file, and the run named it as its output."""
    from alpr.standalone_output import RedactedWriter
    from common.errors import InputError
    from ingest.frame_source import SampledFrame

    writer = RedactedWriter(tmp_path, as_frames=False, fps=5.0)
    tiny = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(InputError, match="the video encoder refused 1x1 frames"):
        writer.write(SampledFrame(0, 0.0, tiny), tiny)


@pytest.mark.parametrize(
    ("roi", "outside"),
    [("5000,5000 6000,5000 6000,6000", True),  # drawn for another camera: wholly outside these 1280x720 frames
     ("0,0 1280,0 1280,720 0,720", False)],  # the whole frame: the positive control
)  # fmt: skip
def test_a_run_whose_roi_lies_outside_the_frame_warns_and_counts_the_plates_it_did_not_read(
    roi, outside, demo_clip, tmp_path, settings, capsys, caplog
):
    """It said "0 plates detected", no warning, while it had found (and blurred) every plate (a review)."""
    path, truth = demo_clip
    indices = {box["frame_index"] for box in truth["boxes"]}
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in clip_frames(path, set(sorted(indices)[:6])).items():
        cv2.imwrite(str(folder / f"{index:04d}.png"), frame)
    args = ["run", str(folder), "--roi", roi, "--camera-id", "gate", "--sqlite", str(tmp_path / "r.sqlite")]
    assert main([*args, "--no-progress", "--model-dir", str(settings.model_dir)]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "ROI" in r.getMessage()]
    if outside:
        assert "6 plates detected (6 outside the ROI, not read), 0 reads logged" in summary, summary
        assert len(warnings) == 1 and warnings[0].startswith("camera gate: its ROI covers none of its 1280x720 frames")
    else:
        assert "6 plates detected, 6 reads logged" in summary and not warnings, (summary, warnings)


def test_an_image_wider_than_a_jpeg_holds_is_a_frame_unread_and_the_run_goes_on(
    datasets_dir, tmp_path, settings, capsys
):
    """A 70000x400 PNG (within the pixel limit) ended `alpr run --out` at encoding, exit 2, the images after
    it unprocessed and no file named (a review): it is refused from its header as too large (MAX_FRAME_SIDE)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_wide.png"), np.zeros((400, 70000, 3), np.uint8))
    sample = scene_samples(datasets_dir, "br", 1)[0]
    (folder / "b_photo.jpg").write_bytes(sample.image.read_bytes())
    out = tmp_path / "out"
    args = ["run", str(folder), "--out", str(out), "--sqlite", str(tmp_path / "r.sqlite"), "--region", "br"]
    assert main([*args, "--no-progress", "--model-dir", str(settings.model_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("1 frames in ") and "a_wide.png" in printed, printed
    assert "70000x400 pixels, a side longer than a JPEG holds (65500)" in printed, printed
    [written] = (out / "redacted_frames").glob("*.jpg")
    photo, redacted = cv2.imread(str(sample.image)), cv2.imread(str(written))
    x1, y1, x2, y2 = (round(v) for v in sample.box_xyxy)
    assert redacted.shape == photo.shape
    assert np.abs(redacted[y1:y2, x1:x2].astype(int) - photo[y1:y2, x1:x2]).mean() > 10  # its plate blurred
