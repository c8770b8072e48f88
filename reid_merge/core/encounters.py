"""Encounters: where a track passed close to another person, the only places a tracker can hand
its ID to somebody else.

Two boxes of one frame are close when they overlap or lie within a box width of each other.
A run of a track's boxes close to somebody is one encounter, and a swap inside it moves the
box, so the place of an encounter is where the box jumps most. Impure tracks are cut at these
places (`impurity`), and the crop sampler keeps crops on both sides of them (`crops`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from reid_merge.core.tracks import TrackSet

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Fewer crops than this on either side of a place and the two sides are not compared: one
#: or two views of a person say too little about who it is.
MIN_CROPS_EACH_SIDE = 3


def close_boxes(xyxy: FloatArray) -> tuple[IntArray, IntArray]:
    """Pairs `(i, j)`, `i < j`, of the boxes of one frame that overlap or lie within a box width
    of each other.

    The gap between two boxes is the larger of their horizontal and vertical gaps (0 when they
    overlap); a box width is the narrower box's.

    >>> [a.tolist() for a in close_boxes(np.array([[0., 0, 10, 30], [15, 0, 25, 30], [60, 0, 70, 30]]))]
    [[0], [1]]
    """
    gap_x = np.maximum(xyxy[:, None, 0], xyxy[None, :, 0]) - np.minimum(xyxy[:, None, 2], xyxy[None, :, 2])
    gap_y = np.maximum(xyxy[:, None, 1], xyxy[None, :, 1]) - np.minimum(xyxy[:, None, 3], xyxy[None, :, 3])
    width = xyxy[:, 2] - xyxy[:, 0]
    close = np.maximum(gap_x, gap_y) <= np.minimum(width[:, None], width[None, :])
    i, j = np.nonzero(np.triu(close, k=1))
    return i.astype(np.int64), j.astype(np.int64)


def close_pairs(tracks: TrackSet) -> tuple[IntArray, IntArray, IntArray]:
    """`close_boxes` over every frame.

    Returns:
        `(frame, first, second)`: `(p,)` each, `first < second` row indices into `tracks`.

    >>> t = TrackSet.from_arrays([1, 1, 1], [1, 2, 3], [[0, 0, 10, 30], [15, 0, 25, 30], [60, 0, 70, 30]], [1, 1, 1])
    >>> [a.tolist() for a in close_pairs(t)]
    [[1], [0], [1]]
    """
    order = np.argsort(tracks.frame, kind="stable")
    bounds = np.flatnonzero(np.diff(tracks.frame[order])) + 1
    found: list[tuple[IntArray, IntArray, IntArray]] = []
    for rows in np.split(order, bounds):
        if len(rows) < 2:
            continue
        i, j = close_boxes(tracks.xyxy[rows])
        found.append((tracks.frame[rows[i]], rows[i], rows[j]))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(parts).astype(np.int64) for parts in zip(*found))  # type: ignore[return-value]


def near_another(tracks: TrackSet, pairs: tuple[IntArray, IntArray, IntArray] | None = None) -> npt.NDArray[np.bool_]:
    """`(n,)` True for the boxes within a box width of another track's box in the same frame.

    `pairs`: `close_pairs(tracks)`, when the caller has them already.
    """
    _, first, second = close_pairs(tracks) if pairs is None else pairs
    near = np.zeros(len(tracks), dtype=bool)
    near[first] = near[second] = True
    return near


def box_jump(previous: FloatArray, current: FloatArray) -> FloatArray:
    """How far a box moved between two detections of one track: the change of centre and height,
    in the earlier box's heights. `(..., 4)` boxes in, `(...)` out.

    >>> float(box_jump(np.array([0., 0, 10, 20]), np.array([0., 10, 10, 30])))
    0.5
    """
    centre_change = ((current[..., :2] + current[..., 2:]) - (previous[..., :2] + previous[..., 2:])) / 2.0
    height = previous[..., 3] - previous[..., 1]
    height_change = np.abs((current[..., 3] - current[..., 1]) - height)
    return (np.linalg.norm(centre_change, axis=-1) + height_change) / np.maximum(height, 1.0)


def jump_frame(track: TrackSet, after: int, before: int) -> int:
    """The first frame of the later part: where, between two frames, the box jumps most
    (`box_jump` between consecutive detections)."""
    t = track.sorted()
    inside = np.flatnonzero((t.frame > after) & (t.frame <= before))
    inside = inside[inside > 0]
    if len(inside) == 0:
        return before
    jump = box_jump(t.xyxy[inside - 1], t.xyxy[inside])
    return int(t.frame[inside[int(np.argmax(jump))]])


def near_runs(near: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    """`(starts, ends)` of the runs of True in `near`, each run the rows `[start, end)`.

    >>> [a.tolist() for a in near_runs(np.array([True, True, False, True]))]
    [[0, 3], [2, 4]]
    """
    edges = np.diff(np.concatenate([[0], near.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def encounter_frames(track: TrackSet, near: npt.NDArray[np.bool_]) -> IntArray:
    """The places of one track's encounters: in each run of boxes near another person, and the
    first box after it, the frame where the box jumps most.

    Args:
        track: the detections of one track, sorted by frame.
        near: `(n,)` its boxes that were near another track's.
    """
    frames = track.frame
    cuts = [
        jump_frame(track, int(frames[max(int(start) - 1, 0)]), int(frames[min(int(end), len(frames) - 1)]))
        for start, end in zip(*near_runs(near))
    ]
    return np.unique(np.array(cuts, dtype=np.int64))
