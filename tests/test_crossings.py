from __future__ import annotations

import numpy as np

from reid_merge.core.crossings import Crossing, crossings, cut_at_crossings
from reid_merge.core.impurity import apply_splits
from reid_merge.core.stitching import Envelope, HandoverModel
from reid_merge.core.tracks import TrackSet
from tests.builders import crossing_scene, tracks_from_rows

FPS = 25.0
#: One person's hand-over over one frame strays at most a tenth of a box height, changes size
#: by at most 5%, speed by at most half a box height per second, and width for the height by at
#: most 10%.
ONE_FRAME = HandoverModel(Envelope(0.1, 0.0), Envelope(0.05, 0.0), 100, Envelope(0.5, 0.0), Envelope(0.1, 0.0))
ODDS_39 = float(np.log(39.0))


def _jittered(tracks: TrackSet, seed: int, pixels: float = 1.5) -> TrackSet:
    """The boxes shaken by a pixel or two, as a detector's are."""
    noise = np.random.default_rng(seed).normal(scale=pixels, size=tracks.xyxy.shape)
    return TrackSet(tracks.frame, tracks.track_id, tracks.xyxy + noise, tracks.score)


def test_two_tracks_that_swapped_where_they_crossed_are_found_there_and_those_that_kept_their_ids_are_not() -> None:
    for seed in range(3):
        tracks = _jittered(crossing_scene(swap=True)[0], seed)
        found = crossings(tracks, FPS, ONE_FRAME, ODDS_39)
        assert [(c.first, c.second, c.frame) for c in found] == [(1, 2, 31)]  # 3 and 4 crossed too
        assert found[0].log_odds > ODDS_39


def test_where_two_walk_as_one_motion_cannot_tell_and_nothing_is_cut() -> None:
    """Two people on the same path a pixel apart, their IDs swapped: either linking fits."""
    rows = [(f, 1, 4.0 * f, 100.0, 4.0 * f + 40.0, 220.0) for f in range(1, 60)]
    rows += [(f, 2, 4.0 * f + 1.0, 101.0, 4.0 * f + 41.0, 221.0) for f in range(1, 60)]
    tracks = tracks_from_rows(rows)
    swapped = TrackSet(
        tracks.frame, np.where(tracks.frame >= 31, 3 - tracks.track_id, tracks.track_id), tracks.xyxy, tracks.score
    )
    assert crossings(_jittered(swapped, 0), FPS, ONE_FRAME, ODDS_39) == []


def test_a_track_that_begins_where_it_met_somebody_has_no_walk_before_it_to_judge() -> None:
    tracks = _jittered(crossing_scene(swap=True)[0], 0)
    late = (tracks.track_id != 1) | (tracks.frame >= 30)  # track 1 seen only from frame 30 on
    assert crossings(tracks[late], FPS, ONE_FRAME, ODDS_39) == []


def test_both_tracks_are_cut_and_a_later_crossing_cuts_the_part_the_earlier_one_made() -> None:
    tracks = tracks_from_rows([(f, t, 0.0, 0.0, 10.0, 30.0) for t in (1, 2, 3) for f in range(1, 40)])
    found = [Crossing(1, 3, 25, 9.0), Crossing(1, 2, 10, 5.0)]
    splits = cut_at_crossings(tracks, found)
    assert [(s.track_id, s.new_track_id, s.frame, s.by) for s in splits] == [
        (1, 4, 10, "motion"),
        (2, 5, 10, "motion"),
        (4, 6, 25, "motion"),  # track 1 from frame 10 on is part 4 by then
        (3, 7, 25, "motion"),
    ]
    cut, _ = apply_splits(tracks, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), splits)
    assert cut.track_id[tracks.track_id == 1][[0, 9, 24]].tolist() == [1, 4, 6]


def _shaped(tracks: TrackSet, broad: np.ndarray) -> TrackSet:
    """The same centres and heights, boxes `broad` twice as wide for their height as the rest."""
    centre, height = (tracks.xyxy[:, 0] + tracks.xyxy[:, 2]) / 2.0, tracks.xyxy[:, 3] - tracks.xyxy[:, 1]
    half = np.where(broad, 0.35, 0.175) * height
    xyxy = np.column_stack([centre - half, tracks.xyxy[:, 1], centre + half, tracks.xyxy[:, 3]])
    return TrackSet(tracks.frame, tracks.track_id, xyxy, tracks.score)


def test_boxes_that_keep_their_shape_where_their_paths_jump_were_not_swapped() -> None:
    """A swap hands each person's shape on with the person; where each track keeps its own
    (a box around two people beside a narrow one, both jumping: KITTI-17), crosswise would make
    each person change shape at once, and nothing is cut."""
    tracks = _jittered(crossing_scene(swap=True)[0], 0)
    later = tracks.frame >= 31
    person = np.where(later & np.isin(tracks.track_id, (1, 2)), 3 - tracks.track_id, tracks.track_id)
    shape_with_the_person = crossings(_shaped(tracks, person == 1), FPS, ONE_FRAME, ODDS_39)
    shape_with_the_track = crossings(_shaped(tracks, tracks.track_id == 1), FPS, ONE_FRAME, ODDS_39)
    assert [(c.first, c.second, c.frame) for c in shape_with_the_person] == [(1, 2, 31)]
    assert shape_with_the_track == []


def _boxed_twice(upper_share: float) -> TrackSet:
    """One person walking right, boxed twice: once whole and once down to `upper_share` of the
    height from the top; the two boxes trade tracks at frame 31 (the detector's boxes of one
    person, the shorter one taken up by the other track)."""
    rows = []
    for f in range(1, 60):
        x, top, bottom = 4.0 * f, 100.0, 220.0
        short = top + upper_share * (bottom - top)
        whole, upper = (x, top, x + 44.0, bottom), (x, top, x + 44.0, short)
        first, second = (whole, upper) if f < 31 else (upper, whole)
        rows += [(f, 1, *first), (f, 2, *second)]
    return tracks_from_rows(rows)


def test_two_boxes_of_one_person_that_trade_tracks_change_nobody_and_are_not_cut() -> None:
    """Both boxes cover one person on both sides of the place (IoU 0.7): whichever track holds
    which box, each holds that person (KITTI-17 tracked from 0.5: two tracks cut there, neither
    joined again). Two people of those sizes, side by side at IoU 0.4, are cut."""
    assert crossings(_jittered(_boxed_twice(0.7), 0), FPS, ONE_FRAME, ODDS_39) == []
    found = crossings(_jittered(_boxed_twice(0.4), 0), FPS, ONE_FRAME, ODDS_39)
    assert [(c.first, c.second, c.frame) for c in found] == [(1, 2, 31)]
