from __future__ import annotations

import numpy as np

from reid_merge.core.impurity import apply_splits, best_split, find_impure_tracks, jump_frame
from tests.builders import tracks_from_rows, walking_track


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_one_person_has_a_small_margin_two_people_a_large_one() -> None:
    rng = np.random.default_rng(0)
    person_a, person_b = rng.normal(size=64), rng.normal(size=64)
    one = _unit(person_a + 0.3 * rng.normal(size=(12, 64)))
    two = _unit(np.vstack([person_a + 0.3 * rng.normal(size=(7, 64)), person_b + 0.3 * rng.normal(size=(5, 64))]))
    assert best_split(one)[1] < 0.1
    s, margin = best_split(two)
    assert s == 7 and margin > 0.5


def test_too_few_crops_are_never_split() -> None:
    assert best_split(np.eye(5))[1] == -np.inf


def test_the_cut_goes_where_the_box_jumps() -> None:
    rows = walking_track(1, range(1, 21)) + [(f, 1, 400.0, 100.0, 440.0, 220.0) for f in range(21, 41)]
    track = tracks_from_rows(rows)
    assert jump_frame(track, after=15, before=30) == 21


def test_find_and_apply_splits_relabel_detections_and_crops() -> None:
    rows = walking_track(1, range(1, 21)) + [(f, 1, 400.0, 100.0, 440.0, 220.0) for f in range(21, 41)]
    rows += walking_track(2, range(1, 41), x0=200.0)
    tracks = tracks_from_rows(rows)
    crop_frame = np.array([2, 6, 10, 14, 25, 30, 35, 39, 2, 10, 20, 30, 39, 35])
    crop_track = np.array([1] * 8 + [2] * 6)
    features = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4 + [[0.7, 0.7]] * 6)
    splits = find_impure_tracks(tracks, features, crop_track, crop_frame, margin=0.5)
    assert [(s.track_id, s.new_track_id, s.frame) for s in splits] == [(1, 3, 21)]
    split_tracks, split_crops = apply_splits(tracks, crop_track, crop_frame, splits)
    assert set(
        split_tracks.track_id[split_tracks.frame >= 21][split_tracks.xyxy[split_tracks.frame >= 21, 0] == 400]
    ) == {3}
    assert split_crops.tolist() == [1, 1, 1, 1, 3, 3, 3, 3] + [2] * 6
