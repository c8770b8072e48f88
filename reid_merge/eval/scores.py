"""Multi-object-tracking scores of predicted tracks against ground truth.

The metrics themselves come from TrackEval (the MOTChallenge reference code, PyPI
``trackeval``); this module does what its ``MotChallenge2DBox`` dataset class does with the
files before the metrics see them: per-frame IoU matrices, predictions on distractors removed,
ignored ground truth dropped, identities relabelled to ``0..n-1``. Doing that from a `TrackSet`
and a `GroundTruth` keeps TrackEval's folder layout and config files out of our pipeline, and
gives the scores TrackEval gives for the same files (tests/test_evaluation.py compares them).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trackeval
from scipy.optimize import linear_sum_assignment

from reid_merge.core.tracks import IntArray, TrackSet, box_iou
from reid_merge.errors import InputError, UsageError
from reid_merge.io.tracks_io import MOT_FIELDS, _check_unique, read_mot_table, xywh_to_xyxy

# Column 8 of MOT16+ ground truth; in MOT15 files it is the world x coordinate (unused).
GT_FIELDS = (*MOT_FIELDS, "class")
MOT16_FIELD_COUNT = 9  # frame,id,x,y,w,h,flag,class,visibility; MOT15 rows have 10 fields
PEDESTRIAN_CLASS = 1
# MOT16+ classes (TrackEval's MotChallenge2DBox numbering); others are rejected as it does.
MOT16_CLASSES = range(1, 14)
# Person on vehicle, static person, distractor, reflection: a prediction on one of these is
# neither a hit nor a false positive (MotChallenge2DBox's list for MOT16/MOT17). MOT20 adds
# class 6, non-MOT vehicle; its files have the same 9 fields, so they are scored as MOT17's.
DISTRACTOR_CLASSES = (2, 7, 8, 12)
# The IoU at which a prediction counts as on a distractor (MotChallenge2DBox's, fixed).
DISTRACTOR_IOU = 0.5


@dataclass(frozen=True)
class GroundTruth:
    """Every box of a MOTChallenge ground-truth file and what the benchmark makes of it.

    Only `targets` are boxes a tracker must find; `distractors` are boxes a prediction may
    cover without being charged for it. Everything else (zero-marked boxes, cars, occluders)
    is neither: a prediction there is a false positive, as in the official evaluation.

    Attributes:
        boxes: every row of the file, score 1.
        considered: `(n,)` the row's flag (column 7) is not 0; zero-marked rows are ignored.
        class_id: `(n,)` the MOT16+ class (column 8); every MOT15 row is a pedestrian (1),
            since that layout has no classes.
    """

    boxes: TrackSet
    considered: npt.NDArray[np.bool_]
    class_id: IntArray

    @classmethod
    def from_tracks(cls, tracks: TrackSet) -> GroundTruth:
        """Ground truth in which every box is a pedestrian to find."""
        return cls(tracks, np.ones(len(tracks), dtype=bool), np.full(len(tracks), PEDESTRIAN_CLASS, dtype=np.int64))

    @property
    def targets(self) -> TrackSet:
        """The boxes a tracker must find: considered pedestrians."""
        return self.boxes[self.considered & (self.class_id == PEDESTRIAN_CLASS)]

    @property
    def distractors(self) -> npt.NDArray[np.bool_]:
        """`(n,)` rows whose class makes a prediction on them uncounted (zero-marked or not)."""
        return np.isin(self.class_id, DISTRACTOR_CLASSES)


@dataclass(frozen=True)
class TrackingScores:
    """Scores of one prediction against one ground truth; fractions are in ``0..1``.

    Attributes:
        idf1: identity F1, ``2 IDTP / (2 IDTP + IDFP + IDFN)`` under the best one-to-one
            matching of whole tracks: the score a track merge should raise.
        idp: identity precision, ``IDTP / (IDTP + IDFP)``.
        idr: identity recall, ``IDTP / (IDTP + IDFN)``.
        mota: ``1 - (FN + FP + IDSW) / num_gt_dets``; can be negative.
        motp: mean IoU of the matched boxes.
        hota: higher-order tracking accuracy, ``sqrt(DetA * AssA)`` averaged over IoU
            thresholds alpha = 0.05, 0.10, ..., 0.95.
        deta: detection accuracy (averaged the same way).
        assa: association accuracy (averaged the same way).
        id_switches: times a ground-truth identity is matched to a different predicted ID
            than when last matched.
        fragmentations: times a ground-truth track resumes being matched after a gap.
        mostly_tracked: ground-truth identities matched in more than 80% of their frames.
        mostly_lost: ground-truth identities matched in less than 20% of their frames.
        false_positives: predicted boxes matched to no ground truth (CLEAR matching).
        false_negatives: ground-truth boxes matched to no prediction (CLEAR matching).
        num_pred_ids: distinct predicted IDs scored (not counting boxes on distractors).
        num_gt_ids: distinct ground-truth IDs (of the targets).
        num_frames: timesteps evaluated, frames ``1..max(frame)`` of both sets.
        num_gt_dets: ground-truth boxes to find (the targets).
        num_pred_dets: predicted boxes scored (not counting boxes on distractors).
        iou_threshold: the IoU a match needs for IDF1 and CLEAR (MOTA, MOTP, counts).
    """

    idf1: float
    idp: float
    idr: float
    mota: float
    motp: float
    hota: float
    deta: float
    assa: float
    id_switches: int
    fragmentations: int
    mostly_tracked: int
    mostly_lost: int
    false_positives: int
    false_negatives: int
    num_pred_ids: int
    num_gt_ids: int
    num_frames: int
    num_gt_dets: int
    num_pred_dets: int
    iou_threshold: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain Python numbers keyed by field name, ready for ``json.dumps``."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for a table: fractions as percent, counts as integers."""
        out = [(label, f"{100 * getattr(self, name):.1f}%") for label, name in _PERCENT_ROWS]
        out += [(label, str(getattr(self, name))) for label, name in _COUNT_ROWS]
        out.append(("IoU threshold", f"{self.iou_threshold:g}"))
        return out


