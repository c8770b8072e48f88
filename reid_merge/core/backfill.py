"""Give each track the boxes of its first moments, which the tracker saw but did not use.

A ByteTrack track is born only on a box scoring `new_track_thresh`, and ultralytics hides it
until a second box confirms it. A person walking in, or stepping out from behind somebody, is
usually detected for a while before that at a lower score, and those boxes are lost although
ByteTrack itself would have kept them had the track been alive: it continues a track over boxes
down to `track_low_thresh` that overlap it at IoU 0.5. Backfilling walks each track back in
time over the boxes no track took, by that same rule, from its first box moved back at its
velocity (docs/quality.md, "Backfilling track starts": KITTI-17's raw IDF1 0.695 -> 0.754).

Only tracks that lived at least as long as the reach are extended: a short track is as often a
false detection, and extending it adds more of them (ultralytics' own tracker settings start
tracks at 0.25 and lose boxes by extending short ones).

The merge decides on the tracks as tracked, and the backfilled boxes join the persons after it
(`add_backfilled`): fed to the merge, they move where its per-video calibration cuts and joins
(docs/quality.md: MOT16-09 lost cuts of real swaps), though every one of them is right.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reid_merge.core.tracks import TrackSet, box_iou

#: ByteTrack's match of a low-scoring box to a track: IoU at least this.
MATCH_IOU = 0.5


def backfill_starts(
    tracks: TrackSet, untracked: TrackSet, fps: float, reach_seconds: float, min_score: float
) -> TrackSet:
    """The `untracked` boxes (any track IDs; the boxes the detector found that no track took) that
    extend a track of `tracks` back, under that track's ID: frame by frame while one scoring at least `min_score`
    overlaps the track's box moved back one frame at IoU >= `MATCH_IOU`, for at most
    `reach_seconds`. Tracks spanning less than `reach_seconds` are left as they are; a box goes to
    one track at most: to the track that starts first after it, the nearest in time (tracks are
    taken in order of their first frame).

    >>> tracks = TrackSet.from_arrays([5, 6], [1, 1], [[10, 0, 20, 40], [12, 0, 22, 40]], [0.9, 0.9])
    >>> seen = TrackSet.from_arrays([3, 4, 4], [-1, -1, -1], [[6, 0, 16, 40], [8, 0, 18, 40], [60, 0, 70, 40]],
    ...                             [0.4, 0.4, 0.9])
    >>> backfilled = backfill_starts(tracks, seen, fps=2.0, reach_seconds=0.5, min_score=0.3)
    >>> backfilled.frame.tolist(), backfilled.track_id.tolist()
    ([4], [1])
    """
    reach = int(round(reach_seconds * fps))
    if reach <= 0 or len(tracks) == 0 or len(untracked) == 0:
        return TrackSet.empty()
    free = untracked.score >= min_score
    added: list[TrackSet] = []
    first_frame = {int(t): int(tracks.frame[tracks.track_id == t].min()) for t in tracks.track_ids}
    for track_id in sorted(first_frame, key=lambda t: first_frame[t]):
        own = tracks[tracks.track_id == track_id]
        if int(own.frame.max()) - int(own.frame.min()) < reach:
            continue
        order = np.argsort(own.frame)
        frames, boxes = own.frame[order], own.xyxy[order]
        box = boxes[0]
        # Backwards, a frame at a time: what the track moved between its first two boxes.
        velocity = (box - boxes[1]) / max(int(frames[1] - frames[0]), 1) if len(boxes) > 1 else np.zeros(4)
        rows: list[int] = []
        for frame in range(int(frames[0]) - 1, max(int(frames[0]) - 1 - reach, 0), -1):
            candidates = np.flatnonzero(free & (untracked.frame == frame))
            if len(candidates) == 0:
                break
            overlap = box_iou((box + velocity)[None], untracked.xyxy[candidates])[0]
            best = int(np.argmax(overlap))
            if overlap[best] < MATCH_IOU:
                break
            taken = candidates[best]
            free[taken] = False
            rows.append(int(taken))
            found = untracked.xyxy[taken]
            velocity = 0.5 * velocity + 0.5 * (found - box)
            box = found
        if rows:
            picked = untracked[np.array(rows)]
            added.append(TrackSet.from_arrays(picked.frame, np.full(len(rows), track_id), picked.xyxy, picked.score))
    return TrackSet.concat(added).sorted() if added else TrackSet.empty()


def add_backfilled(tracks: TrackSet, person_of: Mapping[int, int], backfilled: TrackSet) -> TrackSet:
    """`tracks` with those `backfilled` boxes (under their tracks' IDs) that fall in a frame where
    the track's person (`person_of`, track ID → person) has no box yet, in frame order: a track's
    first moments can lie where an earlier track of the same person still was.

    >>> tracks = TrackSet.from_arrays([4, 5], [1, 2], [[0, 0, 10, 40], [2, 0, 12, 40]], [0.9, 0.9])
    >>> extra = TrackSet.from_arrays([3, 4], [2, 2], [[0, 0, 10, 40], [1, 0, 11, 40]], [0.4, 0.4])
    >>> add_backfilled(tracks, {1: 1, 2: 1}, extra).frame.tolist()  # frame 4 is track 1's
    [3, 4, 5]
    """
    if len(backfilled) == 0:
        return tracks
    both = TrackSet.concat([tracks, backfilled])
    keep = np.ones(len(both), dtype=bool)
    keep[both.relabel(person_of).duplicate_rows()] = False  # the first of a (frame, person) stays: the tracked box
    return both[keep].sorted()
