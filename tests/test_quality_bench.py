"""The bench's count of a real tracker's own swaps, and how it reads settings (`bench/quality.py`)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from quality import base_config, followed, schemes, switch_row, tracker_switches

from reid_merge.core.impurity import Split
from reid_merge.core.tracks import TrackSet
from reid_merge.eval.scores import GroundTruth
from tests.builders import tracks_from_rows, walking_track


def _swapped_pair() -> tuple[TrackSet, TrackSet]:
    """Truth: four people. Tracks 7 and 8 swap people 1 and 2 at frame 11; track 9 holds person 3
    but for two boxes taken from person 4, a flicker rather than a swap."""
    truth = tracks_from_rows(
        walking_track(1, range(1, 21))
        + walking_track(2, range(1, 21), x0=400)
        + walking_track(3, range(1, 21), x0=800)
        + walking_track(4, range(1, 21), x0=1100)
    )
    first, later = range(1, 11), range(11, 21)
    raw = tracks_from_rows(
        walking_track(7, first)
        + walking_track(7, later, x0=400)
        + walking_track(8, first, x0=400)
        + walking_track(8, later)
        + walking_track(9, range(1, 5), x0=800)
        + walking_track(9, range(5, 7), x0=1100)
        + walking_track(9, range(7, 21), x0=800)
    )
    return raw, truth


def test_a_swap_between_two_runs_counts_and_a_flicker_does_not() -> None:
    raw, truth = _swapped_pair()
    assert tracker_switches(raw, truth) == {7: [11], 8: [11], 9: []}


def test_a_track_that_passes_from_a_distractor_to_a_pedestrian_has_switched() -> None:
    """MOT16-09: a figure standing at the edge (class 8, flagged 0) is tracked, and the track
    goes on with whoever walks in front of it. The scores ignore the figure; the switch counts."""
    boxes = tracks_from_rows(walking_track(30, range(1, 21), speed=0.0) + walking_track(4, range(11, 31)))
    gt = GroundTruth(boxes, boxes.track_id == 4, np.where(boxes.track_id == 30, 8, 1))
    raw = tracks_from_rows(walking_track(23, range(1, 11), speed=0.0) + walking_track(23, range(11, 31)))
    assert tracker_switches(raw, gt.targets) == {23: []}
    assert tracker_switches(raw, followed(gt)) == {23: [11]}


def test_a_cut_near_a_switch_finds_it_and_a_cut_of_a_clean_track_is_a_mistake() -> None:
    raw, truth = _swapped_pair()
    cuts = [Split(7, 100, 12, 1.0), Split(9, 101, 15, 1.0)]
    row = switch_row(tracker_switches(raw, truth), cuts, raw.track_ids)
    assert row == {
        "switches": 2,
        "in tracks": 2,
        "cut (within 5 frames)": 1,
        "tracks without a switch": 1,
        "cut by mistake": 1,
        "cuts": 2,
    }


def test_settings_are_read_as_a_config_file_reads_them() -> None:
    args = argparse.Namespace(set=["split_impure=false"], vary=["threshold=0.3,none"])
    base = base_config(args)
    assert base.split_impure is False
    # threshold's default is None: its values are still numbers, and `none` is no value.
    assert [(name, config.threshold) for name, config in schemes(args, base)] == [
        ("threshold=0.3", 0.3),
        ("threshold=None", None),
    ]


def test_a_bad_setting_value_exits_with_one_line() -> None:
    with pytest.raises(SystemExit, match="--vary threshold=high: setting 'threshold' expects float"):
        schemes(argparse.Namespace(vary=["threshold=high"]), base_config(argparse.Namespace(set=[])))
