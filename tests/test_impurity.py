from __future__ import annotations

import numpy as np

from reid_merge.impurity import (
    Split,
    apply_splits,
    close_pairs,
    encounter_frames,
    find_impure_tracks,
    jump_frame,
    near_another,
    split_apart,
)
from reid_merge.tracks import TrackSet
from tests.builders import tracks_from_rows, walking_track

FRAMES = range(1, 61)


def _crossing(track_id: int, x0: float, speed: float, y: float) -> list[tuple]:
    return [(f, track_id, x0 + speed * f, y, x0 + speed * f + 40.0, y + 120.0) for f in FRAMES]


def _scene(swap: bool, seed: int = 0) -> tuple[TrackSet, np.ndarray, np.ndarray, np.ndarray]:
    """Persons 1 and 2 cross at frame 30 (the tracker swaps their IDs there when `swap`); 3 and 4
    cross at frame 30 too and keep theirs; 5 to 8 walk alone, far from everybody."""
    rows = _crossing(1, 0.0, 4.0, 100.0) + _crossing(2, 240.0, -4.0, 140.0)
    rows += _crossing(3, 1000.0, 4.0, 100.0) + _crossing(4, 1240.0, -4.0, 140.0)
    for k, track_id in enumerate(range(5, 9)):
        rows += walking_track(track_id, FRAMES, x0=2000.0 + 400.0 * k)
    tracks = tracks_from_rows(rows)
    person = tracks.track_id.copy()
    if swap:
        later = tracks.frame >= 31
        tracks = TrackSet(
            tracks.frame,
            np.where(later & (person == 1), 2, np.where(later & (person == 2), 1, person)),
            tracks.xyxy,
            tracks.score,
        )
    rng = np.random.default_rng(seed)
    look = rng.normal(size=(9, 32))
    crop_frame = np.tile(np.linspace(2, 59, 16).round().astype(np.int64), 8)
    crop_track = np.repeat(np.arange(1, 9), 16)
    crop_person = np.array(
        [person[(tracks.track_id == t) & (tracks.frame == f)][0] for t, f in zip(crop_track, crop_frame)]
    )
    features = look[crop_person] + 0.35 * rng.normal(size=(len(crop_track), 32))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return tracks, features, crop_track, crop_frame


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
    tracks, *_ = _scene(swap=True)
    near = near_another(tracks)
    one = tracks.track_id == 1
    assert encounter_frames(tracks[one], near[one]).tolist() == [31]
    alone = tracks.track_id == 5
    assert encounter_frames(tracks[alone], near[alone]).tolist() == []


def test_a_swapped_track_is_cut_at_the_swap_and_tracks_that_only_met_are_not() -> None:
    for seed in range(3):
        tracks, features, crop_track, crop_frame = _scene(swap=True, seed=seed)
        splits = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005)
        assert sorted((s.track_id, s.frame) for s in splits) == [(1, 31), (2, 31)]
        assert all(s.margin > 0 for s in splits)


def test_nothing_is_cut_without_a_swap() -> None:
    for seed in range(3):
        tracks, features, crop_track, crop_frame = _scene(swap=False, seed=seed)
        assert find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005) == []


def test_without_tracks_that_share_a_frame_nothing_is_cut() -> None:
    tracks, features, crop_track, crop_frame = _scene(swap=True)
    # One track only: no pair of different people to learn from.
    one = tracks.track_id == 1
    crops = crop_track == 1
    assert find_impure_tracks(tracks[one], features[crops], crop_track[crops], crop_frame[crops], 0.005) == []


def test_apply_splits_relabels_detections_and_crops_in_order() -> None:
    tracks = tracks_from_rows(walking_track(1, range(1, 31)) + walking_track(2, range(1, 31), x0=500.0))
    crop_frame = np.array([5, 15, 25, 5, 25])
    crop_track = np.array([1, 1, 1, 2, 2])
    splits = [Split(1, 3, 11, 1.0), Split(3, 4, 21, 1.0)]  # the second cuts the part the first made
    split_tracks, split_crops = apply_splits(tracks, crop_track, crop_frame, splits)
    first = split_tracks.track_id[tracks.track_id == 1]
    assert first.tolist() == [1] * 10 + [3] * 10 + [4] * 10
    assert split_crops.tolist() == [1, 3, 4, 2, 2]
    apart = split_apart(splits, split_tracks.track_ids)
    assert np.argwhere(np.triu(apart)).tolist() == [[0, 2], [2, 3]]  # ids 1|3 and 3|4
