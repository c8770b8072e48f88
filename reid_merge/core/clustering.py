"""Group tracks into persons: agglomerative clustering with hard cannot-link.

Two tracks that share a frame are two people. Complete or average linkage (not single) is
what makes a hard constraint cheap: such a pair gets a distance so large that the largest
(or the average) distance between any two clusters holding it stays above every threshold
we can cut at, so the pair is never joined. The result is checked against the constraint
before it is returned.

Complete linkage, the default, joins two clusters only where every pair of their members is
within the threshold: the join's threshold is where appearance alone is decisive for a pair
(`calibration.decisive_similarity`), and average linkage let a cluster take a chain that was
below it for some member (OSNet, MOT16-09: a chain at similarity 0.38 to one member and 0.56
to the other, joined at a line of 0.41; docs/quality.md).

The dispersion-based criterion (Ding et al., "A Dispersion Based Clustering for
Unsupervised Person Re-identification", BMVC 2019) is the alternative: clusters a and b are
ranked by ``d(a, b) + λ (d(a) + d(b))`` with d(a) the mean distance inside a, which joins
isolated tracks first and holds back clusters that are already loose.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

MAX_DISTANCE = 2.0  # 1 - cosine similarity lies in [0, 2]
Criterion = Literal["complete", "average", "dbc"]
CRITERIA: tuple[str, ...] = get_args(Criterion)


def cluster_tracks(
    distance: npt.NDArray[np.float64],
    cannot_link: npt.NDArray[np.bool_],
    threshold: float,
    num_persons: int | None = None,
    criterion: Criterion = "complete",
    dispersion_weight: float = 0.1,
) -> npt.NDArray[np.int64]:
    """Cluster labels for N tracks.

    Args:
        distance: `(N, N)` symmetric distances in `[0, 2]`; NaN means "no evidence" (a track
            without crops) and is treated like a cannot-link.
        cannot_link: `(N, N)` symmetric, True where two tracks must stay apart.
        threshold: merge clusters while their largest (``complete``) or average (``average``)
            distance is at most this.
        num_persons: stop at this many clusters instead (never below what cannot-link allows).
        criterion: ``complete`` or ``average`` linkage, or ``dbc``, where the threshold
            applies to the dispersion-penalised distance.
        dispersion_weight: λ of the dispersion-based criterion.

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
    if criterion == "dbc":
        merges = _dispersion_merges(distance, cannot_link, dispersion_weight)
    else:
        merges = _linkage_merges(distance, cannot_link, criterion)
    steps = merges[:, 2]
    if num_persons is not None:
        count = min(max(n - num_persons, 0), len(steps))
    else:  # merge until the first step above the threshold (dbc's steps need not rise)
        above = np.flatnonzero(steps > min(threshold, MAX_DISTANCE))
        count = int(above[0]) if len(above) else len(steps)
    labels = _number_by_first_member(_labels_after_merges(merges, n, count))
    violated = cannot_link & (labels[:, None] == labels[None, :])
    if violated.any():
        i, j = np.argwhere(violated)[0]
        raise AssertionError(f"internal error: tracks {i} and {j} share a frame but were clustered together")
    return labels


def _linkage_merges(
    distance: npt.NDArray[np.float64], cannot_link: npt.NDArray[np.bool_], method: str
) -> npt.NDArray[np.float64]:
    """scipy's linkage tree (`method`: complete or average), cut before the first merge that
    would join a cannot-link pair."""
    n = distance.shape[0]
    # Any cluster pair containing a barrier pair averages at least barrier / (n^2 / 4) > 2 (its
    # largest distance is the barrier itself).
    barrier = float(n * n) + 10.0
    d = np.where(cannot_link | np.isnan(distance), barrier, np.clip(np.nan_to_num(distance), 0.0, MAX_DISTANCE))
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    tree = hierarchy.linkage(squareform(d, checks=False), method=method)
    return tree[tree[:, 2] <= MAX_DISTANCE]


def _dispersion_merges(
    distance: npt.NDArray[np.float64], cannot_link: npt.NDArray[np.bool_], weight: float
) -> npt.NDArray[np.float64]:
    """Greedy merges by the dispersion-based criterion, in scipy's linkage-tree layout.

    Rows are ``(cluster a, cluster b, criterion value, size)``, clusters numbered as in scipy
    (leaves 0..n-1, the k-th merge n + k). O(n^3) in numpy steps: fine for hundreds of tracks.
    """
    n = distance.shape[0]
    forbidden = cannot_link | np.isnan(distance)
    d = np.clip(np.nan_to_num(distance), 0.0, MAX_DISTANCE)
    between = (d + d.T) / 2.0  # summed distances between clusters
    np.fill_diagonal(between, 0.0)
    within = np.zeros(n)  # summed distances inside each cluster
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    node = np.arange(n)  # scipy id of the cluster in each slot
    rows = []
    for step in range(n - 1):
        pairs = size * (size - 1) / 2
        dispersion = np.divide(within, pairs, out=np.zeros(n), where=pairs > 0)
        score = between / np.outer(size, size) + weight * (dispersion[:, None] + dispersion[None, :])
        score[forbidden | ~alive[:, None] | ~alive[None, :]] = np.inf
        np.fill_diagonal(score, np.inf)
        a, b = np.unravel_index(int(np.argmin(score)), score.shape)
        if not np.isfinite(score[a, b]):
            break
        rows.append((node[a], node[b], score[a, b], size[a] + size[b]))
        within[a] += within[b] + between[a, b]
        between[a, :] += between[b, :]
        between[:, a] = between[a, :]
        between[a, a] = 0.0
        forbidden[a, :] |= forbidden[b, :]
        forbidden[:, a] = forbidden[a, :]
        size[a] += size[b]
        alive[b] = False
        node[a] = n + step
    merges = np.array(rows, dtype=np.float64).reshape(-1, 4)
    # The criterion is not monotone; keep merges in order, stopping where it first exceeds 2.
    over = np.flatnonzero(merges[:, 2] > MAX_DISTANCE)
    return merges[: over[0]] if len(over) else merges


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


def any_between(pairs: npt.NDArray[np.bool_], group: npt.NDArray[np.int64], num_groups: int) -> npt.NDArray[np.bool_]:
    """`(G, G)`: is any pair of members of groups a and b marked in the `(N, N)` `pairs`?

    >>> any_between(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], bool), np.array([0, 1, 1]), 2).astype(int).tolist()
    [[0, 1], [1, 0]]
    """
    member = sparse.csr_matrix((np.ones(len(group)), (group, np.arange(len(group)))), shape=(num_groups, len(group)))
    return (member @ sparse.csr_matrix(pairs.astype(np.float64)) @ member.T).toarray() > 0
