from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_merge.core.clustering import cluster_tracks


def test_merges_clear_duplicates() -> None:
    d = np.full((4, 4), 0.9)
    d[0, 2] = d[2, 0] = 0.05
    d[1, 3] = d[3, 1] = 0.1
    np.fill_diagonal(d, 0)
    labels = cluster_tracks(d, np.zeros((4, 4), bool), threshold=0.3)
    assert labels.tolist() == [0, 1, 0, 1]


def test_never_merges_cooccurring_tracks_however_alike() -> None:
    d = np.zeros((3, 3))  # all identical in appearance
    apart = np.zeros((3, 3), bool)
    apart[0, 1] = apart[1, 0] = True
    labels = cluster_tracks(d, apart, threshold=2.0)
    assert labels[0] != labels[1]
    assert labels[2] in (labels[0], labels[1])


def test_tracks_without_evidence_stay_alone() -> None:
    d = np.zeros((3, 3))
    d[2, :] = d[:, 2] = np.nan
    d[2, 2] = 0
    labels = cluster_tracks(d, np.zeros((3, 3), bool), threshold=1.0)
    assert labels.tolist() == [0, 0, 1]


def test_target_number_of_persons_stops_at_what_cannot_link_allows() -> None:
    d = np.zeros((4, 4))
    apart = np.zeros((4, 4), bool)
    apart[0, 1] = apart[1, 0] = True
    assert len(set(cluster_tracks(d, apart, threshold=0.0, num_persons=1).tolist())) == 2
    assert len(set(cluster_tracks(d + 0.5 - np.eye(4) * 0.5, apart, threshold=0.0, num_persons=3).tolist())) == 3


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 12),
    seed=st.integers(0, 10_000),
    threshold=st.floats(0.0, 2.0),
    persons=st.one_of(st.none(), st.integers(1, 12)),
    criterion=st.sampled_from(["complete", "average", "dbc"]),
)
def test_property_cannot_link_is_never_violated(
    n: int, seed: int, threshold: float, persons: int | None, criterion: str
) -> None:
    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 2, size=(n, n)) * rng.integers(0, 2, size=(n, n))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0)
    apart = rng.random((n, n)) < 0.3
    apart = apart | apart.T
    np.fill_diagonal(apart, False)
    labels = cluster_tracks(d, apart, threshold, persons, criterion=criterion)  # type: ignore[arg-type]
    same = labels[:, None] == labels[None, :]
    assert not (same & apart).any()
    assert labels.min() == 0 and set(labels.tolist()) == set(range(labels.max() + 1))


def test_dispersion_criterion_without_weight_is_average_linkage() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        x = rng.normal(size=(15, 3))
        d = np.linalg.norm(x[:, None] - x[None, :], axis=2) / 4
        apart = np.zeros((15, 15), bool)
        apart[2, 7] = apart[7, 2] = True
        for threshold in (0.2, 0.4, 0.8):
            average = cluster_tracks(d, apart, threshold, criterion="average")
            dbc = cluster_tracks(d, apart, threshold, criterion="dbc", dispersion_weight=0.0)
            assert average.tolist() == dbc.tolist()


def test_complete_linkage_joins_only_where_every_pair_is_within_the_threshold() -> None:
    # 0 and 1 are one person (0.1 apart); 2 is 0.3 from 1 but 0.7 from 0. At a threshold of
    # 0.55 average linkage takes 2 in (0.5 from {0, 1} on average); complete linkage does not
    # while 0 and 2 stand 0.7 apart.
    d = np.array([[0.0, 0.1, 0.7], [0.1, 0.0, 0.3], [0.7, 0.3, 0.0]])
    none = np.zeros((3, 3), bool)
    assert cluster_tracks(d, none, threshold=0.55, criterion="average").tolist() == [0, 0, 0]
    assert cluster_tracks(d, none, threshold=0.55, criterion="complete").tolist() == [0, 0, 1]
    assert cluster_tracks(d, none, threshold=0.7).tolist() == [0, 0, 0]  # complete is the default


def test_dispersion_sends_a_newcomer_to_the_tighter_cluster() -> None:
    # A = {0, 1} is loose (0.2 apart), B = {2, 3} tight (0.02). Track 4 is 0.25 from A's
    # members and 0.26 from B's. Average linkage gives it to A, the nearer on average; the
    # dispersion term (0.25 + 0.5 * 0.2 against 0.26 + 0.5 * 0.02) gives it to B.
    d = np.full((5, 5), 1.0)
    d[0, 1] = d[1, 0] = 0.2
    d[2, 3] = d[3, 2] = 0.02
    d[4, :2] = d[:2, 4] = 0.25
    d[4, 2:4] = d[2:4, 4] = 0.26
    np.fill_diagonal(d, 0)
    none = np.zeros((5, 5), bool)
    average = cluster_tracks(d, none, threshold=0.3, criterion="average")
    dbc = cluster_tracks(d, none, threshold=0.3, criterion="dbc", dispersion_weight=0.5)
    assert average.tolist() == [0, 0, 1, 1, 0]
    assert dbc.tolist() == [0, 0, 1, 1, 1]


def _partition(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)}


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(2, 12),
    seed=st.integers(0, 10_000),
    threshold=st.floats(0.0, 2.0),
    persons=st.one_of(st.none(), st.integers(1, 12)),
    criterion=st.sampled_from(["complete", "average", "dbc"]),
    order_seed=st.integers(0, 10_000),
)
def test_property_result_does_not_depend_on_track_order(
    n: int, seed: int, threshold: float, persons: int | None, criterion: str, order_seed: int
) -> None:
    """Listing the tracks in another order gives the same persons, up to renumbering.

    Distances are drawn from a continuous range so that no two are tied: with a tie, which
    pair merges first may rightly depend on the order.
    """
    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 2, size=(n, n))
    d = (d + d.T) / 2
    d[rng.random((n, n)) < 0.1] = np.nan  # pairs without evidence
    d = np.where(np.isnan(d) | np.isnan(d.T), np.nan, d)
    np.fill_diagonal(d, 0)
    apart = rng.random((n, n)) < 0.2
    apart = apart | apart.T
    np.fill_diagonal(apart, False)
    order = np.random.default_rng(order_seed).permutation(n)
    labels = cluster_tracks(d, apart, threshold, persons, criterion=criterion)  # type: ignore[arg-type]
    shuffled = cluster_tracks(
        d[np.ix_(order, order)], apart[np.ix_(order, order)], threshold, persons, criterion=criterion
    )  # type: ignore[arg-type]
    back = np.empty(n, dtype=np.int64)
    back[order] = shuffled  # shuffled[i] is the label of track order[i]
    assert _partition(back) == _partition(labels)
