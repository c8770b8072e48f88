"""Oracle fragments: measure the merge alone, without the tracker's own mistakes.

Ground-truth tracks are cut into fragments the way a tracker loses people: at every gap
in a track, and at random points where a few frames are dropped (an occlusion the
tracker could not bridge). Each fragment gets a new ID. The merge is then scored pairwise:
of all fragment pairs it put in one person, how many are one true identity (precision), and
of all pairs that are one identity, how many it joined (recall).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from reid_merge.core.tracks import TrackSet


@dataclass(frozen=True)
class PairwiseScores:
    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int
    clusters: int
    identities: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def cut_into_fragments(
    gt: TrackSet,
    seed: int,
    mean_fragment_frames: float = 50.0,
    dropped_frames: tuple[int, int] = (5, 25),
) -> tuple[TrackSet, dict[int, int]]:
    """Fragments of every true identity, and fragment ID → true identity.

    Args:
        gt: ground-truth tracks.
        seed: for the random cuts; the same seed gives the same fragments.
        mean_fragment_frames: average length between random cuts.
        dropped_frames: inclusive range of frames dropped at each random cut.

    Returns:
        The fragments (detections in dropped frames removed) and the identity of each.
    """
    rng = np.random.default_rng(seed)
    keep = np.ones(len(gt), dtype=bool)
    fragment = np.zeros(len(gt), dtype=np.int64)
    identity_of: dict[int, int] = {}
    next_id = 1
    for identity in gt.track_ids:
        rows = np.flatnonzero(gt.track_id == identity)
        rows = rows[np.argsort(gt.frame[rows], kind="stable")]
        position = 0
        while True:
            position += int(rng.exponential(mean_fragment_frames)) + 1
            if position >= len(rows):
                break
            drop = int(rng.integers(dropped_frames[0], dropped_frames[1] + 1))
            keep[rows[position : position + drop]] = False
            position += drop
        # A fragment ends wherever frames are missing: a gap in the truth or a dropped run.
        kept = rows[keep[rows]]
        if len(kept) == 0:
            continue
        starts = np.concatenate([[True], np.diff(gt.frame[kept]) > 1])
        ids = next_id + np.cumsum(starts) - 1
        fragment[kept] = ids
        identity_of.update({int(f): int(identity) for f in np.unique(ids)})
        next_id = int(ids[-1]) + 1
    fragments = TrackSet.from_arrays(gt.frame[keep], fragment[keep], gt.xyxy[keep], gt.score[keep])
    return fragments, identity_of


def pairwise_scores(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> PairwiseScores:
    """Pairwise precision/recall/F1 of a clustering against true labels.

    >>> s = pairwise_scores([0, 0, 1, 1], [5, 5, 5, 6])
    >>> (s.precision, s.recall, s.true_pairs, s.predicted_pairs)
    (0.5, 0.3333333333333333, 3, 2)
    """
    p = np.asarray(predicted)
    t = np.asarray(truth)
    n = len(p)
    rows, cols = np.triu_indices(n, k=1)
    same_pred = p[rows] == p[cols]
    same_true = t[rows] == t[cols]
    both = int(np.sum(same_pred & same_true))
    predicted_pairs = int(same_pred.sum())
    true_pairs = int(same_true.sum())
    precision = both / predicted_pairs if predicted_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairwiseScores(
        precision, recall, f1, true_pairs, predicted_pairs, len(set(p.tolist())), len(set(t.tolist()))
    )
