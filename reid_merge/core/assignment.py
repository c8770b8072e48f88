"""Apply a clustering: raw track IDs become person IDs numbered 1..P by first appearance."""

from __future__ import annotations

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
