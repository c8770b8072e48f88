"""Backfilling track starts: which boxes a track is given, and which it never is."""

from __future__ import annotations

import numpy as np

from reid_merge.core.backfill import add_backfilled, backfill_starts
from reid_merge.core.tracks import TrackSet
from tests.builders import tracks_from_rows, walking_track

FPS = 10.0  # reach_seconds=1.0 is 10 frames


def seen(rows: list[tuple], score: float = 0.4) -> TrackSet:
    """Boxes no track took (track ID -1), from `walking_track`-style rows."""
    return tracks_from_rows([(f, -1, *box) for f, _, *box in rows], score=score)


def test_a_track_is_extended_back_over_the_boxes_before_it_along_its_walk() -> None:
    track = tracks_from_rows(walking_track(1, range(20, 40)))
    before = seen(walking_track(0, range(14, 20)))
    result = backfill_starts(track, before, FPS, reach_seconds=1.0, min_score=0.3)
    assert result.frame.tolist() == list(range(14, 20))  # in frame order
    assert set(result.track_id.tolist()) == {1}
    assert np.allclose(result.xyxy, before.xyxy)
    assert np.allclose(result.score, 0.4)  # the detector's scores, kept


def test_the_walk_back_stops_at_a_missed_frame_a_low_score_or_a_box_elsewhere() -> None:
    track = tracks_from_rows(walking_track(1, range(20, 40)))
    gap = seen([r for r in walking_track(0, range(12, 20)) if r[0] != 16])
    assert backfill_starts(track, gap, FPS, 1.0, 0.3).frame.min() == 17
    weak = TrackSet.concat([seen(walking_track(0, range(12, 16)), 0.2), seen(walking_track(0, range(16, 20)))])
    assert backfill_starts(track, weak, FPS, 1.0, 0.3).frame.min() == 16
    assert backfill_starts(track, weak, FPS, 1.0, 0.1).frame.min() == 12
    elsewhere = seen(walking_track(0, range(14, 20), x0=130.0))  # 30 px off a 40 px wide box: IoU < 0.5
    assert len(backfill_starts(track, elsewhere, FPS, 1.0, 0.3)) == 0


def test_the_reach_bounds_how_far_back_and_zero_turns_it_off() -> None:
    track = tracks_from_rows(walking_track(1, range(30, 50)))
    before = seen(walking_track(0, range(1, 30)))
    assert backfill_starts(track, before, FPS, 1.0, 0.3).frame.min() == 20
    assert backfill_starts(track, before, FPS, 0.5, 0.3).frame.min() == 25
    assert len(backfill_starts(track, before, FPS, 0.0, 0.3)) == 0


def test_a_track_shorter_than_the_reach_is_left_as_it_is() -> None:
    short = tracks_from_rows(walking_track(1, range(20, 26)))  # 0.5 s: as often a false detection
    assert len(backfill_starts(short, seen(walking_track(0, range(14, 20))), FPS, 1.0, 0.3)) == 0


def test_a_box_goes_to_one_track_the_first_to_start_after_it() -> None:
    # A second track of the same walk, 4 px off, starting later: it reaches back over the boxes
    # between the two starts, and stops where the first track's backfill already took them.
    first = walking_track(1, range(20, 35))
    second = walking_track(2, range(24, 45), x0=104.0)
    before = seen(walking_track(0, range(14, 24)))
    result = backfill_starts(tracks_from_rows(first + second), before, FPS, 1.0, 0.3)
    assert len(result) == len(before)
    assert result[result.track_id == 1].frame.tolist() == list(range(14, 20))
    assert result[result.track_id == 2].frame.tolist() == list(range(20, 24))


def test_of_boxes_side_by_side_the_track_takes_the_one_on_its_walk_one_a_frame() -> None:
    track = tracks_from_rows(walking_track(1, range(20, 40)))
    beside = seen(walking_track(0, range(14, 20), x0=112.0))  # IoU 0.54 with the walk: a match too
    on_walk = seen(walking_track(0, range(14, 20)))
    result = backfill_starts(track, TrackSet.concat([beside, on_walk]), FPS, 1.0, 0.3)
    assert result.frame.tolist() == list(range(14, 20))
    assert np.allclose(result.xyxy, on_walk.xyxy)


def test_backfilled_boxes_join_a_person_only_in_frames_where_it_has_no_box() -> None:
    # Person 7 is tracks 1 (frames 0-9) and 2 (from 14): track 2's first moments reach back to
    # frame 8, where track 1 still was; the person keeps track 1's boxes there.
    tracks = tracks_from_rows(walking_track(1, range(0, 10)) + walking_track(2, range(14, 30)))
    backfilled = tracks_from_rows(walking_track(2, range(8, 14), x0=104.0), score=0.4)
    result = add_backfilled(tracks, {1: 7, 2: 7}, backfilled)
    assert result.frame.tolist() == list(range(0, 30))
    assert result.track_id[result.frame < 10].tolist() == [1] * 10
    assert np.allclose(result.score[(result.frame >= 10) & (result.frame < 14)], 0.4)
    apart = add_backfilled(tracks, {1: 7, 2: 8}, backfilled)  # two people: each keeps its boxes
    assert len(apart) == len(tracks) + len(backfilled)
    assert add_backfilled(tracks, {1: 7, 2: 7}, TrackSet.empty()) is tracks
