"""Tests for reid_merge.evaluation: hand-derived scores on tiny sequences, GT readers, real GT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from reid_merge.errors import InputError, UsageError
from reid_merge.evaluation import TrackingScores, box_iou, evaluate, read_ground_truth
from reid_merge.tracks import TrackSet

TUD_CAMPUS_GT = Path("/work/shared/data/TUD-Campus/gt/gt.txt")
BOX = (0.0, 0.0, 10.0, 10.0)
FAR_BOX = (100.0, 100.0, 110.0, 110.0)


def make_tracks(rows: list[tuple[int, int, tuple[float, float, float, float]]]) -> TrackSet:
    """A track set from ``(frame, track_id, (x1, y1, x2, y2))`` rows, every score 1."""
    return TrackSet.from_arrays(
        [r[0] for r in rows],
        [r[1] for r in rows],
        np.array([r[2] for r in rows]).reshape(-1, 4),
        np.ones(len(rows)),
    )


def one_person(frames: range, track_id: int = 1, box: tuple[float, ...] = BOX) -> list:
    return [(f, track_id, box) for f in frames]


# Ground truth used by most cases: one person standing still for frames 1..10.
GT_ONE = make_tracks(one_person(range(1, 11)))
# Prediction that loses the identity half-way: ID 1 on frames 1-5, ID 2 on frames 6-10.
PRED_SPLIT = make_tracks(one_person(range(1, 6), 1) + one_person(range(6, 11), 2))


def test_perfect_prediction_scores_one() -> None:
    gt = make_tracks(one_person(range(1, 11), 1) + one_person(range(1, 11), 2, FAR_BOX))
    # Same boxes, other IDs: scores do not depend on what the IDs are called.
    pred = gt.relabel({1: 7, 2: 3})
    s = evaluate(pred, gt)
    assert (s.idf1, s.idp, s.idr, s.mota, s.motp, s.hota, s.deta, s.assa) == pytest.approx((1.0,) * 8)
    assert (s.id_switches, s.fragmentations, s.false_positives, s.false_negatives) == (0, 0, 0, 0)
    assert (s.mostly_tracked, s.mostly_lost) == (2, 0)
    assert (s.num_gt_ids, s.num_pred_ids, s.num_gt_dets, s.num_pred_dets, s.num_frames) == (2, 2, 20, 20, 10)


def test_split_identity_halves_idf1() -> None:
    s = evaluate(PRED_SPLIT, GT_ONE)
    # Whole-track matching pairs the GT with one of the two IDs: IDTP = 5, IDFN = 5 (GT frames
    # 6-10 unmatched), IDFP = 5 (the other ID). IDF1 = 5 / (5 + 2.5 + 2.5) = 0.5 = IDP = IDR.
    assert (s.idf1, s.idp, s.idr) == pytest.approx((0.5, 0.5, 0.5))
    # Every box is matched (TP = 10, FP = FN = 0) with one switch at frame 6: MOTA = (10 - 1) / 10.
    assert s.id_switches == 1
    assert s.mota == pytest.approx(0.9)
    assert s.motp == pytest.approx(1.0)
    # HOTA: IoU is 1 so DetA = 1 at every alpha; each TP's association score is
    # TPA / (TPA + FNA + FPA) = 5 / (5 + 5 + 0) = 0.5, so AssA = 0.5 and HOTA = sqrt(0.5).
    assert (s.deta, s.assa, s.hota) == pytest.approx((1.0, 0.5, math.sqrt(0.5)))
    assert s.num_pred_ids == 2


def test_merging_the_split_restores_idf1() -> None:
    before = evaluate(PRED_SPLIT, GT_ONE)
    after = evaluate(PRED_SPLIT.relabel({1: 1, 2: 1}), GT_ONE)
    assert after.idf1 > before.idf1
    assert (after.idf1, after.mota, after.hota) == pytest.approx((1.0, 1.0, 1.0))
    assert after.id_switches == 0


def test_false_positive_track_lowers_mota_and_idp() -> None:
    # Perfect track plus a 5-frame track where nobody is: TP = 10, FP = 5, FN = 0.
    pred = make_tracks(one_person(range(1, 11)) + one_person(range(1, 6), 9, FAR_BOX))
    s = evaluate(pred, GT_ONE)
    # MOTA = (10 - 5 - 0) / 10 = 0.5.
    assert s.mota == pytest.approx(0.5)
    assert (s.false_positives, s.false_negatives) == (5, 0)
    # IDTP = 10, IDFP = 5, IDFN = 0: IDP = 10/15, IDR = 1, IDF1 = 10 / (10 + 2.5) = 0.8.
    assert (s.idp, s.idr, s.idf1) == pytest.approx((2 / 3, 1.0, 0.8))
    # DetA = 10 / (10 + 0 + 5) = 2/3 at every alpha, AssA = 1: HOTA = sqrt(2/3).
    assert s.hota == pytest.approx(math.sqrt(2 / 3))


def test_boxes_below_iou_threshold_do_not_match() -> None:
    # Shift by half a width: intersection 5x10 = 50, union 100 + 100 - 50 = 150, IoU = 1/3.
    pred = make_tracks(one_person(range(1, 11), box=(5.0, 0.0, 15.0, 10.0)))
    s = evaluate(pred, GT_ONE)
    assert (s.idf1, s.idp, s.idr) == (0.0, 0.0, 0.0)
    # No matches: FN = 10, FP = 10, MOTA = (0 - 10) / 10 = -1.
    assert (s.false_negatives, s.false_positives) == (10, 10)
    assert s.mota == pytest.approx(-1.0)
    # HOTA matches wherever IoU >= alpha: alphas 0.05..0.30 (6 of 19) score 1, the rest 0.
    assert s.hota == pytest.approx(6 / 19)
    # Lowering the threshold below 1/3 makes every box a match.
    loose = evaluate(pred, GT_ONE, iou_threshold=0.3)
    assert (loose.idf1, loose.mota, loose.motp) == pytest.approx((1.0, 1.0, 1 / 3))
    assert loose.hota == s.hota


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        # FN = 10, nothing matched: MOTA = 1 - 10/10 = 0.
        (TrackSet.empty(), GT_ONE, {"num_pred_dets": 0, "false_negatives": 10, "mostly_lost": 1}),
        # No ground truth: everything is a false positive; MOTA has no denominator, TrackEval gives 0.
        (GT_ONE, TrackSet.empty(), {"num_gt_dets": 0, "false_positives": 10}),
        (TrackSet.empty(), TrackSet.empty(), {"num_frames": 0, "num_gt_ids": 0}),
    ],
    ids=["empty-prediction", "empty-ground-truth", "both-empty"],
)
def test_empty_sets_score_zero(pred: TrackSet, gt: TrackSet, expected: dict[str, int]) -> None:
    s = evaluate(pred, gt)
    assert (s.idf1, s.idp, s.idr, s.mota, s.motp, s.hota, s.deta, s.assa) == (0.0,) * 8
    assert {k: getattr(s, k) for k in expected} == expected


def test_frames_without_boxes_are_timesteps() -> None:
    gt = make_tracks(one_person(range(1, 4)))
    pred = make_tracks(one_person(range(6, 8)))
    assert evaluate(pred, gt).num_frames == 7


def test_to_dict_and_rows() -> None:
    s = evaluate(PRED_SPLIT, GT_ONE)
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert all(type(v) in (int, float) for v in d.values())
    assert TrackingScores(**d) == s
    rows = dict(s.rows())
    assert (rows["IDF1"], rows["MOTA"], rows["HOTA"]) == ("50.0%", "90.0%", "70.7%")
    assert (rows["ID switches"], rows["Frames"], rows["IoU threshold"]) == ("1", "10", "0.5")


def test_rejects_bad_threshold_and_duplicate_boxes() -> None:
    with pytest.raises(UsageError, match="iou_threshold"):
        evaluate(GT_ONE, GT_ONE, iou_threshold=0.0)
    twice = make_tracks([(1, 1, BOX), (1, 1, FAR_BOX)])
    with pytest.raises(InputError, match="prediction: track 1 has two boxes in frame 1"):
        evaluate(twice, GT_ONE)


def test_box_iou_shapes() -> None:
    assert box_iou(np.zeros((0, 4)), np.array([BOX])).shape == (0, 1)
    assert box_iou(np.array([BOX]), np.array([BOX])).tolist() == [[1.0]]


def test_read_ground_truth_mot15(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    # MOT15: every row is a pedestrian, also those with conf -1.
    path.write_text("1,1,10,20,30,40,1,-1,-1,-1\n1,2,50,60,10,10,-1,-1,-1,-1\n2,1,11,20,30,40,1,-1,-1,-1\n")
    gt = read_ground_truth(path)
    assert gt.frame.tolist() == [1, 1, 2]
    assert gt.track_id.tolist() == [1, 2, 1]
    assert gt.xyxy[0].tolist() == [10.0, 20.0, 40.0, 60.0]
    assert gt.score.tolist() == [1.0, 1.0, 1.0]


def test_read_ground_truth_mot16_keeps_flagged_pedestrians(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(
        "1,1,10,20,30,40,1,1,0.9\n"  # pedestrian, considered: kept
        "1,2,50,60,10,10,0,1,1.0\n"  # pedestrian, flag 0 (ignore): dropped
        "1,3,70,80,10,10,1,7,1.0\n"  # class 7 (static person, a distractor): dropped
        "2,4,70,80,10,10,0,3,0.5\n"  # class 3 (car): dropped
        "2,1,12,20,30,40,1,1,0.8\n"  # kept
    )
    gt = read_ground_truth(path)
    assert gt.frame.tolist() == [1, 2]
    assert gt.track_id.tolist() == [1, 1]
    assert gt.xyxy.tolist() == [[10.0, 20.0, 40.0, 60.0], [12.0, 20.0, 42.0, 60.0]]


def test_read_ground_truth_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_ground_truth(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,20,30,40,1,x,1\n")
    with pytest.raises(InputError, match=r"bad.txt:1: field 'class' is not a number"):
        read_ground_truth(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("1,1,10,20,30,40,1,1,1\n1,1,15,20,30,40,1,1,1\n")
    with pytest.raises(InputError, match="track 1 has two boxes in frame 1"):
        read_ground_truth(dup)


@pytest.mark.skipif(not TUD_CAMPUS_GT.exists(), reason="TUD-Campus data not available")
def test_tud_campus_ground_truth_against_itself() -> None:
    gt = read_ground_truth(TUD_CAMPUS_GT)
    assert len(gt) == 359
    ids = gt.track_ids
    shuffled = np.random.default_rng(0).permutation(ids) + 100
    permuted = gt.relabel({int(a): int(b) for a, b in zip(ids, shuffled)})
    for pred in (gt, permuted):
        s = evaluate(pred, gt)
        assert (s.idf1, s.idp, s.idr, s.mota, s.motp, s.hota, s.deta, s.assa) == pytest.approx((1.0,) * 8)
        assert (s.id_switches, s.false_positives, s.false_negatives) == (0, 0, 0)
        assert s.num_gt_ids == s.num_pred_ids == len(ids)
        assert s.num_frames == gt.num_frames_spanned
