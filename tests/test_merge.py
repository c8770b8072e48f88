"""The merge decision as a whole: whatever the settings, two tracks that share a frame stay apart."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_merge.app.config import FILL_RULES, Config
from reid_merge.app.pipeline import decide_merge, fill_person_gaps, gap_fill_rule, merge_changes, person_tracks
from reid_merge.core.crops import CropSet
from reid_merge.core.tracks import TrackSet, cooccurrence
from tests.builders import crossing_scene, tracks_from_rows, walking_track


def _blank_crops(crop_track: np.ndarray, crop_frame: np.ndarray) -> CropSet:
    """Crops whose pixels nothing here looks at: the features given beside them stand for them."""
    return CropSet([np.zeros((4, 2, 3), np.uint8)] * len(crop_track), crop_track, crop_frame, np.ones(len(crop_track)))


def _groups(mapping: dict[int, int]) -> list[list[int]]:
    """The tracks of each person, whatever the persons' numbers."""
    return sorted(sorted(t for t in mapping if mapping[t] == p) for p in set(mapping.values()))


def _random_scene(seed: int, num_tracks: int) -> tuple[TrackSet, CropSet, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames, ids, boxes = [], [], []
    for track_id in range(1, num_tracks + 1):
        start = int(rng.integers(1, 60))
        length = int(rng.integers(1, 40))
        x, step = float(rng.uniform(0, 600)), float(rng.choice([-3.0, 1.0, 3.0]))  # some cross others
        for f in range(start, start + length):
            frames.append(f)
            ids.append(track_id)
            boxes.append([x + step * f, 100.0, x + step * f + 40.0, 220.0])
    ids_array = np.array(ids)
    if num_tracks >= 2 and rng.random() < 0.5:  # the tracker swaps tracks 1 and 2 from some frame on
        swap_at = int(rng.integers(1, 100))
        later = (np.array(frames) >= swap_at) & np.isin(ids_array, [1, 2])
        ids_array[later] = 3 - ids_array[later]
    tracks = TrackSet.from_arrays(frames, ids_array, np.array(boxes), rng.uniform(0.3, 1.0, len(frames)))
    crop_rows = [i for i in range(len(tracks)) if rng.random() < 0.5]
    features = rng.normal(size=(len(crop_rows), 8))
    # a few look-alikes: identical appearance for different tracks
    if len(features):
        features[: len(features) // 3] = features[0]
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return tracks, _blank_crops(tracks.track_id[crop_rows], tracks.frame[crop_rows]), features


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    num_tracks=st.integers(1, 14),
    threshold=st.one_of(st.none(), st.floats(0.0, 2.0)),
    false_merge_rate=st.floats(0.001, 0.4),
    tentative_cut_rate=st.floats(0.001, 0.99),
    stitch_odds=st.floats(1.0, 1000.0),
    stitch_seconds=st.floats(0.1, 10.0),
    persons=st.one_of(st.none(), st.integers(1, 5)),
    criterion=st.sampled_from(["complete", "average", "dbc"]),
    aggregation=st.sampled_from(["mean", "max", "median", "min", "trimmed_mean", "centroid"]),
    adapt=st.booleans(),
    motion_gate=st.booleans(),
    split_impure=st.booleans(),
    min_crops=st.integers(1, 4),
    max_gap_seconds=st.floats(0.0, 3.0),
    fill_rule=st.sampled_from(FILL_RULES),
)
def test_no_setting_puts_cooccurring_tracks_in_one_person(
    seed: int,
    num_tracks: int,
    threshold: float | None,
    false_merge_rate: float,
    tentative_cut_rate: float,
    stitch_odds: float,
    stitch_seconds: float,
    persons: int | None,
    criterion: str,
    aggregation: str,
    adapt: bool,
    motion_gate: bool,
    split_impure: bool,
    min_crops: int,
    max_gap_seconds: float,
    fill_rule: str,
) -> None:
    tracks, crops, features = _random_scene(seed, num_tracks)
    config = dataclasses.replace(
        Config(),
        threshold=threshold,
        persons=persons,
        criterion=criterion,
        aggregation=aggregation,
        adapt=adapt,
        motion_gate=motion_gate,
        false_merge_rate=false_merge_rate,
        tentative_cut_rate=tentative_cut_rate,
        stitch_odds=stitch_odds,
        stitch_max_gap_seconds=stitch_seconds,
        split_impure=split_impure,
        min_crops_to_merge=min_crops,
        fill_max_gap_seconds=max_gap_seconds,
        fill_rule=fill_rule,
    )
    outcome = decide_merge(tracks, crops, features, config, fps=25.0)
    merged = outcome.tracks.relabel(outcome.mapping)
    assert len(merged.duplicate_rows()) == 0  # no person has two boxes in one frame
    together = cooccurrence(outcome.tracks, outcome.track_ids)
    person = np.array([outcome.mapping[int(t)] for t in outcome.track_ids])
    assert not (together & (person[:, None] == person[None, :])).any()
    assert sorted(set(person.tolist())) == list(range(1, len(set(person.tolist())) + 1))
    # Gap filling after the merge keeps it so, and boxes a person only inside their span.
    filled, is_filled = fill_person_gaps(merged, config, 25.0, gap_fill_rule(tracks, config))
    assert len(filled.duplicate_rows()) == 0
    assert len(filled[~is_filled]) == len(merged)
    for p in merged.track_ids:
        span = merged.frame[merged.track_id == p]
        added = filled.frame[is_filled & (filled.track_id == p)]
        assert ((added > span.min()) & (added < span.max())).all()
    # Leaving doubles out renumbers persons, joins nobody and keeps tracks.txt's IDs 1..K.
    written = person_tracks(outcome.tracks, outcome.mapping, config, 25.0, gap_fill_rule(tracks, config))
    assert _groups(written.mapping) == _groups(outcome.mapping)
    kept = sorted(set(written.mapping.values()) - set(written.doubles))
    assert written.merged.track_ids.tolist() == kept == list(range(1, len(kept) + 1))
    left_out = [outcome.mapping[t] for t, p in written.mapping.items() if p in written.doubles]
    assert len(written.merged) == int((~np.isin(filled.track_id, left_out)).sum())


def test_a_track_with_one_crop_is_not_joined_by_appearance() -> None:
    # Two tracks looking exactly alike, the second twice the size of the first a second later
    # (no walk does that, so motion does not stitch them): only appearance could join them, and
    # the second shows a single usable crop, too little to tell a look-alike from the same
    # person. A third track has no usable crop at all, but continues the second where it stood
    # a second later: motion stitches it, crops or not. (The first track ended 2.4 s before the
    # third began: within 1.5 s only the second can be its predecessor; with a longer reach the
    # video's too few tracks leave bounds loose enough that the first, grown twice as tall, is a
    # rival.)
    frames = list(range(1, 21)) + list(range(46, 56)) + list(range(80, 86))
    ids = [1] * 20 + [2] * 10 + [3] * 6
    boxes = np.array([[100.0, 100.0, 140.0, 220.0]] * 20 + [[100.0, 100.0, 180.0, 340.0]] * 16)
    tracks = TrackSet.from_arrays(frames, ids, boxes, np.ones(36))
    crop_frames = [1, 5, 10, 15, 46]
    crops = _blank_crops(np.array([1, 1, 1, 1, 2]), np.array(crop_frames))
    features = np.tile([1.0, 0.0, 0.0], (5, 1))
    config = dataclasses.replace(Config(), adapt=False, threshold=0.5, stitch_max_gap_seconds=1.5)
    alone = decide_merge(tracks, crops, features, config, fps=25.0)
    assert alone.mapping == {1: 1, 2: 2, 3: 2}
    assert (alone.tracks_too_few_crops, alone.tracks_without_crops) == (1, 1)
    joined = decide_merge(tracks, crops, features, dataclasses.replace(config, min_crops_to_merge=1), fps=25.0)
    assert joined.mapping == {1: 1, 2: 1, 3: 1}
    assert (joined.tracks_too_few_crops, joined.tracks_without_crops) == (0, 1)

    # A crop taken beside an encounter (to judge a cut) is not one the merge compares.
    beside = CropSet(
        crops=[np.zeros((4, 2, 3), np.uint8)] * 6,
        track_id=np.array([1, 1, 1, 1, 2, 2]),
        frame=np.array([*crop_frames, 50]),
        quality=np.ones(6),
        beside_encounter=np.array([False] * 5 + [True]),
    )
    features = np.tile([1.0, 0.0, 0.0], (6, 1))
    assert decide_merge(tracks, beside, features, config, fps=25.0).mapping == {1: 1, 2: 2, 3: 2}
    counted = dataclasses.replace(beside, beside_encounter=None)
    assert decide_merge(tracks, counted, features, config, fps=25.0).mapping == {1: 1, 2: 1, 3: 1}


def _lost_and_found(alike: bool, seed: int = 0) -> tuple[TrackSet, CropSet, np.ndarray]:
    """Five walkers in lanes 200 px apart, all 100 frames (they share frames: two people each
    pair). Person 1 walks frames 1-40, is lost for 1.2 s and found again as track 2, 20 px off
    the walk; track 2 looks like track 1 where `alike`, like nobody else otherwise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(5):
        for f, t, x1, y1, x2, y2 in walking_track(10 + k, range(1, 101), x0=50.0 * k):
            dx, dy = rng.normal(0.0, 3.0, 2)
            rows.append((f, t, x1 + dx, y1 + 200.0 * (k + 1) + dy, x2 + dx, y2 + 200.0 * (k + 1) + dy))
    rows += walking_track(1, range(1, 41))
    rows += [(f, 2, x1, y1 + 20.0, x2, y2 + 20.0) for f, _, x1, y1, x2, y2 in walking_track(2, range(71, 111))]
    tracks = tracks_from_rows(rows)
    crop_track = np.repeat(tracks.track_ids, 8)
    crop_frame = np.concatenate(
        [
            np.linspace(tracks.frame[tracks.track_id == t].min(), tracks.frame[tracks.track_id == t].max(), 8).round()
            for t in tracks.track_ids
        ]
    ).astype(np.int64)
    look = {int(t): rng.normal(size=64) for t in tracks.track_ids}
    if alike:
        look[2] = look[1]
    features = np.array([look[int(t)] for t in crop_track]) + 0.5 * rng.normal(size=(len(crop_track), 64))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return tracks, _blank_crops(crop_track, crop_frame), features


def _only_crops(keep: np.ndarray, crops: CropSet, features: np.ndarray) -> tuple[CropSet, np.ndarray]:
    """The crops (and their features) where `keep`."""
    kept = [c for c, k in zip(crops.crops, keep) if k]
    return CropSet(kept, crops.track_id[keep], crops.frame[keep], crops.quality[keep]), features[keep]


def test_with_too_few_links_to_learn_from_appearance_speaks_for_a_stitch_never_against() -> None:
    # One link cannot teach how one person scores across a gap. Still, a pair that looks far more
    # alike than the walkers who share frames is evidence for one person: at odds motion alone
    # does not reach, track 2 looking like track 1 is stitched, looking like nobody is not.
    # Joining by appearance alone is off (threshold 0), so only the stitch can join them.
    config = dataclasses.replace(Config(), split_impure=False, threshold=0.0, stitch_odds=1e4)
    outcomes = {alike: decide_merge(*_lost_and_found(alike), config, fps=25.0) for alike in (True, False)}
    assert {alike: o.mapping[1] == o.mapping[2] for alike, o in outcomes.items()} == {True: True, False: False}
    assert all(o.calibration["appearance_in_stitching"] == "for only" for o in outcomes.values())
    # And never against: at odds motion reaches alone, looking like nobody does not undo the link.
    unlike = decide_merge(*_lost_and_found(False), dataclasses.replace(config, stitch_odds=1e3), fps=25.0)
    assert unlike.mapping[1] == unlike.mapping[2]


def test_a_stitch_appearance_cannot_check_needs_the_odds_asked_of_motion_alone() -> None:
    # The lost-and-found link is 10^3 to 10^4 times likelier by motion alone (the test above).
    # Where both sides have crops to compare, stitch_odds applies; where track 2 has none, the
    # link rests on motion alone and unchecked_stitch_odds applies.
    tracks, crops, features = _lost_and_found(False)
    unseen = _only_crops(crops.track_id != 2, crops, features)
    config = dataclasses.replace(
        Config(), split_impure=False, threshold=0.0, stitch_odds=1e3, unchecked_stitch_odds=1e4
    )
    seen = decide_merge(tracks, crops, features, config, fps=25.0)
    blind = decide_merge(tracks, *unseen, config, fps=25.0)
    assert (seen.mapping[1] == seen.mapping[2], blind.mapping[1] == blind.mapping[2]) == (True, False)
    looser = decide_merge(tracks, *unseen, dataclasses.replace(config, unchecked_stitch_odds=1e3), fps=25.0)
    assert looser.mapping[1] == looser.mapping[2]
    assert blind.calibration["unchecked_stitch_odds"] == 1e4


def test_one_crop_speaks_for_a_stitch_though_too_few_to_join_by() -> None:
    # Track 2 keeps one crop: too few for a join by appearance (min_crops_to_merge 2), and the
    # link needs the odds motion alone cannot reach here. Its one view, looking like track 1,
    # still speaks for the link; looking like nobody, it does not.
    def one_crop(alike: bool) -> tuple[TrackSet, CropSet, np.ndarray]:
        tracks, crops, features = _lost_and_found(alike)
        keep = (crops.track_id != 2) | (crops.frame == crops.frame[crops.track_id == 2].min())
        return tracks, *_only_crops(keep, crops, features)

    config = dataclasses.replace(Config(), split_impure=False, threshold=0.0, unchecked_stitch_odds=1e4)
    outcomes = {alike: decide_merge(*one_crop(alike), config, fps=25.0) for alike in (True, False)}
    assert {alike: o.mapping[1] == o.mapping[2] for alike, o in outcomes.items()} == {True: True, False: False}


def test_a_swapped_track_is_cut_and_the_halves_of_each_person_joined_again() -> None:
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
    crops = _blank_crops(crop_track, crop_frame)
    config = dataclasses.replace(Config(), split_impure=True)
    outcome = decide_merge(tracks, crops, features, config, fps=25.0)
    assert sorted((s.track_id, s.new_track_id, s.frame) for s in outcome.splits) == [(1, 9, 31), (2, 10, 31)]
    person = outcome.mapping
    assert person[1] != person[9] and person[2] != person[10]  # the two sides of a cut: two people
    assert person[1] == person[10] and person[2] == person[9]  # who walked on is found again
    off = decide_merge(tracks, crops, features, dataclasses.replace(config, split_impure=False), fps=25.0)
    assert off.splits == [] and len(off.track_ids) == 8


def test_a_tentative_cut_stands_where_the_merge_gives_its_later_side_to_somebody_else() -> None:
    """With the merge's own rate too strict for any cut, the swap is cut tentatively; where the
    merge joins each later side to the other walk the cuts stand, and where it joins nothing
    (no stitch, no join by appearance) they are undone, while firm cuts stay apart."""
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
    crops = _blank_crops(crop_track, crop_frame)
    # Motion, which finds this swap too (log odds 914), asked odds no crossing reaches.
    doubt = dataclasses.replace(Config(), false_merge_rate=1e-30, tentative_cut_rate=0.005, unchecked_stitch_odds=1e300)
    outcome = decide_merge(tracks, crops, features, doubt, fps=25.0)
    assert [(s.track_id, s.new_track_id, s.frame, s.tentative) for s in outcome.splits] == [
        (1, 9, 31, True),
        (2, 10, 31, True),
    ]
    person = outcome.mapping
    assert person[1] == person[10] and person[2] == person[9] and person[1] != person[2]
    assert outcome.calibration["tentative_cuts"] == 2 and outcome.calibration["tentative_cuts_undone"] == 0

    joins_nothing = {"stitch_odds": 1e9, "threshold": 0.0}
    alone = decide_merge(tracks, crops, features, dataclasses.replace(doubt, **joins_nothing), fps=25.0)
    person = alone.mapping
    assert person[1] == person[9] and person[2] == person[10] and person[1] != person[2]
    assert alone.calibration["tentative_cuts_undone"] == 2
    firm = decide_merge(
        tracks, crops, features, dataclasses.replace(doubt, false_merge_rate=0.005, **joins_nothing), fps=25.0
    )
    assert not any(s.tentative for s in firm.splits)
    assert len(set(firm.mapping[t] for t in (1, 2, 9, 10))) == 4


def test_the_summary_says_why_each_track_was_left_alone() -> None:
    """A short track of low scores is left alone as a likely false detection, one with no usable
    crop for that; two tracks that share a frame because nobody else is close enough."""
    boxes = {1: [100.0, 100.0, 140.0, 220.0], 2: [400.0, 100.0, 440.0, 220.0], 3: [100.0, 100.0, 140.0, 220.0]}
    spans = {1: range(1, 21), 2: range(1, 21), 3: range(200, 203), 4: range(400, 421)}
    rows = [(f, t, *boxes.get(t, [700.0, 100.0, 740.0, 220.0])) for t, span in spans.items() for f in span]
    tracks = tracks_from_rows(rows)
    tracks = TrackSet(tracks.frame, tracks.track_id, tracks.xyxy, np.where(tracks.track_id == 3, 0.3, 0.9))
    crop_track, crop_frame = np.array([1, 1, 1, 2, 2, 2, 3, 3]), np.array([1, 10, 20, 1, 10, 20, 200, 202])
    features = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3 + [[1.0, 0.0]] * 2)  # 3 looks like 1
    outcome = decide_merge(tracks, _blank_crops(crop_track, crop_frame), features, Config(), fps=25.0)
    assert len(set(outcome.mapping.values())) == 4
    assert merge_changes(outcome)["left_alone"] == {
        "no usable crop": 1,  # track 4
        "too few usable crops": 0,
        "short and unsure (likely a false detection)": 1,  # track 3: 3 boxes scoring 0.3
        "no other track close enough": 2,  # tracks 1 and 2
    }


def test_the_sides_of_an_undone_cut_are_one_track_in_the_summary_not_a_join() -> None:
    """tracks.json's "tracks joined": a tentative cut the merge undid gave the track back whole,
    so its two sides in one person joined nothing; each is left alone once, as one track."""
    tracks, features, crop_track, crop_frame = crossing_scene(swap=True)
    crops = _blank_crops(crop_track, crop_frame)
    doubt = dataclasses.replace(Config(), false_merge_rate=1e-30, tentative_cut_rate=0.005, unchecked_stitch_odds=1e300)
    claimed = decide_merge(tracks, crops, features, doubt, fps=25.0)
    undone = decide_merge(tracks, crops, features, dataclasses.replace(doubt, stitch_odds=1e9, threshold=0.0), fps=25.0)
    assert undone.calibration["tentative_cuts_undone"] == 2
    changes = merge_changes(undone)
    assert changes["tracks_joined"] == 0
    assert sum(changes["left_alone"].values()) == len(set(undone.mapping.values())) == len(tracks.track_ids)
    # Where the merge gave each later side to the other walk, the cuts stand and four tracks joined.
    assert claimed.calibration["tentative_cuts_undone"] == 0
    assert merge_changes(claimed)["tracks_joined"] >= 4


def _a_swap_crops_cannot_judge() -> tuple[TrackSet, CropSet, np.ndarray]:
    """`crossing_scene`'s swap, every crop looking like nobody in particular."""
    tracks, _, crop_track, crop_frame = crossing_scene(swap=True)
    features = np.random.default_rng(0).normal(size=(len(crop_track), 32))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return tracks, _blank_crops(crop_track, crop_frame), features


def test_a_swap_that_crops_cannot_judge_is_cut_by_motion_and_each_walk_joined_again() -> None:
    """Every crop looks like nobody in particular: appearance cuts nothing, but each track jumps
    onto the other's path at frame 31, and that motion alone finds."""
    tracks, crops, features = _a_swap_crops_cannot_judge()
    outcome = decide_merge(tracks, crops, features, Config(), fps=25.0)
    assert sorted((s.track_id, s.new_track_id, s.frame, s.by) for s in outcome.splits) == [
        (1, 9, 31, "motion"),
        (2, 10, 31, "motion"),
    ]
    person = outcome.mapping
    assert person[1] == person[10] and person[2] == person[9] and person[1] != person[2]


def test_a_part_a_cut_made_that_crops_cannot_check_stays_alone() -> None:
    """One end of each part lies where the tracker's motion took one person for the other, so a
    part whose crops are too few for appearance to check is not joined on by motion alone."""
    tracks, crops, features = _a_swap_crops_cannot_judge()
    keep = np.ones(len(crops), dtype=bool)  # of track 1 from the swap on, one crop only
    keep[np.flatnonzero((crops.track_id == 1) & (crops.frame >= 31))[1:]] = False
    crops, features = _only_crops(keep, crops, features)
    outcome = decide_merge(tracks, crops, features, Config(), fps=25.0)
    assert sorted((s.track_id, s.new_track_id, s.frame) for s in outcome.splits) == [(1, 9, 31), (2, 10, 31)]
    person = outcome.mapping
    assert [t for t in person if person[t] == person[9]] == [9]
    assert person[1] == person[10] and person[1] != person[2]


def test_gaps_are_filled_only_between_sure_boxes_where_the_tracker_starts_tracks_on_unsure_ones() -> None:
    walks = walking_track(1, range(1, 30)) + walking_track(2, range(1, 30), x0=300.0)
    sure = tracks_from_rows(walks)
    scores = np.where(sure.track_id == 2, np.where(sure.frame == 1, 0.3, 0.9), 0.9)  # track 2 begins unsure
    unsure = TrackSet(sure.frame, sure.track_id, sure.xyxy, scores)
    config = Config()
    assert config.fill_rule == "auto"
    assert gap_fill_rule(sure, config) == "all"
    assert gap_fill_rule(unsure, config) == "sure"
    assert gap_fill_rule(unsure, dataclasses.replace(config, fill_rule="all")) == "all"
    assert gap_fill_rule(sure, dataclasses.replace(config, fill_rule="sure")) == "sure"
    assert gap_fill_rule(unsure, dataclasses.replace(config, fill_gaps=False)) == "none"
