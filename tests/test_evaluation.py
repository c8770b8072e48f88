"""Tests for reid_merge.eval.scores: hand-derived scores on tiny sequences, GT readers, real GT."""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reid_merge.core.tracks import TrackSet, box_iou
from reid_merge.errors import InputError, UsageError
from reid_merge.eval.scores import GroundTruth, TrackingScores, evaluate, read_ground_truth
from reid_merge.io.tracks_io import read_mot, write_mot
from tests.cli_helpers import reid_merge
from tests.data_paths import SHARED_DATA

TUD_CAMPUS_GT = SHARED_DATA / "TUD-Campus" / "gt" / "gt.txt"
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
GT_ONE = GroundTruth.from_tracks(make_tracks(one_person(range(1, 11))))
# Prediction that loses the identity half-way: ID 1 on frames 1-5, ID 2 on frames 6-10.
PRED_SPLIT = make_tracks(one_person(range(1, 6), 1) + one_person(range(6, 11), 2))


def test_perfect_prediction_scores_one() -> None:
    gt = make_tracks(one_person(range(1, 11), 1) + one_person(range(1, 11), 2, FAR_BOX))
    # Same boxes, other IDs: scores do not depend on what the IDs are called.
    pred = gt.relabel({1: 7, 2: 3})
    s = evaluate(pred, GroundTruth.from_tracks(gt))
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
        (GT_ONE.boxes, GroundTruth.from_tracks(TrackSet.empty()), {"num_gt_dets": 0, "false_positives": 10}),
        (TrackSet.empty(), GroundTruth.from_tracks(TrackSet.empty()), {"num_frames": 0, "num_gt_ids": 0}),
    ],
    ids=["empty-prediction", "empty-ground-truth", "both-empty"],
)
def test_empty_sets_score_zero(pred: TrackSet, gt: GroundTruth, expected: dict[str, int]) -> None:
    s = evaluate(pred, gt)
    assert (s.idf1, s.idp, s.idr, s.mota, s.motp, s.hota, s.deta, s.assa) == (0.0,) * 8
    assert {k: getattr(s, k) for k in expected} == expected


def test_frames_without_boxes_are_timesteps() -> None:
    gt = GroundTruth.from_tracks(make_tracks(one_person(range(1, 4))))
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
        evaluate(GT_ONE.boxes, GT_ONE, iou_threshold=0.0)
    twice = make_tracks([(1, 1, BOX), (1, 1, FAR_BOX)])
    with pytest.raises(InputError, match="prediction: track 1 has two boxes in frame 1"):
        evaluate(twice, GT_ONE)


def test_box_iou_shapes() -> None:
    assert box_iou(np.zeros((0, 4)), np.array([BOX])).shape == (0, 1)
    assert box_iou(np.array([BOX]), np.array([BOX])).tolist() == [[1.0]]


