"""Stitching fragments end to start: bounds learnt from the video, one successor per fragment."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_merge.core.motion import handover, track_ends
from reid_merge.core.stitching import (
    FALLBACK_MODEL,
    Envelope,
    HandoverModel,
    _best_matching,
    _Detours,
    beyond_the_handover,
    chains,
    clutter_density,
    crosses_the_edge,
    handover_model,
    link_weights,
    stitch,
    stitch_error,
)
from reid_merge.core.tracks import TrackSet, cooccurrence
from tests.builders import approaching_track, tracks_from_rows, walking_track


def _walkers(jitter: float, seed: int = 0, lane: float = 150.0) -> TrackSet:
    """Eight people walking in lanes `lane` px apart, 100 frames each, boxes jittered by `jitter` px."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(8):
        for f, t, x1, y1, x2, y2 in walking_track(person + 1, range(1, 101), x0=10.0 * person, speed=1.5):
            dx, dy = rng.normal(0.0, jitter, 2)
            rows.append((f, t, x1 + dx, y1 + lane * person + dy, x2 + dx, y2 + lane * person + dy))
    return tracks_from_rows(rows)


def test_the_bounds_are_learnt_from_the_video_not_fixed() -> None:
    steady, shaky = handover_model(_walkers(0.5), 25.0, 3.0), handover_model(_walkers(6.0), 25.0, 3.0)
    assert steady.samples >= 20 and shaky.samples >= 20
    assert steady.position.slack < shaky.position.slack
    assert steady.position.at(1.0) < FALLBACK_MODEL.position.at(1.0)


def test_how_much_boxes_change_shape_is_learnt_too() -> None:
    walkers = _walkers(0.5)
    wobble = np.random.default_rng(1).normal(0.0, 4.0, len(walkers))  # arms and legs swinging
    wider = walkers.xyxy + np.column_stack([-wobble, np.zeros_like(wobble), wobble, np.zeros_like(wobble)])
    swinging = TrackSet(walkers.frame, walkers.track_id, wider, walkers.score)
    steady, swung = handover_model(walkers, 25.0, 3.0), handover_model(swinging, 25.0, 3.0)
    assert steady.aspect.at(0.5) < swung.aspect.at(0.5)
    assert steady.position.at(0.5) == pytest.approx(swung.position.at(0.5))  # centres the same
    recorded = steady.to_dict()  # as tracks.json records the bounds that judged crossings
    assert (recorded["aspect_slack_log"], recorded["aspect_log_per_second"]) == (
        steady.aspect.slack,
        steady.aspect.rate,
    )


def test_too_few_long_tracks_fall_back_to_the_default_bounds() -> None:
    short = tracks_from_rows(walking_track(1, range(1, 8)) + walking_track(2, range(20, 26)))
    assert handover_model(short, 25.0, 3.0) == FALLBACK_MODEL


def _lost_and_found(second_start: dict[int, tuple[float, float]], lane: float = 150.0) -> TrackSet:
    """Two people walking right in lanes `lane` px apart (boxes 120 px tall), both lost in frames
    41-50; `second_start` gives, per person, the (x shift, scale) of the box where the later
    fragment starts."""
    rows = []
    for person, (shift, scale) in second_start.items():
        y = 100.0 + lane * person
        for f in range(1, 41):
            rows.append((f, 2 * person + 1, 2.0 * f, y, 2.0 * f + 40.0, y + 120.0))
        for f in range(51, 91):
            x = 2.0 * f + shift
            rows.append((f, 2 * person + 2, x, y, x + 40.0 * scale, y + 120.0 * scale))
    return tracks_from_rows(rows)


def _stitched(tracks: TrackSet, ratio: float = 49.0, model: HandoverModel | None = None) -> list[tuple[int, int]]:
    ids = tracks.track_ids
    ends = track_ends(tracks, ids)
    error, gap = stitch_error(ends, 25.0)
    model = model or handover_model(_walkers(1.0), 25.0, 3.0)  # a steady camera, as learnt elsewhere
    weight = link_weights(ends, error, gap, model, clutter_density(tracks, ids), 3.0, ~cooccurrence(tracks, ids))
    links = stitch(weight, np.log(ratio))
    return [(int(ids[i]), int(ids[j])) for i, j in links.pairs]


