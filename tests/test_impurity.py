from __future__ import annotations

import numpy as np

from reid_merge.core.impurity import (
    Split,
    apply_splits,
    find_impure_tracks,
    split_apart,
    undo_unclaimed_cuts,
)
from tests.builders import crossing_scene, tracks_from_rows, walking_track


def test_a_swapped_track_is_cut_at_the_swap_and_tracks_that_only_met_are_not() -> None:
    for seed in range(3):
        tracks, features, crop_track, crop_frame = crossing_scene(swap=True, seed=seed)
        splits = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005)
        assert sorted((s.track_id, s.frame) for s in splits) == [(1, 31), (2, 31)]
        assert all(s.margin > 0 for s in splits)


def test_the_whitening_is_fitted_on_stretches_so_the_swap_still_shows() -> None:
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
    splits = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005, adapt=(8, 0.1))
    assert sorted((s.track_id, s.frame) for s in splits) == [(1, 31), (2, 31)]


def test_nothing_is_cut_without_a_swap() -> None:
    for seed in range(3):
        tracks, features, crop_track, crop_frame = crossing_scene(swap=False, seed=seed)
        assert find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005) == []
        assert find_impure_tracks(tracks, features, crop_track, crop_frame, 0.005, adapt=(8, 0.1)) == []


def test_without_tracks_that_share_a_frame_nothing_is_cut() -> None:
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
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


def test_a_cut_only_the_looser_rate_makes_is_tentative_and_keeps_nothing_apart() -> None:
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
    firm = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005, tentative_rate=0.2)
    doubt = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=1e-30, tentative_rate=0.005)
    assert [(s.track_id, s.frame, s.tentative) for s in firm] == [(1, 31, False), (2, 31, False)]
    assert [(s.track_id, s.frame, s.tentative) for s in doubt] == [(1, 31, True), (2, 31, True)]
    assert find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=1e-30) == []
    ids = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert split_apart(firm, ids).sum() == 4 and not split_apart(doubt, ids).any()


def test_a_margin_is_taken_no_rarer_than_the_pairs_behind_its_spread_can_tell() -> None:
    # The swap lies 11 spreads out, where a normal says 1 in 10^28; the spread is known from the
    # scene's 28 pairs that share a frame, which can tell about 1 in 10^11, and no more.
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
    for false_rate, tentative in ((1e-9, False), (1e-20, True)):
        splits = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate, tentative_rate=0.2)
        assert [(s.track_id, s.frame, s.tentative) for s in splits] == [(1, 31, tentative), (2, 31, tentative)]


def test_an_unclaimed_tentative_cut_is_undone_in_order_where_no_frame_is_shared() -> None:
    ids = np.array([1, 2, 3, 4, 5])
    twice = [Split(1, 3, 10, 2.0, tentative=True), Split(3, 4, 20, 2.0, tentative=True)]
    labels, undone = undo_unclaimed_cuts(twice, ids, np.array([0, 1, 2, 3, 4]), np.zeros((5, 5), dtype=bool))
    assert labels.tolist() == [0, 1, 0, 0, 4] and undone == twice  # taken back whole
    claimed = np.array([0, 1, 2, 3, 3])  # track 4 was joined to track 5
    labels, undone = undo_unclaimed_cuts(twice, ids, claimed, np.zeros((5, 5), dtype=bool))
    assert labels.tolist() == [0, 1, 0, 3, 3] and undone == twice[:1]
    claimed = np.array([0, 1, 4, 3, 4])  # track 3 was joined to track 5
    labels, undone = undo_unclaimed_cuts(twice, ids, claimed, np.zeros((5, 5), dtype=bool))
    assert labels.tolist() == [0, 1, 4, 4, 4] and undone == twice[1:]
    shared = np.zeros((5, 5), dtype=bool)
    shared[2, 0] = shared[0, 2] = True  # track 3 shares a frame with track 1
    labels, undone = undo_unclaimed_cuts(twice[:1], ids, np.array([0, 1, 2, 3, 4]), shared)
    assert labels.tolist() == [0, 1, 2, 3, 4] and undone == []
    firm = [Split(1, 3, 10, 2.0)]
    assert undo_unclaimed_cuts(firm, ids, np.array([0, 1, 2, 3, 4]), np.zeros((5, 5), dtype=bool))[1] == []


def test_a_new_look_that_nobody_met_had_is_not_cut() -> None:
    """Track 1 looks different after its encounter with track 2 (as a change of light or of
    background makes it), but not like track 2 looked: nobody took the ID over, nothing is cut;
    the swap itself still is (above)."""
    for seed in range(3):
        tracks, features, crop_track, crop_frame = crossing_scene(swap=False, seed=seed)
        rng = np.random.default_rng(100 + seed)
        changed = (crop_track == 1) & (crop_frame >= 31)
        features[changed] = rng.normal(size=32) + 0.35 * rng.normal(size=(int(changed.sum()), 32))
        features[changed] /= np.linalg.norm(features[changed], axis=1, keepdims=True)
        assert find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005) == []


def test_a_new_look_only_a_little_like_somebody_met_is_not_cut() -> None:
    """After its encounter track 1 looks unlike itself and a little like track 2 (as when
    somebody walks in front of it): more like track 2 than like its own earlier side, yet far
    less alike than one person across a place is, so nobody took the ID over."""
    for seed in range(3):
        tracks, features, crop_track, crop_frame = crossing_scene(swap=False, seed=seed)
        rng = np.random.default_rng(200 + seed)
        changed = (crop_track == 1) & (crop_frame >= 31)
        track_2 = features[(crop_track == 2) & (crop_frame < 31)].mean(axis=0)
        new_look = rng.normal(size=32)
        new_look /= np.linalg.norm(new_look)
        features[changed] = (
            0.4 * track_2 / np.linalg.norm(track_2) + new_look + 0.35 * rng.normal(size=(int(changed.sum()), 32))
        )
        features[changed] /= np.linalg.norm(features[changed], axis=1, keepdims=True)
        assert find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005) == []


def test_a_swap_where_the_tracker_picked_both_up_again_is_cut_there() -> None:
    """Lost for frames 10-25, picked up again as they meet, lost again at 30-33 and picked up
    swapped: the encounter's place is the first pick-up (the box moved most over the longer
    loss); the second, next to somebody, is a place of its own."""
    lost = (*range(10, 26), *range(30, 34))
    for seed in range(3):
        tracks, features, crop_track, crop_frame = crossing_scene(swap=True, seed=seed, lost=lost, swap_at=34)
        splits = find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005)
        assert sorted((s.track_id, s.frame) for s in splits) == [(1, 34), (2, 34)]


def test_a_pick_up_without_a_swap_is_not_cut() -> None:
    lost = (*range(10, 26), *range(30, 34))
    for seed in range(3):
        tracks, features, crop_track, crop_frame = crossing_scene(swap=False, seed=seed, lost=lost)
        assert find_impure_tracks(tracks, features, crop_track, crop_frame, false_rate=0.005) == []
