"""The sighting core (sighting_worker/): the plate vote and its confidence, and the grouping of one
camera's reads into sightings: the gap that splits passes, misreads outvoted, two cars side by side
with plates one character apart kept apart by their boxes, a plate coming back, empty reads that
extend a track but never vote, late reads, bounded tracks, and a state round trip at every point of
a stream that gives the sightings of an uninterrupted run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import pytest

from sighting_worker.core import Observation, Sighting, SightingTracker, is_vehicle_pass, vote
from sighting_worker.grouping import MAX_DISTINCT_TEXTS

GAP_S = 2.0


def read(
    text: str,
    confidence: float = 0.9,
    t: float = 0.0,
    frame: str | None = None,
    x: float = 100.0,
    y: float = 300.0,
    width: float = 100.0,
    camera: str = "cam1",
    index: int = 0,
) -> Observation:
    """One read whose box (width x 30 px) has its left edge at x; frame id f<t> unless given."""
    return Observation(camera, frame or f"f{t:g}", index, t, (x, y, x + width, y + 30.0), text, confidence)


def texts(*items: tuple[str, float]) -> list[Observation]:
    return [read(text, confidence) for text, confidence in items]


def run(tracker: SightingTracker, frames: Iterable[Sequence[Observation]]) -> list[Sighting]:
    """Every sighting of the frames, those the stream closes and those left at its end."""
    sightings = [s for frame in frames for s in tracker.observe_frame(frame)]
    return sightings + tracker.close_all()


# ---------------------------------------------------------------------------------------------- vote


@pytest.mark.parametrize(
    ("reads", "expected_plate", "expected_confidence"),
    [
        ([], "", 0.0),
        (texts(("", 0.99)), "", 0.0),
        (texts(("7ABC284", 0.7)), "7ABC284", 0.7),
        (texts(("7ABC284", 0.0)), "7ABC284", 0.0),
        (texts(("", 0.99), ("7ABC284", 0.6), ("", 0.95)), "7ABC284", 0.6),
        # one misread among five is outvoted: third position 4 to 1
        (texts(*[("7ABC284", 0.9)] * 2, ("7A8C284", 0.9), *[("7ABC284", 0.9)] * 2), "7ABC284", 0.9 / (1 + 0.25**2)),
        # five reads alike: as sure as the surest of them
        (texts(*[("7ABC284", 0.9)] * 5), "7ABC284", 0.9),
        # fifteen against five at the first position
        (texts(*[("GHT2093", 0.9)] * 15, *[("OHT2093", 0.9)] * 5), "GHT2093", 0.9 / (1 + (1 / 3) ** 2)),
        # the length by weight: three short reads outweigh one long one
        (texts(*[("ABC123", 0.6)] * 3, ("ABC1234", 0.9)), "ABC123", 0.6 / (1 + (0.9 / 1.8) ** 2)),
        # one long read outweighs two weak short ones
        (texts(("ABC123", 0.2), ("ABC123", 0.2), ("ABC1234", 0.9)), "ABC1234", 0.9 / (1 + (0.4 / 0.9) ** 2)),
        # per position: a text no single read has (each position 2 to 1)
        (texts(("ABX", 0.9), ("AYC", 0.9), ("ZBC", 0.9)), "ABC", 0.9 / (1 + 0.5**2)),
        # equal weight: more reads win (a tie: certainty 0.5)
        (texts(("AB", 0.5), ("AC", 0.25), ("AC", 0.25)), "AC", 0.25 * 0.5),
        # equal weight and count: the best read's character
        (texts(("AB", 0.4), ("AB", 0.1), ("AC", 0.3), ("AC", 0.2)), "AB", 0.4 * 0.5),
        (texts(("AB", 0.3), ("AB", 0.2), ("AC", 0.4), ("AC", 0.1)), "AC", 0.4 * 0.5),
    ],
)
def test_vote(reads: list[Observation], expected_plate: str, expected_confidence: float) -> None:
    plate, confidence = vote(reads)
    assert plate == expected_plate
    assert confidence == pytest.approx(expected_confidence)


@pytest.mark.parametrize(
    ("added", "rises"),
    [(("7ABC284", 0.5), True), (("7ABC284", 0.95), True), (("7A8C284", 0.5), False), (("7ABC28", 0.5), False)],
)
def test_confidence_rises_with_agreeing_reads_and_falls_with_disagreeing_ones(
    added: tuple[str, float], rises: bool
) -> None:
    base = texts(("7ABC284", 0.8), ("7ABC284", 0.6), ("7ABC2B4", 0.3))
    before = vote(base)[1]
    plate, after = vote([*base, read(*added)])
    assert plate == "7ABC284"
    assert (after > before) is rises  # an agreeing read weakens the rival; a surer one raises the best


def test_agreement_alone_never_makes_a_plate_surer_than_its_surest_read() -> None:
    assert vote(texts(*[("7ABC284", 0.6)] * 20))[1] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("first", "other", "expected"),
    [
        (("BB135BO", 0.876), ("RK6O5AB", 0.644), 0.876),  # the next car's read, 1 s on: its own plate
        (("BB135BO", 0.876), ("CU", 0.285), 0.876),  # a sticker's: no plate
        (("BB135BO", 0.876), ("BB136BO", 0.644), 0.876 / (1 + (0.644 / 0.876) ** 2)),  # a misread contests it
        (("BB135BO", 0.8), ("RK6O5AB", 0.644), 0.8 / (1 + (0.644 / 0.8) ** 2)),  # not trusted alone: as before
    ],
    ids=["another-car", "no-plate", "misread", "unsure"],
)
def test_a_plate_read_surely_alone_is_contested_only_by_reads_within_two_edits(
    first: tuple[str, float], other: tuple[str, float], expected: float
) -> None:
    """A listed plate read once at 0.876, the trusted-read threshold (0.85) but not the early alert's (0.9),
    and 1 s later the next car's unsure read, which joins its track by its box (as an unsure read may): the
    vote set one against the other, 0.568, and the plate raised no alert, which it raised alone (a review:
    3 of 26 such reads). A read more than two edits from it (the tracker's reach by text) reads another
    plate or none and contests it no longer; a misread within reach still does, and so does every read of
    a plate no read of which is trusted alone."""
    (sighting,) = run(SightingTracker(GAP_S), [[read(*first, t=0.0)], [read(*other, t=1.0, x=150.0)]])
    assert (sighting.plate, sighting.reads) == (first[0], 2)
    assert sighting.confidence == pytest.approx(expected)
    assert vote([read(*first), read(*other)], trusted_confidence=0.85)[1] == pytest.approx(expected)
    assert vote([read(*first), read(*other)])[1] <= expected  # without a trusted threshold, every read contests


# ------------------------------------------------------------------------------------------ grouping


def one_car(times: Iterable[float], text: str = "7ABC284", **kwargs: float | str) -> list[list[Observation]]:
    return [[read(text, t=t, **kwargs)] for t in times]  # type: ignore[arg-type]


@pytest.mark.parametrize(("pause_s", "expected"), [(GAP_S - 0.1, 1), (GAP_S, 1), (GAP_S + 0.1, 2), (10.0, 2)])
def test_a_pause_longer_than_the_gap_splits_the_pass(pause_s: float, expected: int) -> None:
    frames = one_car([0.0, 0.5, 1.0]) + one_car([1.0 + pause_s, 1.5 + pause_s])
    sightings = run(SightingTracker(GAP_S), frames)
    assert len(sightings) == expected
    assert sum(s.reads for s in sightings) == 5


@pytest.mark.parametrize("fps", [5.0, 1.0, 0.5, 0.4, 0.1])
def test_a_parked_car_at_a_camera_sampled_slower_than_the_gap_is_one_sighting(fps: float) -> None:
    """A camera sampled more slowly than one frame a gap (0.4 frames/s: a frame every 2.5 s, the gap 2 s)
    made a parked car read surely in every frame a sighting per frame (24 in a minute, a review): its gap
    is now at least two of its frame intervals. Unknown, the gap alone decides (the control), and two
    frames' reads 2.1 intervals apart at 0.4 frames/s are still two passes."""
    times = [1000.0 + i / fps for i in range(max(2, int(60 * fps)))]
    tracker = SightingTracker(GAP_S)
    tracker.set_frame_interval("cam1", 1 / fps)
    assert tracker.camera_gap_s("cam1") == max(GAP_S, 2 / fps) and tracker.camera_gap_s("cam2") == GAP_S
    assert len(run(tracker, one_car(times, confidence=0.95))) == 1
    unknown = SightingTracker(GAP_S)
    unknown.set_frame_interval("cam1", None)
    assert len(run(unknown, one_car(times, confidence=0.95))) == (1 if 1 / fps <= GAP_S else len(times))
    tracker.set_frame_interval("cam1", 2.5)
    assert len(run(tracker, one_car([0.0, 2.5 * 2.1], confidence=0.95))) == 2


def test_a_camera_sampled_once_an_hour_stretches_its_gap_ten_minutes_at_most() -> None:
    from sighting_worker.grouping import MAX_FRAME_GAP_S

    tracker = SightingTracker(GAP_S)
    tracker.set_frame_interval("cam1", 3600.0)
    assert tracker.camera_gap_s("cam1") == MAX_FRAME_GAP_S
    tracker.observe(read("7ABC284", t=0.0))
    assert tracker.close_due(MAX_FRAME_GAP_S) == [] and len(tracker.close_due(MAX_FRAME_GAP_S + 0.1)) == 1


def test_a_misread_frame_is_outvoted() -> None:
    frames = [[read("7A8C284" if i == 2 else "7ABC284", 0.9, t=i * 0.2)] for i in range(5)]
    (sighting,) = run(SightingTracker(GAP_S), frames)
    assert sighting.plate == "7ABC284"
    assert sighting.texts == (("7ABC284", 4), ("7A8C284", 1))
    assert sighting.reads == 5
    assert sighting.confidence == pytest.approx(0.9 / (1 + 0.25**2))
    assert (sighting.first_seen_s, sighting.last_seen_s) == (0.0, 0.8)


def side_by_side(misread_every: int, frames: int = 20) -> list[list[Observation]]:
    """Two cars moving right at 200 px/s (2 plate widths), 3.5 plate widths apart, at 10 fps; every
    `misread_every`-th frame the left plate reads as the right one's; the read order swaps."""
    result = []
    for i in range(frames):
        t = i * 0.1
        left_text = "KPX4727" if misread_every and i % misread_every == 1 else "KPX4721"
        left = read(left_text, 0.8, t=t, x=100 + 200 * t, index=i % 2)
        right = read("KPX4727", 0.8, t=t, x=450 + 200 * t, index=1 - i % 2)
        result.append([left, right] if i % 2 else [right, left])
    return result


@pytest.mark.parametrize("misread_every", [0, 3, 2])
def test_two_cars_side_by_side_with_plates_one_character_apart_stay_two(misread_every: int) -> None:
    sightings = run(SightingTracker(GAP_S), side_by_side(misread_every))
    assert sorted((s.plate, s.reads) for s in sightings) == [("KPX4721", 20), ("KPX4727", 20)]
    left = next(s for s in sightings if s.plate == "KPX4721")
    assert left.best_box_xyxy[0] < 450


def test_a_read_that_matches_only_the_other_cars_text_follows_its_box() -> None:
    # frame 3: only the left car is read, and misread as the right car's plate
    frames = side_by_side(0, frames=6)
    frames[3] = [read("KPX4727", 0.8, t=0.3, x=160.0)]
    sightings = run(SightingTracker(GAP_S), frames)
    assert sorted((s.plate, s.reads) for s in sightings) == [("KPX4721", 6), ("KPX4727", 5)]


@pytest.mark.parametrize(("second_confidence", "expected"), [(0.9, 2), (0.75, 2), (0.5, 1)])
def test_a_car_that_pulls_up_where_the_last_one_stood_is_a_sighting_of_its_own(
    second_confidence: float, expected: int
) -> None:
    """A parking gate: KPX4721 waits at the barrier for 2 s and leaves; a second later ZZY9035 stops on
    the same spot. Sure reads of plates that far apart are two vehicles; unsure ones may be misreads of
    the first and follow its box, as before."""
    frames = one_car([0.0, 0.5, 1.0, 1.5, 2.0], "KPX4721", x=600.0)
    frames += [[read("ZZY9035", second_confidence, t=t, x=600.0)] for t in (3.0, 3.5, 4.0, 4.5, 5.0)]
    sightings = run(SightingTracker(GAP_S), frames)
    if expected == 2:
        assert [(s.plate, s.reads) for s in sightings] == [("KPX4721", 5), ("ZZY9035", 5)]
    else:
        assert len(sightings) == 1 and sightings[0].reads == 10


def test_a_fleets_next_car_at_the_far_side_is_not_the_last_one_jumping() -> None:
    """KPX4721 crosses the frame; 1.5 s later KPX4722, one edit apart, appears at the far side: two
    sure reads of different plates beyond the first box's reach are two cars. The same plate seen
    there again (a detector's gap) still joins by its text."""
    first = one_car([0.0, 0.3, 0.6], "KPX4721", x=100.0)
    for plate, expected in (("KPX4722", [("KPX4721", 3), ("KPX4722", 3)]), ("KPX4721", [("KPX4721", 6)])):
        later = [[read(plate, t=t, x=1500.0)] for t in (2.1, 2.4, 2.7)]
        sightings = run(SightingTracker(GAP_S), first + later)
        assert [(s.plate, s.reads) for s in sightings] == expected


@pytest.mark.parametrize("first_confidence", [0.5, 0.3])
def test_a_fleets_next_car_first_read_unsure_is_not_the_last_one_jumping(first_confidence: float) -> None:
    """The same, but the next car's first read is unsure (far and small, KPX472 cut short): it joined the
    leaving car's track by its text, moved the track to the far side, and the next car's sure reads
    continued it there: two cars, one sighting (KPX4722 never had its own). No read, sure or not, joins a
    sure track by another text beyond its box's reach."""
    first = one_car([0.0, 0.3, 0.6], "KPX4721", x=100.0)
    later = [[read("KPX472", first_confidence, t=2.1, x=1500.0)]]
    later += [[read("KPX4722", t=t, x=1500.0 + 10 * i)] for i, t in enumerate((2.4, 2.7, 3.0, 3.3))]
    sightings = run(SightingTracker(GAP_S), first + later)
    assert [s.plate for s in sightings] == ["KPX4721", "KPX4722"]
    assert sightings[0].last_seen_s == 0.6  # the leaving car's track stayed where it was


def approaching(text: str, confidence: float, start_s: float, frames: int = 10) -> list[list[Observation]]:
    """A car driving down the frame towards the camera, read 5 times a second: its plate (100 px wide)
    moves 2 plate widths a second, from y 250 to 610."""
    return [[read(text, confidence, t=start_s + 0.2 * i, x=600.0, y=250.0 + 40 * i)] for i in range(frames)]


def test_the_next_cars_unsure_reads_at_the_far_end_are_not_the_last_cars() -> None:
    """KPX4721 drives down the frame, read surely; 1.8 s after its last read the next car appears at the
    far end, its small plate read unsure: 7 plate widths from where the first car should be by then.
    The first car's reach grew 4 widths a second without end (7.7 widths by then) and took the next
    car's reads: it had no sighting of its own. A reach that stops growing at MAX_SHIFT_WIDTHS keeps
    the two apart, and a car hidden for a moment still joins its track where it should be."""
    frames = approaching("KPX4721", 0.95, 0.0) + approaching("ZZY9035", 0.6, 3.6)
    sightings = run(SightingTracker(GAP_S), frames)
    assert [(s.plate, s.reads) for s in sightings] == [("KPX4721", 10), ("ZZY9035", 10)]
    hidden = approaching("KPX4721", 0.95, 0.0)
    hidden[4:8] = []  # hidden 1 s (a van passing in front); read again unsure, as something else
    hidden[4:] = [[read("K4", 0.3, t=frame[0].captured_at_s, x=600.0, y=frame[0].box_xyxy[1])] for frame in hidden[4:]]
    (sighting,) = run(SightingTracker(GAP_S), hidden)
    assert sighting.reads == 6


def test_a_car_that_braked_while_unseen_is_one_sighting() -> None:
    """A car brakes to a stop at a barrier while the detector misses it 1.2 s, then its plate, half behind
    the arm, reads KPX: it stopped 3 widths short of where its speed would have taken it, beyond the
    capped reach of that point, and was a second sighting, of KPX."""
    frames = [[read("KPX4721", 0.9, t=0.2 * i, x=600.0, y=200.0 + 60 * i)] for i in range(5)]
    frames += [[read("KPX", 0.2, t=2.0 + 0.2 * i, x=600.0, y=500.0)] for i in range(5)]
    assert [(s.plate, s.reads) for s in run(SightingTracker(GAP_S), frames)] == [("KPX4721", 10)]


def test_reads_of_stickers_and_signs_that_agree_on_nothing_are_no_vehicle_pass() -> None:
    """A sticker on a car read in passing, four times at 0.08-0.13 as four texts, was a sighting (two
    reads or more made a vehicle pass, whatever they said). Unsure reads that agree on a text, or whose
    vote is PASS_MIN_CONFIDENCE sure, are still a vehicle's pass; so is one sure read."""
    cases = {
        (("SW", 0.08), ("SK3", 0.09), ("T2W", 0.13), ("9N", 0.09)): False,
        (("T", 0.08), ("F", 0.15)): False,
        (("7ABC284", 0.15), ("7A8C284", 0.1), ("7ABC284", 0.12)): True,  # a hard plate, read alike twice
        (("KPX4Z21", 0.12), ("KPX472I", 0.1), ("HPX4721", 0.14), ("KPX4721", 0.11)): True,  # never quite alike
        # a plate cut short as it left (at DISTINCT_PLATES_CONFIDENCE or more, 383 would be another plate)
        (("383WJP", 0.99), ("383", 0.68), ("383WJ", 0.3)): True,
        (("7ABC284", 0.9),): True,
        (("7ABC284", 0.5),): False,
    }
    for reads, expected in cases.items():
        frames = [[read(text, confidence, t=0.2 * i, x=600.0 + 5 * i)] for i, (text, confidence) in enumerate(reads)]
        (sighting,) = run(SightingTracker(GAP_S), frames)
        assert is_vehicle_pass(sighting, 0.85) is expected, reads


def test_two_reads_of_one_frame_never_join_one_track() -> None:
    # the right car appears in frame 1: its text is within reach of the left car's track, but that
    # track takes the left car's read of the same frame
    frames = side_by_side(0, frames=4)
    frames[0] = [read("KPX4721", 0.8, t=0.0, x=100.0)]
    sightings = run(SightingTracker(GAP_S), frames)
    assert sorted((s.plate, s.reads) for s in sightings) == [("KPX4721", 4), ("KPX4727", 3)]


def test_the_same_plate_coming_back_after_the_gap_is_a_second_sighting() -> None:
    frames = one_car([0.0, 0.4, 0.8]) + one_car([0.8 + GAP_S + 1, 1.2 + GAP_S + 1])
    first, second = run(SightingTracker(GAP_S), frames)
    assert first.plate == second.plate == "7ABC284"
    assert (first.reads, second.reads) == (3, 2)
    assert first.sighting_id != second.sighting_id
    assert second.first_seen_s == 0.8 + GAP_S + 1


def test_observe_returns_a_sighting_once_its_time_proves_it_closed_and_only_once() -> None:
    tracker = SightingTracker(GAP_S)
    assert tracker.observe(read("7ABC284", t=0.0)) == []
    assert tracker.observe(read("7ABC284", t=1.0)) == []
    assert tracker.observe(read("KPX4721", t=3.0, x=2000)) == []  # 1.0 is not older than 3.0 - GAP_S
    (closed,) = tracker.observe(read("KPX4721", t=3.5, x=2000))
    assert (closed.plate, closed.reads) == ("7ABC284", 2)
    (rest,) = tracker.close_all()
    assert rest.plate == "KPX4721"
    assert tracker.close_all() == []


@pytest.mark.parametrize(("now_s", "closed"), [(2.9, 0), (3.0, 0), (3.01, 1)])
def test_close_due_closes_tracks_idle_for_more_than_the_gap(now_s: float, closed: int) -> None:
    tracker = SightingTracker(GAP_S)
    tracker.observe(read("7ABC284", t=1.0))
    assert len(tracker.close_due(now_s)) == closed
    assert tracker.open_tracks == 1 - closed
    assert tracker.close_due(now_s) == []


def test_sighting_ids_are_deterministic() -> None:
    frames = side_by_side(3) + one_car([5.0, 5.1], camera="cam2")
    first, again = run(SightingTracker(GAP_S), frames), run(SightingTracker(GAP_S), frames)
    assert first == again
    assert sorted(s.sighting_id for s in first) == ["cam1:f0:0", "cam1:f0:1", "cam2:f5:0"]


@pytest.mark.parametrize(("bridged", "expected"), [(True, 1), (False, 2)])
def test_reads_without_text_extend_a_track_by_its_box_but_never_vote(bridged: bool, expected: int) -> None:
    frames = one_car([0.0], "ABC123")
    if bridged:
        frames += [[read("", 0.99, t=t)] for t in (1.5, 3.0)]
    frames += one_car([4.5], "ABC123")
    sightings = run(SightingTracker(GAP_S), frames)
    assert len(sightings) == expected
    voting = 2 if bridged else 1  # the reads with text
    assert all(s.plate == "ABC123" and s.confidence == pytest.approx(0.9) for s in sightings)
    assert all(s.texts == (("ABC123", voting),) and s.reads == voting + 2 * bridged for s in sightings)
    assert all(s.best_confidence == 0.9 for s in sightings)  # a read with text is best


def test_a_plate_never_read_is_a_sighting_without_plate() -> None:
    (sighting,) = run(SightingTracker(GAP_S), [[read("", 0.7, t=t)] for t in (0.0, 0.1, 0.2)])
    assert (sighting.plate, sighting.confidence, sighting.texts, sighting.reads) == ("", 0.0, (), 3)
    assert sighting.best_confidence == 0.7


def test_motion_carries_unread_plates_of_a_fast_car() -> None:
    # 7.5 plate widths per second at 5 fps: each step (150 px) is beyond the allowance without motion
    # (0.5 + 4 * 0.2 widths = 130 px), within it along the predicted path
    frames = [[read("ABC123" if i < 2 else "", 0.9, t=i * 0.2, x=100 + 150 * i)] for i in range(6)]
    (sighting,) = run(SightingTracker(GAP_S), frames)
    assert sighting.reads == 6
    (static,) = run(SightingTracker(GAP_S), frames[:1])
    alone = run(SightingTracker(GAP_S), [frames[0], [read("", 0.9, t=0.2, x=250)]])
    assert static.reads == 1 and len(alone) == 2  # control: the first step alone is too far


def test_late_read_joins_its_open_track_and_becomes_its_first() -> None:
    tracker = SightingTracker(GAP_S)
    tracker.observe(read("7ABC284", t=1.0))
    tracker.observe(read("7ABC284", t=1.5))
    assert tracker.observe(read("7ABC284", t=0.5, frame="late")) == []
    (sighting,) = tracker.close_all()
    assert (sighting.reads, sighting.first_seen_s, sighting.last_seen_s) == (3, 0.5, 1.5)
    assert sighting.sighting_id == "cam1:late:0"


def test_late_read_older_than_the_gap_is_its_own_sighting_at_once() -> None:
    tracker = SightingTracker(GAP_S)
    tracker.observe(read("7ABC284", t=10.0))
    (late,) = tracker.observe(read("KPX4721", t=7.0, x=900))
    assert (late.plate, late.reads, late.first_seen_s) == ("KPX4721", 1, 7.0)
    assert tracker.open_tracks == 1


def test_late_read_matching_no_track_opens_its_own() -> None:
    tracker = SightingTracker(GAP_S)
    tracker.observe(read("7ABC284", t=10.0))
    assert tracker.observe(read("KPX4721", t=9.0, x=900)) == []
    assert tracker.open_tracks == 2
    assert [s.plate for s in tracker.close_due(11.5)] == ["KPX4721"]


def test_cameras_are_independent() -> None:
    tracker = SightingTracker(GAP_S)
    tracker.observe(read("7ABC284", t=0.0, camera="cam1"))
    assert tracker.observe(read("7ABC284", t=9.0, camera="cam2")) == []  # cam2's time closes nothing on cam1
    sightings = tracker.close_all()
    assert [(s.camera_id, s.plate) for s in sightings] == [("cam1", "7ABC284"), ("cam2", "7ABC284")]


def stream() -> list[list[Observation]]:
    """Two cameras, side-by-side cars with misreads, a car leaving and coming back, an unread plate."""
    frames = side_by_side(3, frames=12)
    frames += one_car([1.5, 1.7, 1.9, 2.1], "GHJ551", camera="cam2")
    frames += [[read("", 0.5, t=t, x=700)] for t in (2.0, 2.2)]
    frames += one_car([5.0, 5.2, 5.4], "KPX4721")
    frames += one_car([5.5, 9.0], "GHJ551", camera="cam2")
    return sorted(frames, key=lambda frame: frame[0].captured_at_s)


@pytest.mark.parametrize("split", range(len(stream()) + 1))
def test_a_state_round_trip_at_any_point_gives_the_sightings_of_an_uninterrupted_run(split: int) -> None:
    frames = stream()
    uninterrupted = run(SightingTracker(GAP_S), frames)
    before = SightingTracker(GAP_S)
    emitted = [s for frame in frames[:split] for s in before.observe_frame(frame)]
    state = json.loads(json.dumps(before.to_state()))
    after = SightingTracker.from_state(state, GAP_S)
    assert after.to_state() == state
    assert emitted + run(after, frames[split:]) == uninterrupted
    assert len(uninterrupted) == 6


def test_state_of_another_version_is_refused() -> None:
    state = SightingTracker(GAP_S).to_state() | {"version": 0}
    with pytest.raises(ValueError, match=r"version \(1, 2\) expected"):
        SightingTracker.from_state(state, GAP_S)


def test_state_the_earlier_version_wrote_goes_on_as_it_would_have() -> None:
    """Version 1 kept each voting read whole; a cursor saved by a worker of that version is read on (an
    upgrade loses no open track) and saved again in the smaller form."""
    frames = stream()
    uninterrupted = run(SightingTracker(GAP_S), frames)
    before = SightingTracker(GAP_S)
    emitted = [s for frame in frames[:5] for s in before.observe_frame(frame)]
    state = json.loads(json.dumps(before.to_state()))
    for camera in state["cameras"].values():
        for track in camera["tracks"]:
            whole = track["first"]  # any observation: the vote reads text and confidence alone
            track["kept"] = [whole | {"text": text, "confidence": confidence} for text, confidence in track["kept"]]
    state["version"] = 1
    assert any(track["kept"] for camera in state["cameras"].values() for track in camera["tracks"])
    after = SightingTracker.from_state(state, GAP_S)
    assert emitted + run(after, frames[5:]) == uninterrupted
    assert after.to_state()["version"] == 2


def test_saved_state_of_a_parked_car_stays_small() -> None:
    tracker = SightingTracker(GAP_S)
    for i in range(200):
        tracker.observe(read("AB123CD", confidence=0.9 + (i % 7) / 100, t=i * 0.2))
    assert len(json.dumps(tracker.to_state())) < 2500  # 12,400 bytes when every voting read was kept whole


def test_tracks_are_bounded() -> None:
    tracker = SightingTracker(GAP_S, max_voting_reads=3)
    for i in range(100):
        tracker.observe(read(f"ABC{i:03d}", confidence=(i % 10) / 10, t=i * 0.05))
    (track,) = tracker.to_state()["cameras"]["cam1"]["tracks"]
    assert track["kept"] == [["ABC079", 0.9], ["ABC089", 0.9], ["ABC099", 0.9]]  # text and confidence only
    (sighting,) = tracker.close_all()
    assert sighting.reads == 100
    assert len(sighting.texts) == MAX_DISTINCT_TEXTS
    assert sighting.best_confidence == 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.5}, "confidence must be in"),
        ({"confidence": -0.1}, "confidence must be in"),
        ({"index": -1}, "plate_index"),
        ({"width": -5.0}, "box_xyxy"),
    ],
)
def test_invalid_observations_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read("ABC123", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "raises"),
    [
        ([], False),
        ([read("A", t=0.0), read("B", t=0.0, x=500, index=1)], False),
        ([read("A", t=0.0), read("B", t=0.1, x=500)], True),
        ([read("A", t=0.0), read("B", t=0.0, camera="cam2")], True),
    ],
)
def test_observe_frame_takes_the_reads_of_one_frame(frame: list[Observation], raises: bool) -> None:
    tracker = SightingTracker(GAP_S)
    if raises:
        with pytest.raises(ValueError, match="reads of one frame"):
            tracker.observe_frame(frame)
    else:
        assert tracker.observe_frame(frame) == []
        assert tracker.open_tracks == len(frame)


@pytest.mark.parametrize(
    "kwargs", [{"gap_s": 0.0}, {"gap_s": 1.0, "max_text_distance": -1}, {"gap_s": 1.0, "max_voting_reads": 0}]
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SightingTracker(**kwargs)  # type: ignore[arg-type]


def test_a_camera_keeps_at_most_so_many_vehicles_in_view_and_closes_the_oldest_seen() -> None:
    """A forged job of thousands of reads at one time paired each with thousands of open tracks (4,000
    reads: 58 s, past Postgres's idle-transaction limit, every round); the oldest-seen close instead."""
    from sighting_worker.grouping import MAX_OPEN_TRACKS

    tracker = SightingTracker(GAP_S)
    closed: list[Sighting] = []
    for frame in range(5):  # 5 frames of 100 plates, all at one time, none near another
        closed += tracker.observe_frame(
            [
                read(f"Q{frame:02d}X{i:03d}", t=0.0, frame=f"f{frame}", x=300.0 * i, y=90.0 * frame, index=i)
                for i in range(100)
            ]  # fmt: skip
        )
    assert len(closed) == 5 * 100 - MAX_OPEN_TRACKS and all(s.reads == 1 for s in closed)
    assert len(tracker.close_all()) == MAX_OPEN_TRACKS