_PERCENT_ROWS = (
    ("IDF1", "idf1"),
    ("IDP", "idp"),
    ("IDR", "idr"),
    ("MOTA", "mota"),
    ("MOTP", "motp"),
    ("HOTA", "hota"),
    ("DetA", "deta"),
    ("AssA", "assa"),
)
_COUNT_ROWS = (
    ("ID switches", "id_switches"),
    ("Fragmentations", "fragmentations"),
    ("Mostly tracked", "mostly_tracked"),
    ("Mostly lost", "mostly_lost"),
    ("False positives", "false_positives"),
    ("False negatives", "false_negatives"),
    ("Predicted IDs", "num_pred_ids"),
    ("Ground-truth IDs", "num_gt_ids"),
    ("Frames", "num_frames"),
    ("Predicted boxes", "num_pred_dets"),
    ("Ground-truth boxes", "num_gt_dets"),
)


def evaluate(pred: TrackSet, gt: GroundTruth, iou_threshold: float = 0.5) -> TrackingScores:
    """Score predicted tracks against ground truth with TrackEval's HOTA, CLEAR and Identity.

    The data is prepared as TrackEval's ``MotChallenge2DBox`` prepares it with its default
    preprocessing: in each frame, predictions are matched one-to-one to all ground-truth boxes
    (Hungarian, IoU >= 0.5) and those matched to a distractor are removed; then only the
    targets remain as ground truth. Every frame ``1..max(frame)`` over both sets is a
    timestep, also one without any box (such a frame changes none of these scores).

    Args:
        pred: the tracks to score.
        gt: the ground truth (see `read_ground_truth`).
        iou_threshold: the IoU a predicted box needs with a ground-truth box to match it, for
            IDF1/IDP/IDR and the CLEAR scores (MOTA, MOTP, switches, counts). HOTA, DetA and
            AssA ignore it: by definition they average over thresholds 0.05, 0.10, ..., 0.95.
            The removal of predictions on distractors always uses 0.5, as TrackEval does.

    Returns:
        The scores; an empty prediction or ground truth gives the zeros the definitions give
        (no true positives), not an error. Box and ID counts are those scored, after the
        predictions on distractors were removed.

    Raises:
        UsageError: `iou_threshold` is not in ``(0, 1]``.
        InputError: a set holds two boxes with one ID in one frame.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise UsageError(f"iou_threshold: expected a value in (0, 1], got {iou_threshold}")
    for name, tracks in (("prediction", pred), ("ground truth", gt.boxes)):
        _check_unique(Path(name), tracks)
    data = _trackeval_sequence(pred[~_on_distractors(pred, gt)], gt.targets)
    config = {"THRESHOLD": iou_threshold, "PRINT_CONFIG": False}
    # TrackEval prints its config and, once its Evaluator has switched timing on, per-call
    # timings; library code must not print, so anything it writes is discarded.
    with contextlib.redirect_stdout(io.StringIO()):
        hota = trackeval.metrics.HOTA().eval_sequence(data)
        clear = trackeval.metrics.CLEAR(dict(config)).eval_sequence(data)
        identity = trackeval.metrics.Identity(dict(config)).eval_sequence(data)
    return TrackingScores(
        idf1=float(identity["IDF1"]),
        idp=float(identity["IDP"]),
        idr=float(identity["IDR"]),
        mota=float(clear["MOTA"]),
        motp=float(clear["MOTP"]),
        # HOTA fields are arrays over the 19 alpha thresholds; the reported score is their mean.
        hota=float(np.mean(hota["HOTA"])),
        deta=float(np.mean(hota["DetA"])),
        assa=float(np.mean(hota["AssA"])),
        id_switches=int(clear["IDSW"]),
        fragmentations=int(clear["Frag"]),
        mostly_tracked=int(clear["MT"]),
        mostly_lost=int(clear["ML"]),
        false_positives=int(clear["CLR_FP"]),
        false_negatives=int(clear["CLR_FN"]),
        num_pred_ids=int(data["num_tracker_ids"]),
        num_gt_ids=int(data["num_gt_ids"]),
        num_frames=int(data["num_timesteps"]),
        num_gt_dets=int(data["num_gt_dets"]),
        num_pred_dets=int(data["num_tracker_dets"]),
        iou_threshold=float(iou_threshold),
    )


def _on_distractors(pred: TrackSet, gt: GroundTruth) -> npt.NDArray[np.bool_]:
    """`(n,)` predictions that MotChallenge2DBox removes: matched to a distractor-class box.

    Per frame, the Hungarian matching maximises the summed IoU between the predictions and
    every ground-truth box of that frame, pairs under IoU 0.5 not allowed, and a prediction
    paired with a distractor is removed. Rows keep their order within a frame (a file's
    order), so that ties resolve as TrackEval resolves them.
    """
    removed = np.zeros(len(pred), dtype=bool)
    frames = np.unique(gt.boxes.frame[gt.distractors])
    eps = np.finfo(float).eps
    for g, p in zip(_rows_by_frame(gt.boxes, frames), _rows_by_frame(pred, frames)):
        if len(p) == 0:
            continue
        iou = box_iou(gt.boxes.xyxy[g], pred.xyxy[p])
        iou[iou < DISTRACTOR_IOU - eps] = 0.0
        rows, cols = linear_sum_assignment(-iou)
        matched = iou[rows, cols] > eps
        rows, cols = rows[matched], cols[matched]
        removed[p[cols[gt.distractors[g][rows]]]] = True
    return removed


def _rows_by_frame(tracks: TrackSet, frames: IntArray) -> list[IntArray]:
    """Row indices of `tracks` in each of `frames`, in row order.

    One stable sort and a searchsorted instead of a mask per frame, which would be
    quadratic in a long video.
    """
    order = np.argsort(tracks.frame, kind="stable")
    bounds = np.searchsorted(tracks.frame[order], [frames, frames + 1], side="left")
    return [order[a:b] for a, b in zip(bounds[0], bounds[1])]


def _trackeval_sequence(pred: TrackSet, gt: TrackSet) -> dict[str, Any]:
    """The per-sequence ``data`` dict TrackEval's metrics take, as its datasets build it."""
    num_frames = max(gt.num_frames_spanned, pred.num_frames_spanned)
    gt_ids, gt_labels = _contiguous_ids(gt)
    pred_ids, pred_labels = _contiguous_ids(pred)
    frames = np.arange(1, num_frames + 1)
    gt_ids_t, pred_ids_t, similarity_t = [], [], []
    for g, p in zip(_rows_by_frame(gt, frames), _rows_by_frame(pred, frames)):
        gt_ids_t.append(gt_labels[g])
        pred_ids_t.append(pred_labels[p])
        similarity_t.append(box_iou(gt.xyxy[g], pred.xyxy[p]))
    return {
        "num_timesteps": num_frames,
        "num_gt_ids": len(gt_ids),
        "num_tracker_ids": len(pred_ids),
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(pred),
        "gt_ids": gt_ids_t,
        "tracker_ids": pred_ids_t,
        "similarity_scores": similarity_t,
    }