def test_a_start_far_beyond_the_video_s_hand_over_is_nobody_the_join_may_take() -> None:
    # Person 0 is picked up 300 px (2.5 box heights) off where they were going after 0.4 s;
    # person 1 where expected. Each track its own chain.
    tracks = _lost_and_found({0: (300.0, 1.0), 1: (0.0, 1.0)})
    ids = tracks.track_ids
    ends = track_ends(tracks, ids)
    error, gap = handover(ends, 25.0)
    steady = handover_model(_walkers(1.0), 25.0, 3.0)
    each_alone = np.arange(len(ids))
    apart = beyond_the_handover(ends, error, gap, steady, each_alone, 3.0)
    assert apart[0, 1] and apart[1, 0]  # track 1 -> 2: too far
    assert not apart[2, 3]  # track 3 -> 4 fits
    assert apart[0, 3]  # track 1 -> 4: the other lane, 1.25 box heights off
    # Beyond the gap motion speaks for, appearance alone decides.
    assert not beyond_the_handover(ends, error, gap, steady, each_alone, 0.2).any()
    # A chain is judged at its last track's end: with track 2 after track 1, that chain ends
    # after track 4 starts, and their shared frames are the cannot-link's business.
    assert not beyond_the_handover(ends, error, gap, steady, np.array([0, 0, 1, 2]), 3.0)[0, 2]


def test_each_fragment_is_continued_by_its_own_person_one_to_one() -> None:
    assert _stitched(_lost_and_found({0: (0.0, 1.0), 1: (0.0, 1.0)})) == [(1, 2), (3, 4)]


def test_a_start_off_the_walk_or_of_another_size_is_not_a_continuation() -> None:
    # Person 0 reappears 3 box heights ahead of where the walk leads; person 1 twice as tall.
    assert _stitched(_lost_and_found({0: (360.0, 1.0), 1: (0.0, 2.0)})) == []


def test_who_walked_left_is_not_continued_by_somebody_walking_right_from_there() -> None:
    # Person 1 walks left and is lost at frame 40; from frame 51 somebody walks right from where
    # person 1 would be, had they turned round when lost (carried back, the later track lands
    # on the first one's end). Only one walk that both ends agree on is a continuation; the
    # same start walking left is stitched.
    left = [(f, 1, 300.0 - 2.0 * f, 100.0, 340.0 - 2.0 * f, 220.0) for f in range(1, 41)]
    turned = [(f, 2, 220.0 + 2.0 * (f - 40), 100.0, 260.0 + 2.0 * (f - 40), 220.0) for f in range(51, 91)]
    walked_on = [(f, 2, 220.0 - 2.0 * (f - 40), 100.0, 260.0 - 2.0 * (f - 40), 220.0) for f in range(51, 91)]
    assert _stitched(tracks_from_rows(left + turned)) == []
    assert _stitched(tracks_from_rows(left + walked_on)) == [(1, 2)]


def test_a_hand_over_is_read_at_the_box_or_on_the_line_whichever_lands_better() -> None:
    # Walking right, lost in frames 41-50, found where the walk leads. Jittered: the last box
    # is 15 px below the walk, which the line through the last ten boxes mostly ignores.
    # Stepped aside: the later track starts 15 px below the walk, as the last box foretold.
    def handed_over(found_dy: float) -> tuple[float, float, float]:
        rows = [
            (f, 1, x1, y1 + (15.0 if f == 40 else 0.0), x2, y2 + (15.0 if f == 40 else 0.0))
            for f, _, x1, y1, x2, y2 in walking_track(1, range(1, 41))
        ]
        found = walking_track(2, range(51, 91))
        rows += [(f, 2, x1, y1 + found_dy, x2, y2 + found_dy) for f, _, x1, y1, x2, y2 in found]
        ends = track_ends(tracks_from_rows(rows), np.array([1, 2]))
        at_the_box, on_the_line = (float(stitch_error(e, 25.0)[0][0, 1]) for e in (ends, ends.on_the_line()))
        return float(stitch_error(ends, 25.0, on_the_line=True)[0][0, 1]), at_the_box, on_the_line

    jittered, at_the_box, on_the_line = handed_over(0.0)
    assert jittered == on_the_line < 0.6 * at_the_box
    stepped_aside, at_the_box, on_the_line = handed_over(15.0)
    assert stepped_aside == at_the_box < on_the_line


