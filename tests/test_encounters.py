from __future__ import annotations

from reid_merge.core.encounters import close_pairs, encounter_frames, jump_frame, near_another
from tests.builders import crossing_scene, tracks_from_rows, walking_track


def test_boxes_within_a_box_width_are_close_farther_ones_are_not() -> None:
    rows = [(1, 1, 0.0, 0.0, 40.0, 120.0), (1, 2, 80.0, 0.0, 120.0, 120.0), (1, 3, 121.0 + 40.0, 0, 200, 120)]
    tracks = tracks_from_rows(rows)
    frame, first, second = close_pairs(tracks)
    assert (frame.tolist(), first.tolist(), second.tolist()) == ([1], [0], [1])
    assert near_another(tracks).tolist() == [True, True, False]


def test_the_cut_goes_where_the_box_jumps() -> None:
    rows = walking_track(1, range(1, 21)) + [(f, 1, 400.0, 100.0, 440.0, 220.0) for f in range(21, 41)]
    track = tracks_from_rows(rows)
    assert jump_frame(track, after=15, before=30) == 21


def test_an_encounter_is_a_candidate_at_the_swap() -> None:
    tracks, *_ = crossing_scene(swap=True)
    near = near_another(tracks)
    one = tracks.track_id == 1
    assert encounter_frames(tracks[one], near[one]).tolist() == [31]
    alone = tracks.track_id == 5
    assert encounter_frames(tracks[alone], near[alone]).tolist() == []
