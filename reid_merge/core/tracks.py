"""The central data type: a set of tracked detections as a struct of arrays.

Frames are 1-based everywhere (the MOTChallenge convention), boxes are ``x1, y1, x2, y2``
in pixels. ``track_id`` is what a tracker said; after merging the same field holds the
``person_id`` we decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
#: The columns of a TrackSet, in order.
_COLUMNS = ("frame", "track_id", "xyxy", "score")


@dataclass(frozen=True)
class TrackSet:
    """Detections of many tracks.

    Attributes:
        frame: `(n,)` 1-based frame index of each detection.
        track_id: `(n,)` identity of each detection.
        xyxy: `(n, 4)` box corners in pixels.
        score: `(n,)` detector confidence.
    """

    frame: IntArray
    track_id: IntArray
    xyxy: FloatArray
    score: FloatArray

    def __post_init__(self) -> None:
        n = _expect_shape("frame", self.frame, None)
        _expect_shape("track_id", self.track_id, n)
        _expect_shape("score", self.score, n)
        if self.xyxy.ndim != 2 or self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy: expected shape ({n}, 4), got {self.xyxy.shape}")

    @classmethod
    def from_arrays(
        cls,
        frame: npt.ArrayLike,
        track_id: npt.ArrayLike,
        xyxy: npt.ArrayLike,
        score: npt.ArrayLike,
    ) -> TrackSet:
        """Build a set, converting dtypes; `xyxy` may be empty with any first dimension 0."""
        boxes = np.asarray(xyxy, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        return cls(
            frame=np.asarray(frame, dtype=np.int64).reshape(-1),
            track_id=np.asarray(track_id, dtype=np.int64).reshape(-1),
            xyxy=boxes,
            score=np.asarray(score, dtype=np.float64).reshape(-1),
        )

    @classmethod
    def empty(cls) -> TrackSet:
        return cls.from_arrays([], [], np.zeros((0, 4)), [])

    @classmethod
    def concat(cls, parts: Sequence[TrackSet]) -> TrackSet:
        """The detections of every part, in order, in one set."""
        if not parts:
            return cls.empty()
        return cls.from_arrays(*(np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS))

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def __getitem__(self, index: npt.NDArray[np.bool_] | IntArray) -> TrackSet:
        """Select detections by boolean mask or integer index; returns a new set."""
        return TrackSet(
            frame=self.frame[index],
            track_id=self.track_id[index],
            xyxy=self.xyxy[index],
            score=self.score[index],
        )

    @property
    def track_ids(self) -> IntArray:
        """Sorted distinct track IDs."""
        return np.unique(self.track_id)

    @property
    def num_frames_spanned(self) -> int:
        return int(self.frame.max()) if len(self) else 0

    def sorted(self) -> TrackSet:
        """Detections ordered by frame, then track ID (the order files are written in)."""
        return self[np.lexsort((self.track_id, self.frame))]

    def relabel(self, mapping: Mapping[int, int]) -> TrackSet:
        """A new set whose track IDs are replaced through `mapping` (every ID must be in it)."""
        ids = self.track_ids
        missing = [int(t) for t in ids if int(t) not in mapping]
        if missing:
            raise KeyError(f"relabel: no new ID for track IDs {missing[:10]}")
        new_for_old = np.array([mapping[int(t)] for t in ids], dtype=np.int64)
        return TrackSet(
            frame=self.frame.copy(),
            track_id=new_for_old[np.searchsorted(ids, self.track_id)],
            xyxy=self.xyxy.copy(),
            score=self.score.copy(),
        )

    def duplicate_rows(self) -> IntArray:
        """Indices of detections whose (frame, track_id) already occurred earlier."""
        keys = np.stack([self.frame, self.track_id], axis=1)
        _, first = np.unique(keys, axis=0, return_index=True)
        is_dup = np.ones(len(self), dtype=bool)
        is_dup[first] = False
        return np.flatnonzero(is_dup)


def _expect_shape(name: str, array: np.ndarray, n: int | None) -> int:
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{name}: expected length {n}, got {array.shape[0]}")
    return int(array.shape[0])


def cooccurrence(tracks: TrackSet, track_ids: IntArray) -> npt.NDArray[np.bool_]:
    """Which tracks share at least one frame: the hard cannot-link constraint.

    Two detections in one frame are two people, so their tracks can never be one person.

    Args:
        tracks: the detections.
        track_ids: `(N,)` the IDs that index the result's rows and columns.

    Returns:
        `(N, N)` symmetric boolean matrix, False on the diagonal.

    >>> t = TrackSet.from_arrays([1, 1, 2, 3], [7, 8, 8, 9], np.zeros((4, 4)), [1, 1, 1, 1])
    >>> cooccurrence(t, np.array([7, 8, 9])).astype(int).tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    """
    n = len(track_ids)
    if len(tracks) == 0 or n == 0:
        return np.zeros((n, n), dtype=bool)
    col = np.searchsorted(track_ids, tracks.track_id)
    frames, row = np.unique(tracks.frame, return_inverse=True)
    # presence[f, t] = track t is seen in frame f; co-occurrence = presenceᵀ · presence > 0.
    # Sparse, because a long video has many frames and each frame few tracks.
    presence = sparse.csr_matrix((np.ones(len(tracks), dtype=np.float32), (row, col)), shape=(len(frames), n))
    together = (presence.T @ presence).toarray() > 0
    np.fill_diagonal(together, False)
    return together


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