def test_who_comes_towards_the_camera_grows_as_foretold_and_is_stitched() -> None:
    # Both lost for 40 frames while growing 1% a frame: their boxes start half as large again,
    # beyond a size bound of 0.2, yet as their growth over the gap foretold.
    rows = []
    for person in range(2):
        y = 300.0 + 400.0 * person
        rows += approaching_track(2 * person + 1, range(1, 41), 0.01, y, since=40)
        rows += approaching_track(2 * person + 2, range(81, 121), 0.01, y, since=40)
    steady = handover_model(_walkers(1.0), 25.0, 3.0)
    model = HandoverModel(steady.position, Envelope(0.2, 0.0), steady.samples)
    assert _stitched(tracks_from_rows(rows), model=model) == [(1, 2), (3, 4)]


def test_companions_whose_swap_is_as_likely_are_not_stitched() -> None:
    # With a shaky camera's bounds, 10 px apart the swapped links land as well as the right
    # ones: either choice is a guess, so neither is made. 30 px apart motion can tell.
    shaky = handover_model(_walkers(6.0), 25.0, 3.0)
    side_by_side = {0: (0.0, 1.0), 1: (0.0, 1.0)}
    assert _stitched(_lost_and_found(side_by_side, lane=10.0), model=shaky) == []
    assert _stitched(_lost_and_found(side_by_side, lane=30.0), model=shaky) == [(1, 2), (3, 4)]


