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
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import numpy.typing as npt

from reid_merge.core.motion import TrackEnds, handover, reachable, track_ends
from reid_merge.core.tracks import TrackSet

FillMethod = Literal["linear", "gsi"]
FILL_METHODS: tuple[str, ...] = ("linear", "gsi")
FILLED_SCORE = 0.0  # the score (and MOT conf) of a filled box: no detection there
BoolArray = npt.NDArray[np.bool_]


def fill_gaps(
    tracks: TrackSet,
    max_gap_frames: int,
    fps: float,
    slack_heights: float = 0.5,
    heights_per_second: float = 1.0,
    method: FillMethod = "linear",
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
    candidate = candidate[_one_walk(tracks, person, frame, candidate, fps, slack_heights, heights_per_second)]
    if len(candidate) == 0:
        return tracks, np.zeros(len(tracks), dtype=bool)
    counts = missing[candidate]
    before = np.repeat(candidate, counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1  # 1..gap in each gap
    weight = (step / (counts + 1).repeat(counts))[:, None]
    new_boxes = (1.0 - weight) * xyxy[before] + weight * xyxy[before + 1]
    filled = TrackSet.from_arrays(
        np.concatenate([tracks.frame, frame[before] + step]),
        np.concatenate([tracks.track_id, person[before]]),
        np.concatenate([tracks.xyxy, new_boxes]),
        np.concatenate([tracks.score, np.full(len(before), FILLED_SCORE)]),
    )
    mask = np.concatenate([np.zeros(len(tracks), dtype=bool), np.ones(len(before), dtype=bool)])
    if method == "gsi":
        filled = smooth_gsi(filled)
    order = np.lexsort((filled.track_id, filled.frame))
    return filled[order], mask[order]


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
        error, gap_seconds = handover(_select(ends, ids), fps)
        allowed = reachable(error, gap_seconds, slack_heights, heights_per_second)
        mine = person[gaps] == p
        ok[mine] = allowed[a[mine] - ids[0], b[mine] - ids[0]]
    return ok


def _select(ends: TrackEnds, ids: npt.NDArray[np.int64]) -> TrackEnds:
    """The ends of parts `ids` only."""
    return TrackEnds(*(getattr(ends, field.name)[ids] for field in dataclasses.fields(ends)))


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
