from __future__ import annotations

import numpy as np
import pytest

from reid_merge.core.motion import handover, reachable, size_change, track_ends, velocity_change
from reid_merge.core.tracks import TrackSet
from tests.builders import approaching_track, tracks_from_rows, walking_track


def _gate(tracks: TrackSet, fps: float = 25.0, heights_per_second: float = 1.0) -> np.ndarray:
    return reachable(*handover(track_ends(tracks, tracks.track_ids), fps), 0.5, heights_per_second)


def test_velocity_is_measured_in_pixels_per_frame() -> None:
    ends = track_ends(tracks_from_rows(walking_track(1, range(1, 30), speed=3.0)), np.array([1]))
    np.testing.assert_allclose(ends.end_velocity[0], [3.0, 0.0])
    np.testing.assert_allclose(ends.height[0], 120.0)


def test_an_end_is_also_read_off_the_line_through_its_last_boxes() -> None:
    # Walking right on y = 160, every box 6 px above or below the walk, the last one below.
    rows = [
        (f, 1, x1, y1 + (-1) ** (f + 1) * 6.0, x2, y2 + (-1) ** (f + 1) * 6.0)
        for f, _, x1, y1, x2, y2 in walking_track(1, range(1, 30))
    ]
    ends = track_ends(tracks_from_rows(rows), np.array([1]))
    assert ends.end_xy[0, 1] == pytest.approx(166.0) and ends.start_xy[0, 1] == pytest.approx(166.0)
    assert abs(ends.end_line_xy[0, 1] - 160.0) < 2.0 and abs(ends.start_line_xy[0, 1] - 160.0) < 2.0
    np.testing.assert_allclose(ends.on_the_line().end_xy, ends.end_line_xy)


def test_a_person_walking_on_after_a_short_gap_is_reachable() -> None:
    rows = walking_track(1, range(1, 21), speed=3.0) + walking_track(2, range(31, 51), speed=3.0)
    assert _gate(tracks_from_rows(rows))[0, 1]


def test_a_jump_across_the_frame_is_not() -> None:
    rows = walking_track(1, range(1, 21), speed=3.0) + walking_track(2, range(25, 45), x0=900.0, speed=3.0)
    assert not _gate(tracks_from_rows(rows))[0, 1]


def test_after_a_long_gap_a_far_start_is_reachable() -> None:
    rows = walking_track(1, range(1, 21), speed=0.0) + walking_track(2, range(121, 141), x0=400.0, speed=0.0)
    tracks = tracks_from_rows(rows)  # 300 px = 2.5 heights after a 4 s gap
    assert _gate(tracks, heights_per_second=1.0)[0, 1]
    assert not _gate(tracks, heights_per_second=0.4)[0, 1]


def test_a_person_who_stops_is_reachable_though_velocity_says_otherwise() -> None:
    rows = walking_track(1, range(1, 21), speed=5.0) + walking_track(2, range(60, 80), x0=200.0, speed=0.0)
    assert _gate(tracks_from_rows(rows))[0, 1]


def test_gate_is_symmetric_and_scale_free() -> None:
    rows = walking_track(1, range(1, 21), speed=3.0) + walking_track(2, range(31, 51), speed=3.0)
    small = tracks_from_rows(rows)
    big = TrackSet.from_arrays(small.frame, small.track_id, small.xyxy * 4, small.score)
    g = _gate(small)
    assert (g == g.T).all()
    assert (g == _gate(big)).all()


def test_a_size_change_is_measured_beyond_the_growth_over_the_gap() -> None:
    # Unseen in frames 21-40 while growing 1% a frame: 21 frames of growth from last box to first.
    tracks = tracks_from_rows(approaching_track(1, range(1, 21), 0.01) + approaching_track(2, range(41, 61), 0.01))
    ends = track_ends(tracks, tracks.track_ids)
    np.testing.assert_allclose(ends.end_growth, 0.01)
    change = np.log(ends.start_height[1] / ends.end_height[0])
    np.testing.assert_allclose(size_change(ends, 0, 1), change - 0.21, atol=1e-9)
    # Somebody of constant size who starts larger has changed by all of it.
    steady = tracks_from_rows(walking_track(1, range(1, 21)) + walking_track(2, range(41, 61)))
    steady.xyxy[steady.track_id == 2, 3] = 250.0
    np.testing.assert_allclose(size_change(track_ends(steady, steady.track_ids), 0, 1), np.log(150.0 / 120.0))


def test_stitching_judges_one_walk_where_the_gate_also_allows_turning_round() -> None:
    # Walks right to x=200 by frame 20; from frame 41 somebody walks left, from where the first
    # would be had they turned round at frame 20 (the person who walked right in the other
    # direction: carried back, the later track lands where the first ended).
    rows = walking_track(1, range(1, 21), speed=5.0) + walking_track(2, range(41, 61), x0=300.0, speed=-5.0)
    ends = track_ends(tracks_from_rows(rows), np.array([1, 2]))
    anyhow, _ = handover(ends, fps=25.0)
    walked, _ = handover(ends, fps=25.0, walk=True)
    assert anyhow[0, 1] < 1e-9
    # Both ends measured on 10 boxes: the one walk they agree on stands still, 105 px off.
    np.testing.assert_allclose(walked[0, 1], 105.0 / 120.0)


def test_the_walk_leans_on_the_end_measured_on_more_boxes() -> None:
    # Walks right at 5 px a frame; picked up 21 frames later where that walk leads, seen for 2 boxes
    # that say it stands still.
    rows = walking_track(1, range(1, 21), speed=5.0) + walking_track(2, range(41, 43), x0=200.0 + 105.0, speed=0.0)
    ends = track_ends(tracks_from_rows(rows), np.array([1, 2]))
    walked, _ = handover(ends, fps=25.0, walk=True)
    # Weights 9 : 1 (boxes less one): 4.5 px a frame over 21 frames, 10.5 px short of the start.
    np.testing.assert_allclose(walked[0, 1], 10.5 / 120.0)


def test_velocity_change_is_how_differently_a_later_track_walks_in_box_heights_per_second() -> None:
    rows = walking_track(1, range(1, 11), speed=2.0) + walking_track(2, range(12, 22), speed=2.0)
    rows += walking_track(3, range(12, 22), x0=300.0, speed=-4.0) + walking_track(4, range(12, 13))
    ends = track_ends(tracks_from_rows(rows), np.array([1, 2, 3, 4]))
    change = velocity_change(ends, np.array([0, 0, 0]), np.array([1, 2, 3]), fps=25.0)
    # the same walk; 6 px a frame the other way, at 25 fps, in boxes 120 px high; one box: unmeasured
    assert change == pytest.approx([0.0, 6.0 * 25.0 / 120.0, 0.0], abs=1e-9)
