"""Group tracks into persons: average-linkage agglomerative clustering with hard cannot-link.

Two tracks that share a frame are two people. Average linkage (not single) is what makes a
hard constraint cheap: such a pair gets a distance so large that the average distance
between any two clusters holding it stays above every threshold we can cut at, so the pair
is never joined. The result is checked against the constraint before it is returned.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

MAX_DISTANCE = 2.0  # 1 - cosine similarity lies in [0, 2]


def cluster_tracks(
    distance: npt.NDArray[np.float64],
    cannot_link: npt.NDArray[np.bool_],
    threshold: float,
    num_persons: int | None = None,
) -> npt.NDArray[np.int64]:
    """Cluster labels for N tracks.

    Args:
        distance: `(N, N)` symmetric distances in `[0, 2]`; NaN means "no evidence" (a track
            without crops) and is treated like a cannot-link.
        cannot_link: `(N, N)` symmetric, True where two tracks must stay apart.
        threshold: merge clusters while their average distance is at most this.
        num_persons: stop at this many clusters instead (never below what cannot-link allows).

    Returns:
        `(N,)` labels in `[0, P)`, numbered by first member.

    >>> d = np.array([[0, .1, .9], [.1, 0, .8], [.9, .8, 0]])
    >>> cluster_tracks(d, np.zeros((3, 3), bool), threshold=0.5).tolist()
    [0, 0, 1]
    >>> apart = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    >>> cluster_tracks(d, apart, threshold=0.5).tolist()
    [0, 1, 2]
    """
    n = distance.shape[0]
    if distance.shape != (n, n) or cannot_link.shape != (n, n):
        raise ValueError(f"expected (N, N) distance and cannot_link, got {distance.shape} and {cannot_link.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    # Any cluster pair containing a barrier pair averages at least barrier / (n^2 / 4) > 2.
    barrier = float(n * n) + 10.0
    d = np.clip(np.nan_to_num(distance, nan=barrier), 0.0, None)
    d = np.where(cannot_link | np.isnan(distance), barrier, np.minimum(d, MAX_DISTANCE))
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    tree = hierarchy.linkage(squareform(d, checks=False), method="average")
    heights = tree[:, 2]
    allowed = int(np.sum(heights <= MAX_DISTANCE))  # merges that join no barrier pair
    if num_persons is not None:
        merges = min(max(n - num_persons, 0), allowed)
    else:
        merges = int(np.sum(heights <= min(threshold, MAX_DISTANCE)))
    labels = _number_by_first_member(_labels_after_merges(tree, n, merges))
    violated = cannot_link & (labels[:, None] == labels[None, :])
    if violated.any():
        i, j = np.argwhere(violated)[0]
        raise AssertionError(f"internal error: tracks {i} and {j} share a frame but were clustered together")
    return labels


def _labels_after_merges(tree: npt.NDArray[np.float64], n: int, merges: int) -> npt.NDArray[np.int64]:
    """Cluster of each leaf after the first `merges` steps of the linkage (exact, even with ties)."""
    sets = hierarchy.DisjointSet(range(2 * n - 1))
    for step in range(merges):
        a, b = int(tree[step, 0]), int(tree[step, 1])
        sets.merge(a, n + step)
        sets.merge(b, n + step)
    return np.array([sets[i] for i in range(n)], dtype=np.int64)


def _number_by_first_member(raw: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse].astype(np.int64)
