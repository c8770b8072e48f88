"""Multi-object-tracking scores of predicted tracks against ground truth.

The metrics themselves come from TrackEval (the MOTChallenge reference code, PyPI
``trackeval``); this module only does what its dataset classes would do for MOTChallenge
files: per-frame IoU matrices and identities relabelled to ``0..n-1``. Doing that from two
`TrackSet`s keeps TrackEval's folder layout and config files out of our pipeline.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trackeval

from reid_merge.errors import InputError, UsageError
from reid_merge.tracks import FloatArray, IntArray, TrackSet
from reid_merge.tracks_io import MOT_FIELDS, _check_unique, read_mot_table, xywh_to_xyxy

# Column 8 of MOT16+ ground truth; in MOT15 files it is the world x coordinate (unused).
GT_FIELDS = (*MOT_FIELDS, "class")
PEDESTRIAN_CLASS = 1


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
        num_pred_ids: distinct predicted IDs.
        num_gt_ids: distinct ground-truth IDs.
        num_frames: timesteps evaluated, frames ``1..max(frame)`` of both sets.
        num_gt_dets: ground-truth boxes.
        num_pred_dets: predicted boxes.
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


def evaluate(pred: TrackSet, gt: TrackSet, iou_threshold: float = 0.5) -> TrackingScores:
    """Score predicted tracks against ground truth with TrackEval's HOTA, CLEAR and Identity.

    Every frame ``1..max(frame)`` over both sets is a timestep, also one without any box
    (such a frame changes none of these scores). No distractor or crowd regions are removed:
    every ground-truth box must be found.

    Args:
        pred: the tracks to score.
        gt: the ground truth (see `read_ground_truth`).
        iou_threshold: the IoU a predicted box needs with a ground-truth box to match it, for
            IDF1/IDP/IDR and the CLEAR scores (MOTA, MOTP, switches, counts). HOTA, DetA and
            AssA ignore it: by definition they average over thresholds 0.05, 0.10, ..., 0.95.

    Returns:
        The scores; an empty prediction or ground truth gives the zeros the definitions give
        (no true positives), not an error.

    Raises:
        UsageError: `iou_threshold` is not in ``(0, 1]``.
        InputError: a set holds two boxes with one ID in one frame.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise UsageError(f"iou_threshold: expected a value in (0, 1], got {iou_threshold}")
    for name, tracks in (("prediction", pred), ("ground truth", gt)):
        _check_unique(Path(name), tracks)
    data = _trackeval_sequence(pred, gt)
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


def _trackeval_sequence(pred: TrackSet, gt: TrackSet) -> dict[str, Any]:
    """The per-sequence ``data`` dict TrackEval's metrics take, as its datasets build it."""
    num_frames = max(gt.num_frames_spanned, pred.num_frames_spanned)
    gt_ids, gt_labels = _contiguous_ids(gt)
    pred_ids, pred_labels = _contiguous_ids(pred)
    gt_order, pred_order = np.argsort(gt.frame, kind="stable"), np.argsort(pred.frame, kind="stable")
    frames = np.arange(1, num_frames + 1)
    # Row ranges of each frame in the frame-sorted sets: one searchsorted instead of a
    # mask per frame, which would be quadratic in a long video.
    gt_bounds = np.searchsorted(gt.frame[gt_order], [frames, frames + 1], side="left")
    pred_bounds = np.searchsorted(pred.frame[pred_order], [frames, frames + 1], side="left")
    gt_ids_t, pred_ids_t, similarity_t = [], [], []
    for t in range(num_frames):
        g = gt_order[gt_bounds[0, t] : gt_bounds[1, t]]
        p = pred_order[pred_bounds[0, t] : pred_bounds[1, t]]
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


def box_iou(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """Intersection over union of every pair of boxes.

    Args:
        boxes_a: `(n, 4)` boxes ``x1, y1, x2, y2``.
        boxes_b: `(m, 4)` boxes ``x1, y1, x2, y2``.

    Returns:
        `(n, m)` IoU in ``0..1``; 0 for a pair whose union has no area.

    >>> iou = box_iou(np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[5.0, 0.0, 15.0, 10.0], [20.0, 0, 30, 10]]))
    >>> iou.round(4).tolist()
    [[0.3333, 0.0]]
    """
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(boxes_a[:, 2:] - boxes_a[:, :2], axis=1)
    area_b = np.prod(boxes_b[:, 2:] - boxes_b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def read_ground_truth(path: Path) -> TrackSet:
    """Read MOTChallenge ground truth, keeping the boxes a pedestrian tracker must find.

    Both layouts are told apart per row by the number of fields:

    - MOT16+ (9 fields ``frame,id,x,y,w,h,flag,class,visibility``): only rows with
      ``flag != 0`` and ``class == 1`` (pedestrian) are kept. Simplification: the official
      evaluation also removes predictions matched to distractor classes (static person,
      reflection, ...); here those boxes are just dropped, so a prediction on them counts
      as a false positive.
    - MOT15 (10 fields ``frame,id,x,y,w,h,conf,wx,wy,wz``) and any other count: every row is
      a pedestrian (conf is 1 or -1 and does not mark ignored boxes).

    Rows are validated like `reid_merge.tracks_io.read_mot`'s. Every score is 1.

    Raises:
        InputError: the file is missing or malformed, or an ID has two boxes in one frame.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    values, num_fields = read_mot_table(path, GT_FIELDS)
    is_mot16 = num_fields == 9
    keep = ~is_mot16 | ((values[:, 6] != 0) & (values[:, 7] == PEDESTRIAN_CLASS))
    rows = values[keep]
    tracks = TrackSet.from_arrays(rows[:, 0], rows[:, 1], xywh_to_xyxy(rows[:, 2:6]), np.ones(len(rows)))
    _check_unique(path, tracks)
    return tracks
