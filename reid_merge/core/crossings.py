"""Find where two tracks swapped people as they crossed: each carries on the other's walk.

A tracker that swaps two people where they meet leaves two tracks that each jump, at the same
frame, from one person's path onto the other's. Appearance can judge such a place only where
both sides have crops enough (`impurity`), and on the dev sequences a third to a half of the
synthetic swaps do not. Motion can judge every one: cut both tracks there, and the four parts
can be linked back as they were or crosswise, the earlier part of each continuing as the later
part of the other. Each linking is scored as a stitch is (`stitching`: one walk both ends agree
on, the position and size a hand-over lands at), by how much its walk changes speed or
direction, and by how much its boxes change shape (width for their height: a person swapped
onto another track takes their breadth along, while a box around two people keeps its own
where it jumps, KITTI-17), under bounds learnt from cuts of the video's own tracks where no
frame was lost (how one person carries on where nothing went wrong). Where crosswise is
likelier than as they were by the odds asked of a stitch that motion alone carries, for each
of the two tracks, and each track's own continuation lies beyond those bounds, both tracks are
cut. The parts then go through the merge like any other fragment, and the stitch joins them
crosswise. Nothing is a fixed tolerance: the bounds are this video's.

Where two people walk together, both linkings fit about as well and nothing is cut; where two
cross at one point, either linking lands in place but only one keeps each walk's direction
(KITTI-17's oracle fragments: without the velocity, two people who crossed were cut there);
where the tracker followed each person through, crosswise asks each track to jump by the
distance between them, far beyond how one person carries on. On real trackers' tracks a box
or two off its path (a low-confidence detection, somebody half hidden) breaks one track's
continuation, not both at once as a swap does; and as two tracks are cut, each is asked the
odds of one link (at those of one link for the pair, a track that had not switched was cut
with one that had: docs/quality.md). Two tracks that box one person twice (the detector's box
round the whole person and one round part of them, both tracked) can trade boxes where their
sizes cross; whichever holds which box, each holds that person, so where their boxes overlap
at IoU 0.5 or more in every frame they share on both sides of the place, nothing is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reid_merge.core.backfill import MATCH_IOU
from reid_merge.core.encounters import close_pairs, jump_frame
from reid_merge.core.impurity import Split
from reid_merge.core.motion import aspect_change, size_change, track_ends, velocity_change
from reid_merge.core.stitching import HandoverModel, one_person_log_density, stitch_error, within_bounds
from reid_merge.core.tracks import TrackSet, box_iou

IntArray = npt.NDArray[np.int64]

#: Frames on each side of a place whose boxes measure the parts' ends, as `motion.track_ends`
#: fits ten boxes near a track's ends; no further, so that a part seen on and off behind others
#: is measured where it was, not on boxes seen long before.
WINDOW = 10
#: Boxes each part needs, so that its velocity is measured, not guessed.
MIN_BOXES = 2


@dataclass(frozen=True)
class Crossing:
    """Tracks `first` and `second` hold each other's person from `frame` on; `log_odds`: how
    much likelier crosswise than as they were."""

    first: int
    second: int
    frame: int
    log_odds: float


def crossings(tracks: TrackSet, fps: float, model: HandoverModel, min_log_odds: float) -> list[Crossing]:
    """The places where two tracks that came close are likelier crosswise than as they were by at
    least `min_log_odds` (`model`: how the video's tracks carry on where nothing was lost,
    `stitching.handover_model` with no gap), at most one per meeting of two tracks (the
    likeliest place), and no track cut twice within `WINDOW` frames (the likelier place kept).

    The places tried in each meeting (a run of frames where the two boxes lie within a box
    width, `encounters.close_pairs`, and the frame after) are where either box jumps most: a
    swap moves each box onto the other's path. (Also trying the frame where the two stand
    nearest, where a swap of two who cross at one point moves no box, cut a clean track of
    TUD-Campus on ultralytics' settings: docs/quality.md.)
    """
    if len(tracks) == 0:
        return []
    frame, first, second = close_pairs(tracks)
    a, b = tracks.track_id[first], tracks.track_id[second]
    low, high = np.minimum(a, b), np.maximum(a, b)
    by_track = {int(t): tracks[tracks.track_id == t].sorted() for t in np.unique(np.concatenate([low, high]))}
    candidates: list[tuple[int, int, int]] = []
    for x, y in sorted(set(zip(low.tolist(), high.tolist()))):
        frames = np.unique(frame[(low == x) & (high == y)])
        for run in np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1):
            places = {jump_frame(by_track[t], int(run[0]) - 1, int(run[-1]) + 1) for t in (x, y)}
            candidates += [(x, y, place) for place in sorted(places)]
    scored = _log_odds(by_track, candidates, fps, model)
    found = [Crossing(x, y, t, float(odds)) for (x, y, t), odds in zip(candidates, scored) if odds >= min_log_odds]
    # The likeliest place of each meeting, then of each track's neighbourhood.
    kept: list[Crossing] = []
    for crossing in sorted(found, key=lambda c: -c.log_odds):
        near = [
            k
            for k in kept
            if {k.first, k.second} & {crossing.first, crossing.second} and abs(k.frame - crossing.frame) <= WINDOW
        ]
        if not near:
            kept.append(crossing)
    return sorted(kept, key=lambda c: (c.frame, c.first))


def cut_at_crossings(tracks: TrackSet, found: list[Crossing]) -> list[Split]:
    """Both tracks of each crossing cut at its frame, in frame order: a later cut of a track cuts
    the part its earlier one made. New track IDs follow the largest in `tracks`."""
    next_id = int(tracks.track_ids.max()) + 1 if len(tracks) else 0
    latest: dict[int, int] = {}  # track → the part that holds its frames from its latest cut on
    splits = []
    for crossing in sorted(found, key=lambda c: c.frame):
        for track in (crossing.first, crossing.second):
            splits.append(Split(latest.get(track, track), next_id, crossing.frame, crossing.log_odds, by="motion"))
            latest[track] = next_id
            next_id += 1
    return splits


def _log_odds(
    by_track: dict[int, TrackSet], candidates: list[tuple[int, int, int]], fps: float, model: HandoverModel
) -> npt.NDArray[np.float64]:
    """Log likelihood of crosswise minus as they were, per candidate; -inf where a part has fewer
    than MIN_BOXES boxes within WINDOW frames of the place, where the two tracks box one person
    there, or where either track's own continuation lies inside the bounds (position, size and
    velocity)."""
    pieces: list[TrackSet] = []
    usable = np.zeros(len(candidates), dtype=bool)
    for k, (x, y, t) in enumerate(candidates):
        parts = [
            track[rows]
            for track in (by_track[x], by_track[y])
            for rows in (
                np.flatnonzero((track.frame >= t - WINDOW) & (track.frame < t)),
                np.flatnonzero((track.frame >= t) & (track.frame < t + WINDOW)),
            )
        ]
        if min(len(part) for part in parts) < MIN_BOXES or _one_person_boxed_twice(parts):
            continue
        usable[k] = True
        for part in parts:  # x before, x after, y before, y after: labelled by position, as `ends` orders them
            pieces.append(TrackSet.from_arrays(part.frame, np.full(len(part), len(pieces)), part.xyxy, part.score))
    odds = np.full(len(candidates), -np.inf)
    if not pieces:
        return odds
    joined = TrackSet.concat(pieces)
    ends = track_ends(joined, joined.track_ids, window=WINDOW)
    for slot, candidate in enumerate(np.flatnonzero(usable)):
        four = ends.subset(np.arange(4 * slot, 4 * slot + 4))
        earlier, later = np.array([0, 2, 0, 2]), np.array([1, 3, 3, 1])  # as they were, then crosswise
        error, gap = (values[earlier, later] for values in stitch_error(four, fps))
        size, turn = size_change(four, earlier, later), velocity_change(four, earlier, later, fps)
        log_same = one_person_log_density(error, size, gap, model, turn, aspect_change(four, earlier, later))
        # Each track left its own walk: one jittery box does not do that to both.
        if not within_bounds(error, size, gap, model, turn)[:2].any():
            odds[candidate] = log_same[2:].sum() - log_same[:2].sum()
    return odds


def _one_person_boxed_twice(parts: list[TrackSet]) -> bool:
    """Whether the two tracks box one person on both sides of the place (`parts`: each track's
    boxes before and from it, as `_log_odds` orders them): in every frame they share there,
    their boxes overlap at MATCH_IOU or more (the overlap at which ByteTrack carries a track over
    its low-scoring boxes: one person). Two such boxes trading tracks changes
    nobody's identity (KITTI-17 tracked with new tracks from a score of 0.5: a box round the
    whole person and one round the upper body, their heights crossing, both tracks cut and
    never joined again: docs/quality.md)."""
    for mine, other in ((parts[0], parts[2]), (parts[1], parts[3])):
        shared, at_mine, at_other = np.intersect1d(mine.frame, other.frame, return_indices=True)
        if len(shared) == 0 or (np.diag(box_iou(mine.xyxy[at_mine], other.xyxy[at_other])) < MATCH_IOU).any():
            return False
    return True