def test_read_ground_truth_mot15_ignores_zero_marked_rows(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    # MOT15: no classes; conf 0 marks a box the benchmark ignores, 1 and -1 are people to find.
    path.write_text(
        "1,1,10,20,30,40,1,-1,-1,-1\n1,2,50,60,10,10,-1,-1,-1,-1\n2,1,11,20,30,40,1,-1,-1,-1\n2,3,9,9,5,5,0,-1,-1,-1\n"
    )
    gt = read_ground_truth(path)
    assert len(gt.boxes) == 4 and gt.considered.tolist() == [True, True, True, False]
    assert gt.class_id.tolist() == [1, 1, 1, 1] and not gt.distractors.any()
    targets = gt.targets
    assert targets.frame.tolist() == [1, 1, 2]
    assert targets.track_id.tolist() == [1, 2, 1]
    assert targets.xyxy[0].tolist() == [10.0, 20.0, 40.0, 60.0]
    assert targets.score.tolist() == [1.0, 1.0, 1.0]


MOT16_ROWS = (
    "1,1,10,20,30,40,1,1,0.9\n"  # pedestrian, considered: a target
    "1,2,50,60,10,10,0,1,1.0\n"  # pedestrian, flag 0 (ignore): not a target, not a distractor
    "1,3,70,80,10,10,0,7,1.0\n"  # class 7 (static person): a distractor
    "2,4,70,80,10,10,0,3,0.5\n"  # class 3 (car): neither
    "2,1,12,20,30,40,1,1,0.8\n"  # a target
)


def test_read_ground_truth_mot16_targets_and_distractors(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(MOT16_ROWS)
    gt = read_ground_truth(path)
    assert gt.boxes.track_id.tolist() == [1, 2, 3, 4, 1]
    assert gt.considered.tolist() == [True, False, False, False, True]
    assert gt.class_id.tolist() == [1, 1, 7, 3, 1]
    assert gt.distractors.tolist() == [False, False, True, False, False]
    assert gt.targets.frame.tolist() == [1, 2]
    assert gt.targets.xyxy.tolist() == [[10.0, 20.0, 40.0, 60.0], [12.0, 20.0, 42.0, 60.0]]


def test_predictions_on_distractors_are_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(MOT16_ROWS)
    gt = read_ground_truth(path)
    # Both targets found; one prediction on the static person (removed before scoring), one on
    # the ignored pedestrian and one on the car (false positives, as in the official evaluation).
    pred = make_tracks(
        [
            (1, 1, (10.0, 20.0, 40.0, 60.0)),
            (2, 1, (12.0, 20.0, 42.0, 60.0)),
            (1, 5, (70.0, 80.0, 80.0, 90.0)),
            (1, 6, (50.0, 60.0, 60.0, 70.0)),
            (2, 7, (70.0, 80.0, 80.0, 90.0)),
        ]
    )
    s = evaluate(pred, gt)
    assert (s.false_positives, s.false_negatives, s.num_pred_dets, s.num_pred_ids) == (2, 0, 4, 3)
    assert s.mota == pytest.approx((2 - 2) / 2)


def test_distractor_matching_is_one_to_one_at_iou_half() -> None:
    person, static = (0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 12.0, 10.0)
    gt = GroundTruth(make_tracks([(1, 1, person), (1, 2, static)]), np.array([True, False]), np.array([1, 7]))
    # One prediction on both boxes: the matching gives it to the box it overlaps most,
    # the static person (IoU 1), so it is removed and the pedestrian is missed.
    s = evaluate(make_tracks([(1, 9, static)]), gt)
    assert (s.num_pred_dets, s.false_negatives, s.false_positives) == (0, 1, 0)
    # Two predictions: one each, so only the one on the static person is removed.
    s = evaluate(make_tracks([(1, 9, static), (1, 8, person)]), gt)
    assert (s.num_pred_dets, s.false_negatives, s.false_positives, s.mota) == (1, 0, 0, 1.0)
    # Under IoU 0.5 with the static person a prediction stays, even at a low --iou threshold.
    off = (6.0, 0.0, 16.0, 10.0)  # IoU with the static person 6 * 10 / (120 + 100 - 60) = 0.375
    s = evaluate(make_tracks([(1, 9, off)]), gt, iou_threshold=0.1)
    assert (s.num_pred_dets, s.false_positives) == (1, 0)  # matched to the pedestrian (IoU 0.25)


def test_read_ground_truth_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_ground_truth(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,20,30,40,1,x,1\n")
    with pytest.raises(InputError, match=r"bad.txt:1: field 'class' is not a number"):
        read_ground_truth(bad)
    dup = tmp_path / "dup.txt"
    # Also a duplicate among rows that are not targets: TrackEval refuses those too.
    dup.write_text("1,1,10,20,30,40,1,1,1\n1,1,15,20,30,40,0,8,1\n")
    with pytest.raises(InputError, match="track 1 has two boxes in frame 1"):
        read_ground_truth(dup)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("1,1,10,20,30,40,1,1,1\n1,2,10,20,30,40,1,-1,-1,-1\n")
    with pytest.raises(InputError, match="mixes 9-field"):
        read_ground_truth(mixed)
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("1,1,10,20,30,40,1,1,1\n1,2,10,20,30,40,1,14,1\n")
    with pytest.raises(InputError, match=r"class must be 1..13, got 14 \(1 rows\)"):
        read_ground_truth(unknown)


@pytest.mark.skipif(not TUD_CAMPUS_GT.exists(), reason="TUD-Campus data not available")
def test_tud_campus_ground_truth_against_itself() -> None:
    gt = read_ground_truth(TUD_CAMPUS_GT)
    targets = gt.targets
    assert len(targets) == 359
    ids = targets.track_ids
    shuffled = np.random.default_rng(0).permutation(ids) + 100
    permuted = targets.relabel({int(a): int(b) for a, b in zip(ids, shuffled)})
    for pred in (targets, permuted):
        s = evaluate(pred, gt)
        assert (s.idf1, s.idp, s.idr, s.mota, s.motp, s.hota, s.deta, s.assa) == pytest.approx((1.0,) * 8)
        assert (s.id_switches, s.false_positives, s.false_negatives) == (0, 0, 0)
        assert s.num_gt_ids == s.num_pred_ids == len(ids)
        assert s.num_frames == targets.num_frames_spanned


# The four shared sequences and the benchmark each comes from (TrackEval's BENCHMARK setting).
BENCHMARK = {"KITTI-17": "MOT15", "MOT16-09": "MOT16", "TUD-Campus": "MOT15", "TUD-Stadtmitte": "MOT15"}
needs_shared_data = pytest.mark.skipif(
    not all((SHARED_DATA / name / "gt" / "gt.txt").is_file() for name in BENCHMARK),
    reason=f"the shared evaluation sequences are not in {SHARED_DATA}",
)
# Our field and TrackEval's (HOTA, DetA, AssA are arrays over alpha; their mean is reported).
TRACKEVAL_FIELDS = {
    "hota": ("HOTA", "HOTA"),
    "deta": ("HOTA", "DetA"),
    "assa": ("HOTA", "AssA"),
    "mota": ("CLEAR", "MOTA"),
    "idf1": ("Identity", "IDF1"),
    "id_switches": ("CLEAR", "IDSW"),
    "false_positives": ("CLEAR", "CLR_FP"),
    "false_negatives": ("CLEAR", "CLR_FN"),
}


def trackeval_scores(sequence: Path, pred_file: Path, work: Path) -> dict[str, float]:
    """TrackEval's own `Evaluator` + `MotChallenge2DBox` (default preprocessing) on one file."""
    import trackeval

    name = sequence.name
    gt_root, trackers = work / "gt", work / "trackers"
    (gt_root / name / "gt").mkdir(parents=True)
    shutil.copy(sequence / "gt" / "gt.txt", gt_root / name / "gt" / "gt.txt")
    (trackers / "ours" / "data").mkdir(parents=True)
    shutil.copy(pred_file, trackers / "ours" / "data" / f"{name}.txt")
    ini = configparser.ConfigParser()
    ini.read(sequence / "seqinfo.ini")
    dataset = trackeval.datasets.MotChallenge2DBox(
        {
            "GT_FOLDER": str(gt_root),
            "TRACKERS_FOLDER": str(trackers),
            "OUTPUT_FOLDER": str(work / "out"),
            "TRACKERS_TO_EVAL": ["ours"],
            "BENCHMARK": BENCHMARK[name],
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {name: int(ini["Sequence"]["seqLength"])},
            "PRINT_CONFIG": False,
        }
    )
    off = ("PRINT_RESULTS", "PRINT_CONFIG", "TIME_PROGRESS", "OUTPUT_SUMMARY", "OUTPUT_DETAILED", "PLOT_CURVES")
    evaluator = trackeval.Evaluator({**dict.fromkeys(off, False), "LOG_ON_ERROR": None})
    metrics = [
        trackeval.metrics.HOTA(),
        *(m({"PRINT_CONFIG": False}) for m in (trackeval.metrics.CLEAR, trackeval.metrics.Identity)),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        results, _ = evaluator.evaluate([dataset], metrics)
    by_metric = results["MotChallenge2DBox"]["ours"][name]["pedestrian"]
    return {ours: float(np.mean(by_metric[metric][field])) for ours, (metric, field) in TRACKEVAL_FIELDS.items()}


def assert_same_as_trackeval(scores: dict[str, float | int], reference: dict[str, float]) -> None:
    ours = {key: scores[key] for key in reference}
    assert ours == pytest.approx(reference, abs=1e-6)


def jittered_guess(gt: GroundTruth, seed: int) -> TrackSet:
    """A tracker's imperfect output made from every ground-truth box, distractors and cars too:
    boxes moved, a fifth dropped, some IDs swapped between people, and boxes where nobody is."""
    rng = np.random.default_rng(seed)
    boxes = gt.boxes
    size = boxes.xyxy[:, 2:] - boxes.xyxy[:, :2]
    shift = rng.normal(0.0, 0.12, (len(boxes), 2)) * size
    xyxy = boxes.xyxy + np.concatenate([shift, shift + rng.normal(0.0, 0.05, (len(boxes), 2)) * size], axis=1)
    track_id = boxes.track_id + 1000 * (rng.random(len(boxes)) < 0.1) * (boxes.frame // 50)
    keep = rng.random(len(boxes)) > 0.2
    empty_frames = np.unique(boxes.frame)[::3]  # one box per frame where nobody is, one ID
    frame = np.concatenate([boxes.frame[keep], empty_frames])
    track_id = np.concatenate([track_id[keep], np.full(len(empty_frames), 99_999)])
    xyxy = np.concatenate([xyxy[keep], np.tile([[1.0, 1.0, 20.0, 50.0]], (len(empty_frames), 1))])
    return TrackSet.from_arrays(frame, track_id, xyxy, np.ones(len(frame))).sorted()


@needs_shared_data
@pytest.mark.parametrize("name", sorted(BENCHMARK))
def test_scores_equal_trackeval_on_ground_truth_and_a_guess(name: str, tmp_path: Path) -> None:
    """Ground truth against itself and a jittered guess: our scores are TrackEval's, and the
    ground truth is perfect (MOTA 1, IDF1 1, no false positive) on every shared sequence."""
    sequence = SHARED_DATA / name
    gt = read_ground_truth(sequence / "gt" / "gt.txt")
    for case, pred in (("itself", gt.targets), ("guess", jittered_guess(gt, seed=len(name)))):
        path = tmp_path / f"{case}.txt"
        write_mot(path, pred)
        scores = evaluate(read_mot(path), gt).to_dict()
        assert_same_as_trackeval(scores, trackeval_scores(sequence, path, tmp_path / case))
        if case == "itself":
            assert (scores["mota"], scores["idf1"], scores["false_positives"]) == (1.0, 1.0, 0)


@pytest.fixture(scope="session", params=sorted(BENCHMARK))
def shared_sequence_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """``reid-merge run --no-video --gt`` on one shared sequence, once per session (30 s to 2 min on CPU)."""
    sequence = SHARED_DATA / request.param
    if not (sequence / "gt" / "gt.txt").is_file():
        pytest.skip(f"the shared evaluation sequences are not in {SHARED_DATA}")
    out = tmp_path_factory.mktemp(request.param) / "run"
    video = sequence / f"{request.param}.mp4"
    gt = sequence / "gt" / "gt.txt"
    # MOT16-09 alone took over 15 minutes on a 2-core runner shared with other jobs.
    result = reid_merge("run", video, "-o", out, "--no-video", "--device", "cpu", "--gt", gt, timeout=3600)
    return sequence, out, result


@pytest.mark.slow
def test_real_run_scores_equal_trackeval(
    shared_sequence_run: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """The raw and merged tracks of a real run, scored by `run --gt` and by `eval`, are TrackEval's."""
    sequence, out, result = shared_sequence_run
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((out / "tracks.json").read_text())["evaluation"]
    for kind, name in (("raw", "raw_tracks.txt"), ("merged", "tracks.txt")):
        reference = trackeval_scores(sequence, out / name, tmp_path / kind)
        assert_same_as_trackeval(evaluation[kind], reference)
        scored = reid_merge("eval", out / name, sequence / "gt" / "gt.txt", "--json")
        assert scored.returncode == 0, scored.stderr
        assert_same_as_trackeval(json.loads(scored.stdout), reference)
