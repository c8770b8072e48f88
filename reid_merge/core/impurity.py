"""Split impure tracks: one track ID that the tracker moved from one person to another.

A merge can only join tracks, so a track that holds two people drags one of them into the
wrong person. Its crops show it: they fall into an early and a late group that look alike
inside and unlike each other. The split point is first found between two crops, then refined
to the frame inside that interval where the box jumps most (a swap moves the box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reid_merge.core.tracks import TrackSet

MIN_CROPS_EACH_SIDE = 3


@dataclass(frozen=True)
class Split:
    """Track `track_id` becomes `new_track_id` from frame `frame` on."""

    track_id: int
    new_track_id: int
    frame: int
    margin: float


def best_split(features: npt.NDArray[np.floating]) -> tuple[int, float]:
    """Where a time-ordered run of unit features divides best into two groups, and by how much.

    The margin is the mean similarity inside the two groups minus the mean similarity across
    them; a track of one person has a margin near zero.

    Args:
        features: `(k, D)` L2-normalised crop features in time order.

    Returns:
        `(s, margin)`: the split lies between crop `s - 1` and crop `s`; margin -inf when `k`
        is too small to split.

    >>> f = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    >>> best_split(f)
    (3, 1.0)
    """
    k = len(features)
    if k < 2 * MIN_CROPS_EACH_SIDE:
        return 0, -np.inf
    sim = features @ features.T
    best_s, best_margin = 0, -np.inf
    for s in range(MIN_CROPS_EACH_SIDE, k - MIN_CROPS_EACH_SIDE + 1):
        early, late = sim[:s, :s], sim[s:, s:]
        inside = (early.sum() - s + late.sum() - (k - s)) / (s * (s - 1) + (k - s) * (k - s - 1))
        across = sim[:s, s:].mean()
        if inside - across > best_margin:
            best_s, best_margin = s, float(inside - across)
    return best_s, best_margin


def jump_frame(track: TrackSet, after: int, before: int) -> int:
    """The first frame of the later part: where, between two frames, the box jumps most.

    The jump is the change of box centre and height between consecutive detections, in box
    heights.
    """
    t = track.sorted()
    inside = np.flatnonzero((t.frame > after) & (t.frame <= before))
    if len(inside) == 0:
        return before
    centre = (t.xyxy[:, :2] + t.xyxy[:, 2:]) / 2.0
    height = t.xyxy[:, 3] - t.xyxy[:, 1]
    previous = inside - 1
    jump = np.linalg.norm(centre[inside] - centre[previous], axis=1) + np.abs(height[inside] - height[previous])
    jump /= np.maximum(height[previous], 1.0)
    return int(t.frame[inside[int(np.argmax(jump))]])


def find_impure_tracks(
    tracks: TrackSet,
    features: npt.NDArray[np.floating],
    crop_track: npt.NDArray[np.int64],
    crop_frame: npt.NDArray[np.int64],
    margin: float,
) -> list[Split]:
    """Tracks whose crops split into two groups by more than `margin`, and where to cut them.

    Args:
        tracks: the raw detections.
        features: `(M, D)` L2-normalised crop features.
        crop_track: `(M,)` track of each crop.
        crop_frame: `(M,)` frame of each crop.
        margin: smallest inside-minus-across similarity that counts as two people.
    """
    splits = []
    next_id = int(tracks.track_id.max()) + 1 if len(tracks) else 1
    for track_id in np.unique(crop_track):
        rows = np.flatnonzero(crop_track == track_id)
        rows = rows[np.argsort(crop_frame[rows], kind="stable")]
        s, found = best_split(np.asarray(features)[rows])
        if found <= margin:
            continue
        frame = jump_frame(tracks[tracks.track_id == track_id], int(crop_frame[rows[s - 1]]), int(crop_frame[rows[s]]))
        splits.append(Split(int(track_id), next_id, frame, found))
        next_id += 1
    return splits


def apply_splits(
    tracks: TrackSet, crop_track: npt.NDArray[np.int64], crop_frame: npt.NDArray[np.int64], splits: list[Split]
) -> tuple[TrackSet, npt.NDArray[np.int64]]:
    """Relabel the later part of each split track, in the detections and in the crops."""
    track_id = tracks.track_id.copy()
    new_crop_track = crop_track.copy()
    for split in splits:
        track_id[(tracks.track_id == split.track_id) & (tracks.frame >= split.frame)] = split.new_track_id
        new_crop_track[(crop_track == split.track_id) & (crop_frame >= split.frame)] = split.new_track_id
    return TrackSet(tracks.frame.copy(), track_id, tracks.xyxy.copy(), tracks.score.copy()), new_crop_track
