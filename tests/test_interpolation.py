"""Gap filling: which gaps are filled, where the boxes go, and what never happens."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_merge.core.interpolation import FILLED_SCORE, fill_gaps
from reid_merge.core.tracks import TrackSet
from tests.builders import tracks_from_rows, walking_track


def test_a_short_gap_of_a_walk_is_filled_on_the_straight_line() -> None:
    walk = walking_track(1, range(1, 11)) + walking_track(1, range(15, 25))
    filled, mask = fill_gaps(tracks_from_rows(walk), max_gap_frames=5, fps=25)
    assert filled.frame[mask].tolist() == [11, 12, 13, 14]
    assert np.allclose(filled.xyxy[mask], [row[2:] for row in walking_track(1, range(11, 15))])
    assert (filled.score[mask] == FILLED_SCORE).all() and (filled.score[~mask] == 0.9).all()
    assert len(filled[~mask]) == len(walk)


def test_a_gap_longer_than_the_limit_is_left_open() -> None:
    walk = walking_track(1, range(1, 11)) + walking_track(1, range(20, 30))
    filled, mask = fill_gaps(tracks_from_rows(walk), max_gap_frames=8, fps=25)
    assert not mask.any() and len(filled) == len(walk)
    _, mask = fill_gaps(tracks_from_rows(walk), max_gap_frames=9, fps=25)
    assert mask.sum() == 9


def test_no_fill_across_a_jump_no_walk_could_make() -> None:
    # Box height 120 px: 0.5 + 1.0 x 0.2 s = 0.7 heights (84 px) are plausible over this gap,
    # 300 px are not, though a track could be merged across it by a user's --merge.
    near = walking_track(1, range(1, 11)) + walking_track(1, range(16, 26))
    far = walking_track(2, range(1, 11)) + walking_track(2, range(16, 26), x0=400.0)
    filled, mask = fill_gaps(tracks_from_rows(near + far), max_gap_frames=10, fps=25)
    assert filled.track_id[mask].tolist() == [1] * 5


def test_gaps_are_per_person_and_other_people_are_untouched() -> None:
    rows = walking_track(1, [1, 2, 5, 6]) + walking_track(2, range(1, 7), x0=300.0)
    filled, mask = fill_gaps(tracks_from_rows(rows), max_gap_frames=3, fps=25)
    assert sorted(zip(filled.frame[mask].tolist(), filled.track_id[mask].tolist())) == [(3, 1), (4, 1)]


def test_gsi_smooths_a_jittery_walk_and_keeps_frames_and_scores() -> None:
    rng = np.random.default_rng(0)
    rows = [(f, 1, x1 + rng.normal(0, 3), y1, x2, y2) for f, _, x1, y1, x2, y2 in walking_track(1, range(1, 41))]
    del rows[18:21]
    tracks = tracks_from_rows(rows)
    linear, linear_mask = fill_gaps(tracks, 5, 25, method="linear")
    smooth, smooth_mask = fill_gaps(tracks, 5, 25, method="gsi")
    assert np.array_equal(linear.frame, smooth.frame) and np.array_equal(linear_mask, smooth_mask)
    assert np.array_equal(linear.score, smooth.score)
    truth = 100.0 + 2.0 * smooth.frame
    assert np.abs(smooth.xyxy[:, 0] - truth).mean() < np.abs(linear.xyxy[:, 0] - truth).mean()


def test_nothing_to_fill() -> None:
    assert len(fill_gaps(TrackSet.empty(), 10, 25)[0]) == 0
    tracks = tracks_from_rows(walking_track(1, [1, 5]))
    assert not fill_gaps(tracks, 0, 25)[1].any()
    with pytest.raises(ValueError, match="method"):
        fill_gaps(tracks, 5, 25, method="cubic")  # type: ignore[arg-type]


@st.composite
def persons(draw: st.DrawFn) -> TrackSet:
    """Up to 5 persons, each seen in a random subset of 60 frames, walking with random jumps."""
    rows = []
    for person in range(1, draw(st.integers(1, 5)) + 1):
        frames = sorted(draw(st.sets(st.integers(1, 60), min_size=1, max_size=40)))
        x = draw(st.floats(0, 500))
        for f in frames:
            x += draw(st.sampled_from([0.0, 2.0, 5.0, 150.0]))
            rows.append((f, person, x, 50.0, x + 30.0, 150.0))
    return tracks_from_rows(rows)


@settings(max_examples=60, deadline=None)
@given(
    tracks=persons(),
    max_gap=st.integers(0, 30),
    fps=st.sampled_from([10.0, 25.0, 30.0]),
    method=st.sampled_from(["linear", "gsi"]),
)
def test_filled_boxes_only_in_a_persons_missing_frames_inside_the_span(
    tracks: TrackSet, max_gap: int, fps: float, method: str
) -> None:
    filled, mask = fill_gaps(tracks, max_gap, fps, method=method)  # type: ignore[arg-type]
    assert len(filled.duplicate_rows()) == 0  # no person has two boxes in one frame
    kept = filled[~mask]
    assert sorted(zip(kept.frame.tolist(), kept.track_id.tolist())) == sorted(
        zip(tracks.frame.tolist(), tracks.track_id.tolist())
    )
    for person in tracks.track_ids:
        own = tracks.frame[tracks.track_id == person]
        added = filled.frame[mask & (filled.track_id == person)]
        assert ((added > own.min()) & (added < own.max())).all()  # only inside the person's span
        # only in gaps no longer than the limit
        following = own[np.searchsorted(own, added)]
        preceding = own[np.searchsorted(own, added) - 1]
        assert (following - preceding - 1 <= max_gap).all()
    assert (filled.xyxy[:, 2] > filled.xyxy[:, 0]).all() and (filled.xyxy[:, 3] > filled.xyxy[:, 1]).all()


def test_sure_filling_bridges_only_gaps_between_sure_boxes() -> None:
    walk = walking_track(1, range(1, 11)) + walking_track(1, range(15, 25))
    scores = [0.3 if frame == 10 else 0.9 for frame, *_ in walk]  # unsure where the track was lost
    tracks = TrackSet.from_arrays([r[0] for r in walk], [r[1] for r in walk], [r[2:] for r in walk], scores)
    assert fill_gaps(tracks, 5, 25)[1].sum() == 4
    assert fill_gaps(tracks, 5, 25, sure_score=0.3)[1].sum() == 4
    assert not fill_gaps(tracks, 5, 25, sure_score=0.5)[1].any()


def test_sure_filling_puts_no_box_onto_another_tracks() -> None:
    walk = walking_track(1, range(1, 11)) + walking_track(1, range(15, 25))
    # Another track holds the box where person 1 would be in frames 12 and 13: the same person
    # tracked twice, or somebody in front. Either way a filled box there would be a second box.
    double = [row for row in walking_track(2, range(12, 14))]
    filled, mask = fill_gaps(tracks_from_rows(walk + double), 5, 25)
    assert sorted(filled.frame[mask & (filled.track_id == 1)].tolist()) == [11, 12, 13, 14]
    filled, mask = fill_gaps(tracks_from_rows(walk + double), 5, 25, sure_score=0.5)
    assert sorted(filled.frame[mask].tolist()) == [11, 14]