def _contiguous_ids(tracks: TrackSet) -> tuple[IntArray, IntArray]:
    """Distinct IDs `(k,)` and each detection's `(n,)` index into them.

    TrackEval indexes its count arrays by ID, so the IDs it sees must be ``0..k-1``.
    """
    ids, labels = np.unique(tracks.track_id, return_inverse=True)
    return ids, labels.astype(np.int64).reshape(-1)


def read_ground_truth(path: Path) -> GroundTruth:
    """Read MOTChallenge ground truth with what the benchmark needs to score against it.

    The layout is told by the number of fields, which must be the same on every row:

    - 9 fields, MOT16+ ``frame,id,x,y,w,h,flag,class,visibility``: scored as TrackEval scores
      MOT16/MOT17 (targets are ``flag != 0`` and class 1; classes 2, 7, 8 and 12 are
      distractors). The class must be 1..13, which TrackEval also requires.
    - any other count, MOT15 ``frame,id,x,y,w,h,conf,wx,wy,wz``: scored as TrackEval scores
      MOT15 (no classes; rows with ``conf`` 0 are ignored, the rest are targets).

    The flag and class are truncated to integers, as TrackEval reads them. Rows are
    validated like `reid_merge.io.tracks_io.read_mot`'s. Every score is 1.

    Raises:
        InputError: the file is missing or malformed, mixes the layouts, holds a class
            outside 1..13, or an ID has two boxes in one frame (among all rows).
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    values, num_fields = read_mot_table(path, GT_FIELDS)
    is_mot16 = num_fields == MOT16_FIELD_COUNT
    if is_mot16.any() and not is_mot16.all():
        other = int(num_fields[~is_mot16][0])
        raise InputError(f"{path}: mixes {MOT16_FIELD_COUNT}-field (MOT16+) rows with {other}-field rows")
    # A missing conf (6- or 7-field rows) is NaN: such a row is considered.
    flag = np.trunc(np.nan_to_num(values[:, 6], nan=1.0))
    if is_mot16.all() and len(values):
        class_id = np.trunc(values[:, 7]).astype(np.int64)
        invalid = ~np.isin(class_id, MOT16_CLASSES)
        if invalid.any():
            raise InputError(
                f"{path}: MOT16+ class must be 1..{MOT16_CLASSES[-1]}, got {class_id[invalid][0]} "
                f"({int(invalid.sum())} rows)"
            )
    else:
        class_id = np.full(len(values), PEDESTRIAN_CLASS, dtype=np.int64)
    boxes = TrackSet.from_arrays(values[:, 0], values[:, 1], xywh_to_xyxy(values[:, 2:6]), np.ones(len(values)))
    _check_unique(path, boxes)
    return GroundTruth(boxes, flag != 0, class_id)
