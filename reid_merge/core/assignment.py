"""Apply a clustering: raw track IDs become person IDs numbered 1..P by first appearance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from reid_merge.core.tracks import TrackSet


def person_ids_by_first_appearance(
    tracks: TrackSet, track_ids: npt.NDArray[np.int64], labels: npt.NDArray[np.int64]
) -> dict[int, int]:
    """Map each raw track ID to a person ID, persons numbered in order of first frame seen.

    Args:
        tracks: the raw detections.
        track_ids: `(N,)` sorted raw IDs, the order of `labels`.
        labels: `(N,)` cluster of each track.

    >>> t = TrackSet.from_arrays([5, 1, 9], [10, 20, 30], np.zeros((3, 4)), [1, 1, 1])
    >>> person_ids_by_first_appearance(t, np.array([10, 20, 30]), np.array([0, 1, 0]))
    {10: 2, 20: 1, 30: 2}
    """
    if len(track_ids) == 0:
        return {}
    first_frame = np.full(len(track_ids), np.iinfo(np.int64).max)
    np.minimum.at(first_frame, np.searchsorted(track_ids, tracks.track_id), tracks.frame)
    num_clusters = int(labels.max()) + 1
    cluster_start = np.full(num_clusters, np.iinfo(np.int64).max)
    np.minimum.at(cluster_start, labels, first_frame)
    # Ties (two persons appearing in the same first frame) are broken by cluster label.
    order = np.lexsort((np.arange(num_clusters), cluster_start))
    person_of_cluster = np.empty(num_clusters, dtype=np.int64)
    person_of_cluster[order] = np.arange(1, num_clusters + 1)
    return {int(t): int(person_of_cluster[c]) for t, c in zip(track_ids, labels)}


def tracks_per_person(mapping: Mapping[int, int], cuts: Iterable[tuple[int, int]]) -> dict[int, int]:
    """How many tracks each person holds, where the two sides of a cut that one person holds
    count as one: the track they were before it (a tentative cut the merge undid, or a cut that
    a correction joined again).

    Args:
        mapping: track (after the cuts) -> person.
        cuts: (earlier side, later side) of each cut. Each later side is a new ID made from one
            track, so the cuts form trees over the tracks and each one held within a person
            takes one track off its count.

    >>> tracks_per_person({1: 1, 7: 1, 3: 1, 2: 2, 8: 3}, [(1, 7), (2, 8)])
    {1: 2, 2: 1, 3: 1}
    """
    count = Counter(mapping.values())
    for earlier, later in cuts:
        if earlier in mapping and mapping[earlier] == mapping.get(later):
            count[mapping[earlier]] -= 1
    return dict(sorted(count.items()))
