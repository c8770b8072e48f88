"""Find persons boxed twice: a person each of whose boxes lies over a box of one longer person.

The detector sometimes boxes one person twice (a box round the whole person and one round part
of them, or two boxes a little apart), and the tracker tracks both. Two tracks that share a
frame are never one person, so the merge keeps the second as a person of its own: in the output
it is one more ID, and every box of it is a false positive. Tracker settings that start tracks
on unsure boxes (ultralytics' own) make many.

A person is taken for a double where, in every frame it holds, a box of one other, longer person
overlaps its box at IoU `MATCH_IOU` or more (the overlap at which ByteTrack carries a track over
a low-scoring box: one person). A real person hidden behind another is seen overlapping less
than that in some frame as they come out, and so is kept. Measured end to end on the four
sequences with ground truth (docs/quality.md, "A person boxed twice, left out"): no score fell
on any input, and every sequence gained when left out of the choice.
"""

from __future__ import annotations

import numpy as np

from reid_merge.core.backfill import MATCH_IOU
from reid_merge.core.tracks import TrackSet, box_iou, cooccurrence


def find_doubles(persons: TrackSet) -> dict[int, int]:
    """Each person of `persons` (track IDs are persons) that is another person boxed twice,
    and the person it doubles: of those whose box overlaps its box at IoU >= `MATCH_IOU` in
    every frame it holds, the one with most boxes (ties: the lower ID). A person doubles only
    one with more boxes, or as many and a lower ID, so of two that double each other one stays.

    >>> boxes = [[0, 0, 10, 40], [1, 0, 11, 38], [0, 0, 10, 40], [1, 2, 11, 40], [50, 0, 60, 40]]
    >>> persons = TrackSet.from_arrays([1, 1, 2, 2, 3], [4, 5, 4, 5, 4], boxes, [0.9] * 5)
    >>> find_doubles(persons)
    {5: 4}
    >>> find_doubles(persons[persons.frame == 1])  # one frame each: the lower ID stays
    {5: 4}
    """
    ids = persons.track_ids
    together = cooccurrence(persons, ids)
    rows = {int(p): np.flatnonzero(persons.track_id == p) for p in ids}
    frames = {p: persons.frame[r] for p, r in rows.items()}

    def rank(person: int) -> tuple[int, int]:  # more boxes first, then the lower ID
        return len(rows[person]), -person

    doubles: dict[int, int] = {}
    for i, j in zip(*np.nonzero(together)):
        mine, theirs = int(ids[i]), int(ids[j])
        if rank(theirs) < rank(mine):
            continue  # a person doubles only a longer one
        shared, at_mine, at_theirs = np.intersect1d(frames[mine], frames[theirs], return_indices=True)
        if len(shared) < len(rows[mine]):
            continue
        overlap = np.diag(box_iou(persons.xyxy[rows[mine][at_mine]], persons.xyxy[rows[theirs][at_theirs]]))
        if (overlap >= MATCH_IOU).all():
            best = doubles.get(mine)
            if best is None or rank(theirs) > rank(best):
                doubles[mine] = theirs
    return dict(sorted(doubles.items()))
