"""Boxes for the frames where a tracker lost a person: gap filling after the merge.

A merge gives one person one ID, but in the frames between two joined fragments (and in
the short gaps inside one raw track) the person still has no box. Leading trackers close
such gaps after association: ByteTrack interpolates linearly in its MOTChallenge
submissions, StrongSORT++ adds Gaussian-smoothed interpolation (GSI). Both are here, as
pure functions on a `TrackSet` with person IDs.

A gap is filled only when it is at most `max_gap_frames` long and the boxes before and
after it could be one walk: the hand-over between the part before and the part after must
be plausible by the same rule the merge uses (`motion.reachable`, box heights per second).
Filled boxes are marked: the returned mask, and a score of `FILLED_SCORE` (no detector
said anything there).

Where a tracker starts tracks on boxes it is unsure of (low thresholds, as ultralytics' own
ByteTrack settings; `starts_unsure` tells from its tracks), most filled boxes are wrong: they
bridge gaps of tracks on false detections, or lie on a box another track already holds, the
same person tracked twice. `sure_score` then fills only gaps between two boxes the detector
was sure of, and no box onto another track's (docs/quality.md, "Gap filling").
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from reid_merge.core.motion import handover, reachable, track_ends
from reid_merge.core.tracks import TrackSet, box_iou

FillMethod = Literal["linear", "gsi"]
FILL_METHODS: tuple[str, ...] = ("linear", "gsi")
FILLED_SCORE = 0.0  # the score (and MOT conf) of a filled box: no detection there
ON_ANOTHER_IOU = 0.5  # a filled box this much on another track's box lies on it (MOT's match IoU)
BoolArray = npt.NDArray[np.bool_]


def fill_gaps(
    tracks: TrackSet,
    max_gap_frames: int,
    fps: float,
    slack_heights: float = 0.5,
    heights_per_second: float = 1.0,
    method: FillMethod = "linear",
    sure_score: float | None = None,
) -> tuple[TrackSet, BoolArray]:
    """Fill each person's gaps of at most `max_gap_frames` missing frames.

    Args:
        tracks: boxes with person IDs in `track_id`; at most one box per person and frame.
        max_gap_frames: the longest run of missing frames that is filled (0: none).
        fps: frame rate, to turn gaps into seconds for the walk check.
        slack_heights, heights_per_second: the plausible hand-over of `motion.reachable`.
        method: ``linear`` (boxes on the straight line between the two ends of the gap) or
            ``gsi`` (linear, then every box of the person smoothed by Gaussian-process
            regression, StrongSORT's GSI; detected boxes move too, their scores stay).
        sure_score: None fills every gap the walk check allows. A score fills only gaps
            whose boxes on both sides score at least that, and leaves out every filled box
            that lies on another track's box in its frame (IoU >= `ON_ANOTHER_IOU`).

    Returns:
        The boxes, filled ones added, sorted by frame then person; and `(n,)` True for the
        filled boxes. Filled boxes lie strictly inside their person's first and last frame
        and in frames where that person had no box.

    >>> t = TrackSet.from_arrays([1, 4], [7, 7], [[0, 0, 10, 20], [6, 0, 16, 20]], [0.9, 0.8])
    >>> filled, mask = fill_gaps(t, max_gap_frames=2, fps=25)
    >>> filled.frame.tolist(), mask.tolist(), filled.xyxy[1].tolist()
    ([1, 2, 3, 4], [False, True, True, False], [2.0, 0.0, 12.0, 20.0])
    """
    if method not in FILL_METHODS:
        raise ValueError(f"method: expected one of {', '.join(FILL_METHODS)}, got {method!r}")
    tracks = tracks.sorted()
    if len(tracks) == 0 or max_gap_frames < 1:
        return tracks, np.zeros(len(tracks), dtype=bool)
    order = np.lexsort((tracks.frame, tracks.track_id))
    person, frame, xyxy = tracks.track_id[order], tracks.frame[order], tracks.xyxy[order]
    # Row k and k + 1 of one person, with a gap of 1..max_gap_frames missing frames between them.
    missing = np.diff(frame) - 1
    same_person = person[1:] == person[:-1]
    candidate = np.flatnonzero(same_person & (missing >= 1) & (missing <= max_gap_frames))
    if sure_score is not None:
        score = tracks.score[order]
        candidate = candidate[(score[candidate] >= sure_score) & (score[candidate + 1] >= sure_score)]
    candidate = candidate[_one_walk(tracks, person, frame, candidate, fps, slack_heights, heights_per_second)]
    if len(candidate) == 0:
        return tracks, np.zeros(len(tracks), dtype=bool)
    counts = missing[candidate]
    before = np.repeat(candidate, counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1  # 1..gap in each gap
    weight = (step / (counts + 1).repeat(counts))[:, None]
    new = TrackSet.from_arrays(
        frame[before] + step,
        person[before],
        (1.0 - weight) * xyxy[before] + weight * xyxy[before + 1],
        np.full(len(before), FILLED_SCORE),
    )
    if sure_score is not None:
        new = new[~on_another_track(new, tracks)]
    filled = TrackSet.from_arrays(
        np.concatenate([tracks.frame, new.frame]),
        np.concatenate([tracks.track_id, new.track_id]),
        np.concatenate([tracks.xyxy, new.xyxy]),
        np.concatenate([tracks.score, new.score]),
    )
    mask = np.concatenate([np.zeros(len(tracks), dtype=bool), np.ones(len(new), dtype=bool)])
    if method == "gsi":
        filled = smooth_gsi(filled)
    order = np.lexsort((filled.track_id, filled.frame))
    return filled[order], mask[order]


def starts_unsure(tracks: TrackSet, sure_score: float) -> bool:
    """Does some track begin on a box scoring below `sure_score`?

    ByteTrack confirms a track only on a box above its high threshold: with that at or above
    `sure_score` no track begins unsure (ours, 0.5: none of 116 raw tracks on ../shared/data),
    with ultralytics' own settings (0.25) half or more do.

    >>> t = TrackSet.from_arrays([1, 2, 3, 4], [1, 1, 2, 2], np.zeros((4, 4)), [0.6, 0.2, 0.3, 0.9])
    >>> starts_unsure(t, 0.5), starts_unsure(t[:2], 0.5)
    (True, False)
    """
    if len(tracks) == 0:
        return False
    order = np.lexsort((tracks.frame, tracks.track_id))
    first = np.concatenate([[True], np.diff(tracks.track_id[order]) != 0])
    return bool((tracks.score[order][first] < sure_score).any())


def on_another_track(boxes: TrackSet, tracks: TrackSet) -> BoolArray:
    """`(len(boxes),)`: does the box lie on a box of another track of `tracks` in its frame?

    >>> t = TrackSet.from_arrays([1, 1], [1, 2], [[0, 0, 10, 20], [50, 0, 60, 20]], [0.9, 0.9])
    >>> b = TrackSet.from_arrays([1, 1, 2], [3, 1, 3], [[1, 0, 11, 20], [1, 0, 11, 20], [1, 0, 11, 20]], [0, 0, 0])
    >>> on_another_track(b, t).tolist()
    [True, False, False]
    """
    lies_on = np.zeros(len(boxes), dtype=bool)
    for frame in np.intersect1d(boxes.frame, tracks.frame):
        mine, theirs = np.flatnonzero(boxes.frame == frame), np.flatnonzero(tracks.frame == frame)
        overlapping = box_iou(boxes.xyxy[mine], tracks.xyxy[theirs]) >= ON_ANOTHER_IOU
        another = boxes.track_id[mine][:, None] != tracks.track_id[theirs][None, :]
        lies_on[mine] = (overlapping & another).any(axis=1)
    return lies_on


def _one_walk(
    tracks: TrackSet,
    person: npt.NDArray[np.int64],
    frame: npt.NDArray[np.int64],
    gaps: npt.NDArray[np.int64],
    fps: float,
    slack_heights: float,
    heights_per_second: float,
) -> BoolArray:
    """`(len(gaps),)`: is the part after each gap a plausible continuation of the part before?

    Each person is cut at every missing frame into parts; the parts on either side of a gap
    are judged as the merge judges two tracks (`motion.handover`, `motion.reachable`).
    """
    if len(gaps) == 0:
        return np.zeros(0, dtype=bool)
    # Part index of every row (sorted by person, frame): a new part after any break.
    breaks = np.concatenate([[True], (person[1:] != person[:-1]) | (np.diff(frame) > 1)])
    part = np.cumsum(breaks) - 1
    order = np.lexsort((tracks.frame, tracks.track_id))
    parts = TrackSet(frame, part.astype(np.int64), tracks.xyxy[order], tracks.score[order])
    part_ids = np.arange(int(part[-1]) + 1, dtype=np.int64)
    ends = track_ends(parts, part_ids)
    a, b = part[gaps], part[gaps + 1]
    ok = np.zeros(len(gaps), dtype=bool)
    for p in np.unique(person[gaps]):  # small matrices: the parts of one person
        ids = np.unique(part[person == p])
        error, gap_seconds = handover(ends.subset(ids), fps)
        allowed = reachable(error, gap_seconds, slack_heights, heights_per_second)
        mine = person[gaps] == p
        ok[mine] = allowed[a[mine] - ids[0], b[mine] - ids[0]]
    return ok


GSI_TAU = 10.0  # StrongSORT's tau: the length scale's range is [1 / tau, tau ** 2] frames


def smooth_gsi(tracks: TrackSet, tau: float = GSI_TAU) -> TrackSet:
    """Every person's box coordinates smoothed over time by Gaussian-process regression (GSI).

    As StrongSORT's ``GSI.py`` (Du et al. 2023): an RBF kernel of fixed length scale
    ``clip(tau * log(tau ** 3 / n), 1 / tau, tau ** 2)`` frames for a person of `n` boxes, one
    regression per coordinate, fitted and predicted at the person's frames. Frames, IDs and
    scores are kept; the order of the rows too.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF

    xyxy = tracks.xyxy.copy()
    for person in tracks.track_ids:
        rows = np.flatnonzero(tracks.track_id == person)
        if len(rows) < 3:
            continue
        length_scale = float(np.clip(tau * np.log(tau**3 / len(rows)), 1.0 / tau, tau**2))
        t = tracks.frame[rows].astype(np.float64).reshape(-1, 1)
        regression = GaussianProcessRegressor(RBF(length_scale, "fixed"))
        try:
            smooth = regression.fit(t, tracks.xyxy[rows]).predict(t)
        except np.linalg.LinAlgError:  # an ill-conditioned kernel: keep this person's boxes
            continue
        if np.all((smooth[:, 2] > smooth[:, 0]) & (smooth[:, 3] > smooth[:, 1])):  # else keep them too
            xyxy[rows] = smooth
    return TrackSet(tracks.frame.copy(), tracks.track_id.copy(), xyxy, tracks.score.copy())