def test_a_link_is_made_only_with_a_margin_over_every_alternative() -> None:
    # Row i is track i's end, column j track j's start. 0 -> 1 beats 1 -> 0's swap partner by
    # far more than the margin; in the second matrix the swap is nearly as likely.
    assert stitch(np.array([[0.0, 9.0], [0.0, 0.0]]), 5.0).pairs == [(0, 1)]
    two_starts = stitch(np.array([[0.0, 9.0, 8.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), 5.0)
    assert two_starts.pairs == [] and two_starts.ambiguous == 1
    # 0 -> 1 -> 2, where 0 -> 2 (skipping 1) is nearly as likely as 0 -> 1: the same person
    # linked otherwise, not a rival, so 0 -> 1 stands; 1 -> 2 alone is too weak.
    skip = np.array([[0.0, 9.0, 8.5], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    assert stitch(skip, 5.0).pairs == [(0, 1)]


def test_each_link_can_be_asked_its_own_margin() -> None:
    # Two independent links of evidence 4: made at a margin of 3, not at 5, each by its own.
    weight = np.zeros((4, 4))
    weight[0, 1] = weight[2, 3] = 4.0
    margin = np.full((4, 4), 3.0)
    margin[2, 3] = 5.0
    links = stitch(weight, margin)
    assert links.pairs == [(0, 1)] and links.ambiguous == 0


def test_a_higher_ratio_needs_stronger_evidence() -> None:
    tracks = _lost_and_found({0: (0.0, 1.0), 1: (0.0, 1.0)})
    assert _stitched(tracks, 49.0) == [(1, 2), (3, 4)]
    assert _stitched(tracks, 1e12) == []


def test_clutter_grows_with_the_crowd() -> None:
    alone, apart, crowd = (
        clutter_density(walkers, walkers.track_ids)
        for walkers in (_walkers(0.0, lane=lane) for lane in (1000.0, 150.0, 40.0))
    )
    assert (alone == 0.0).all() and (apart > 0.0).all() and (crowd > apart).all()
    # The edge lanes have one neighbour, the inner ones two: crowding is measured where each ends.
    assert apart[0] < apart[3]


def test_chains_follow_successors() -> None:
    assert chains(np.array([3, -1, 1, -1])).tolist() == [0, 1, 1, 0]


def test_who_walks_out_of_the_picture_is_not_stitched_to_who_walks_in() -> None:
    # Person 1 walks right out of a 640-px frame; a second later person 2 walks in at the same
    # edge, right where 1 left: that is not a tracker losing somebody.
    out = [(f, 1, 520.0 + 4.0 * f, 100.0, 560.0 + 4.0 * f, 220.0) for f in range(1, 21)]
    back_in = [(f, 2, 640.0 - 40.0 - 4.0 * (f - 45), 100.0, 640.0 - 4.0 * (f - 45), 220.0) for f in range(45, 65)]
    tracks = tracks_from_rows(out + back_in)
    ends = track_ends(tracks, tracks.track_ids)
    assert crosses_the_edge(tracks, ends, tracks.track_ids, (640, 480))[0, 1]
    inside = tracks_from_rows(walking_track(1, range(1, 21)) + walking_track(2, range(31, 51)))
    assert not crosses_the_edge(inside, track_ends(inside, inside.track_ids), inside.track_ids, (640, 480)).any()
    # Close to the camera, cut off by the bottom of the picture, walking sideways and drifting
    # down a little as they come closer: along the edge, not out through it.
    along = [(f, 1, 100.0 + 4.0 * f, 200.0 + 0.5 * f, 220.0 + 4.0 * f, 480.0) for f in range(1, 21)]
    tracks = tracks_from_rows(along + [(f, 2, 300.0 + 4.0 * f, 210.0, 420.0 + 4.0 * f, 480.0) for f in range(30, 50)])
    assert not crosses_the_edge(tracks, track_ends(tracks, tracks.track_ids), tracks.track_ids, (640, 480)).any()


def test_who_is_seen_again_on_the_way_out_or_in_may_be_stitched() -> None:
    # Person 1 walks out at the right edge and is lost half-way through it; a few frames later
    # the tracker picks them up again, still walking out: that track is no newcomer. And the
    # same walking in at the left edge.
    walks = [(f, 1, 560.0 + 2.0 * f, 100.0, 600.0 + 2.0 * f, 220.0) for f in range(1, 21)]
    walks += [(f, 2, 560.0 + 2.0 * f, 100.0, 600.0 + 2.0 * f, 220.0) for f in range(26, 36)]
    walks += [(f, 3, -30.0 + 2.0 * f, 300.0, 10.0 + 2.0 * f, 420.0) for f in range(1, 6)]
    walks += [(f, 4, -30.0 + 2.0 * f, 300.0, 10.0 + 2.0 * f, 420.0) for f in range(10, 30)]
    tracks = tracks_from_rows(walks)
    ends = track_ends(tracks, tracks.track_ids)
    ruled_out = crosses_the_edge(tracks, ends, tracks.track_ids, (640, 480))
    assert not ruled_out[0, 1] and not ruled_out[2, 3]
    assert ruled_out[0, 3]  # who walked out is not continued by who walks in


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_each_margin_is_what_a_new_assignment_without_the_link_loses(seed: int) -> None:
    # The detour (one shortest path) against the definition: solve the assignment again with
    # the link, and any links ruled out alongside it, taken away.
    rng = np.random.default_rng(seed)
    n_rows, n_cols = (int(k) for k in rng.integers(1, 8, size=2))
    block = np.where(
        rng.random((n_rows, n_cols)) < rng.uniform(0.2, 0.9), rng.uniform(0.1, 12.0, (n_rows, n_cols)), 0.0
    )
    pairs = _best_matching(block)
    detours = _Detours(block, pairs)
    best = sum(block[a, b] for a, b in pairs)
    for a, b in pairs:
        rows, cols = rng.random(n_rows) < 0.3, rng.random(n_cols) < 0.3
        without = block.copy()
        without[np.ix_(rows, cols)] = 0.0
        for x, y in pairs:  # only links the matching did not make are ruled out
            without[x, y] = block[x, y]
        without[a, b] = 0.0
        loss = best - sum(without[x, y] for x, y in _best_matching(without))
        assert block[a, b] + detours.cheapest(a, b, rows, cols) == pytest.approx(loss, abs=1e-6)
