"""Stitch fragments end to start: the tracker lost somebody, and picked them up again.

A fragment has at most one predecessor and one successor, and over a short gap a person
carries on as they were going. So the fragments of a video are chained by a one-to-one
assignment (Hungarian, as tracklet-linking methods do) between track ends and track starts.
A link's evidence is a likelihood ratio: how well the start matches the end moved on over
the gap (position, in box heights, and size), under "one person" against "somebody else who
happens to be there". On held-out fragments the true successor was the best motion
continuation 94% of the time and the most similar-looking candidate 51%, so motion leads and
appearance is added as evidence of its own (`calibration`).

Nothing here is a fixed tolerance. How far one person's hand-over strays is learnt from the
video's own tracks (`handover_model`): each is cut at a few places and a stretch of frames
dropped, as a tracker would lose it; the two parts are one person by construction. How likely
somebody else is to be there is the video's own crowding (`clutter_density`). So the same
code serves a steady camera and a moving one, a sparse street and a crowded entrance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from reid_merge.core.motion import TrackEnds, handover, size_change, track_ends
from reid_merge.core.tracks import TrackSet

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: 95% radius of a standard normal in 1 and 2 dimensions.
NORMAL_95 = {1: 1.959964, 2: float(np.sqrt(-2.0 * np.log(0.05)))}


@dataclass(frozen=True)
class Envelope:
    """A bound that grows with the gap: ``slack + rate * gap_seconds``."""

    slack: float
    rate: float

    def at(self, gap_seconds: FloatArray) -> FloatArray:
        return self.slack + self.rate * np.asarray(gap_seconds, dtype=np.float64)


@dataclass(frozen=True)
class HandoverModel:
    """How one person's hand-over strays in this video, as 95% bounds over the gap.

    Attributes:
        position: the hand-over error (`motion.handover`), in box heights.
        size: the size change beyond the growth over the gap (`motion.size_change`), as a
            ``|log|`` of heights.
        samples: how many cuts of the video's own tracks it was fitted on (0: the fallback).
    """

    position: Envelope
    size: Envelope
    samples: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "position_slack_heights": self.position.slack,
            "position_heights_per_second": self.position.rate,
            "size_slack_log": self.size.slack,
            "size_log_per_second": self.size.rate,
            "samples": self.samples,
        }


#: Boxes each part of a cut keeps, so that its end velocity is measured, not guessed.
MIN_PART = 5

#: Used when a video has too few long tracks to learn from: the motion gate's bound, and a size
#: change of at most 30% (+ 30% per second).
FALLBACK_MODEL = HandoverModel(Envelope(0.5, 1.0), Envelope(0.25, 0.25), 0)


def handover_model(
    tracks: TrackSet,
    fps: float,
    max_gap_seconds: float,
    quantile: float = 0.95,
    cuts_per_track: int = 8,
    min_samples: int = 20,
) -> HandoverModel:
    """Fit the bounds on cuts of the video's own tracks (a share `quantile` of cuts inside them).

    Each track long enough is cut `cuts_per_track` times at evenly spaced places, each time with
    a different gap (spread up to `max_gap_seconds` or what the track allows); both parts keep
    at least `MIN_PART` boxes. Each
    bound is the line through the `quantile` of the cuts in the shorter and the longer half of
    the gaps. With fewer than `min_samples` cuts the video says too little: `FALLBACK_MODEL`.
    """
    max_gap = max(int(round(max_gap_seconds * fps)), 1)
    parts: list[TrackSet] = []
    for index, track_id in enumerate(tracks.track_ids):
        rows = np.flatnonzero(tracks.track_id == track_id)
        rows = rows[np.argsort(tracks.frame[rows], kind="stable")]
        span = int(tracks.frame[rows[-1]] - tracks.frame[rows[0]]) if len(rows) else 0
        longest = min(max_gap, span - 2 * MIN_PART)  # both parts keep MIN_PART frames or more
        if len(rows) < 2 * MIN_PART or longest < 1:
            continue
        for cut in range(cuts_per_track):
            gap = 1 + (index * cuts_per_track + cut) * 7919 % longest  # spread, deterministic
            start = tracks.frame[rows[0]] + MIN_PART + (span - 2 * MIN_PART - gap) * cut // max(cuts_per_track - 1, 1)
            before = rows[tracks.frame[rows] < start]
            after = rows[tracks.frame[rows] >= start + gap]
            if len(before) < MIN_PART or len(after) < MIN_PART:
                continue
            label = np.repeat([2 * len(parts), 2 * len(parts) + 1], [len(before), len(after)])
            piece = tracks[np.concatenate([before, after])]
            parts.append(TrackSet.from_arrays(piece.frame, label, piece.xyxy, piece.score))
    if len(parts) < min_samples:
        return FALLBACK_MODEL
    joined = TrackSet.from_arrays(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in ("frame", "track_id", "xyxy", "score"))
    )
    ends = track_ends(joined, joined.track_ids)
    earlier, later = np.arange(0, 2 * len(parts), 2), np.arange(1, 2 * len(parts), 2)
    errors = np.array([handover(ends.subset([a, b]), fps)[0][0, 1] for a, b in zip(earlier, later)])
    size = np.abs(size_change(ends, earlier, later))
    seconds = (ends.first_frame[later] - ends.last_frame[earlier]) / fps
    return HandoverModel(_quantile_line(errors, seconds, quantile), _quantile_line(size, seconds, quantile), len(parts))


def _quantile_line(values: FloatArray, seconds: FloatArray, quantile: float) -> Envelope:
    """The line through the `quantile` of `values` for the shorter and for the longer half of the gaps."""
    shorter = seconds <= np.median(seconds)
    if shorter.all() or (~shorter).sum() < 5:
        return Envelope(float(np.quantile(values, quantile)), 0.0)
    x = np.array([np.median(seconds[shorter]), np.median(seconds[~shorter])])
    y = np.array([np.quantile(values[shorter], quantile), np.quantile(values[~shorter], quantile)])
    rate = max(float((y[1] - y[0]) / max(x[1] - x[0], 1e-9)), 0.0)
    return Envelope(max(float(y[0] - rate * x[0]), 0.01), rate)


def clutter_density(
    tracks: TrackSet, track_ids: IntArray, radius: float = 2.0, size_band: float = 0.5, window: int = 10
) -> FloatArray:
    """How crowded it is where each track ends: other people per square box height per unit of
    log size, within `radius` box heights and `size_band` log size of its last `window` boxes,
    and never less than the video's average around a person. It is the density of the
    alternative a link is tested against: somebody else who happens to be where the lost
    person should be, likelier in a group than on an empty pavement.
    """
    if len(tracks) == 0:
        return np.zeros(len(track_ids))
    centre = (tracks.xyxy[:, :2] + tracks.xyxy[:, 2:]) / 2.0
    height = np.maximum(tracks.xyxy[:, 3] - tracks.xyxy[:, 1], 1.0)
    order = np.argsort(tracks.frame, kind="stable")
    near = np.zeros(len(tracks))
    for rows in np.split(order, np.flatnonzero(np.diff(tracks.frame[order])) + 1):
        distance = np.linalg.norm(centre[rows, None] - centre[None, rows], axis=2)
        distance /= (height[rows, None] + height[None, rows]) / 2.0
        size = np.abs(np.log(height[rows, None] / height[None, rows]))
        near[rows] = np.sum((distance <= radius) & (size <= size_band), axis=1) - 1
    local = np.zeros(len(track_ids))
    by_track = np.lexsort((tracks.frame, tracks.track_id))
    bounds = np.searchsorted(tracks.track_id[by_track], track_ids, side="right")
    for k, hi in enumerate(bounds):
        rows = by_track[max(hi - window, 0) : hi]
        rows = rows[tracks.track_id[rows] == track_ids[k]]
        local[k] = near[rows].mean() if len(rows) else 0.0
    return np.maximum(local, near.mean()) / (np.pi * radius**2 * 2.0 * size_band)


def crosses_the_edge(
    tracks: TrackSet, ends: TrackEnds, track_ids: IntArray, frame_size: tuple[int, int], margin: float = 0.01
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """`(N,)` each: does the track end walking out of the picture, and start walking into it?

    A track whose last box touches the edge (within `margin` of the frame) while it moves
    towards that edge was not lost by the tracker: its person left the view. Whoever starts
    there next is more often somebody else coming in, so such an end is not stitched (a person
    who turns back can still be joined by appearance).
    """
    width, height = frame_size
    pad_x, pad_y = margin * width, margin * height
    rows = np.lexsort((tracks.frame, tracks.track_id))
    first = rows[np.searchsorted(tracks.track_id[rows], track_ids, side="left")]
    last = rows[np.searchsorted(tracks.track_id[rows], track_ids, side="right") - 1]

    def outward(box: FloatArray, velocity: FloatArray) -> npt.NDArray[np.bool_]:
        return (
            ((box[:, 0] <= pad_x) & (velocity[:, 0] < 0))
            | ((box[:, 2] >= width - pad_x) & (velocity[:, 0] > 0))
            | ((box[:, 1] <= pad_y) & (velocity[:, 1] < 0))
            | ((box[:, 3] >= height - pad_y) & (velocity[:, 1] > 0))
        )

    return outward(tracks.xyxy[last], ends.end_velocity), outward(tracks.xyxy[first], -ends.start_velocity)


@dataclass(frozen=True)
class Links:
    """Stitched pairs: `successor[i]` is the index of the track that continues track i, or -1."""

    successor: IntArray

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(int(i), int(j)) for i, j in enumerate(self.successor) if j >= 0]


def stitch(
    ends: TrackEnds,
    error: FloatArray,
    gap_seconds: FloatArray,
    model: HandoverModel,
    clutter: FloatArray,
    max_gap_seconds: float,
    allowed: npt.NDArray[np.bool_],
    min_likelihood_ratio: float,
    appearance: FloatArray | None = None,
) -> Links:
    """One-to-one end-to-start links that motion makes far likelier than chance.

    A link's evidence is the likelihood ratio of its hand-over (position error and size change)
    under "one person", normals whose 95% radii are the video's bounds, against "somebody else
    who happens to be there", the video's clutter density. A long gap is a loose prediction, so
    it needs a closer landing than a short one. Links within both bounds and with a ratio of at
    least `min_likelihood_ratio` are assigned one to one, the most likely first (Hungarian).

    Args:
        ends: where each track starts and ends.
        error, gap_seconds: `(N, N)` from `motion.handover`.
        model: the video's hand-over bounds.
        clutter: `(N,)` `clutter_density` where each track ends.
        max_gap_seconds: longest gap stitched; beyond it motion says too little.
        allowed: `(N, N)` False where a link is ruled out (shared frames, an appearance veto,
            a track that stays alone).
        min_likelihood_ratio: how much likelier than chance a link must be.
        appearance: `(N, N)` log likelihood ratio of appearance, same person against different,
            added to the motion's (the two are independent evidence), or None.

    Returns:
        Each track's successor (or -1).
    """
    n = len(ends.first_frame)
    successor = -np.ones(n, dtype=np.int64)
    evidence = handover_log_likelihood_ratio(ends, error, gap_seconds, model, clutter)
    if appearance is not None:
        evidence = evidence + appearance
    follows = ends.first_frame[None, :] > ends.last_frame[:, None]  # [i, j]: j starts after i ends
    candidate = follows & allowed & (gap_seconds <= max_gap_seconds) & (evidence >= np.log(min_likelihood_ratio))
    if not candidate.any():
        return Links(successor)
    rows = np.flatnonzero(candidate.any(axis=1))
    cols = np.flatnonzero(candidate.any(axis=0))
    cost = np.where(candidate[np.ix_(rows, cols)], -evidence[np.ix_(rows, cols)], 1e6)
    assigned_rows, assigned_cols = linear_sum_assignment(cost)
    for i, j in zip(rows[assigned_rows], cols[assigned_cols]):
        if candidate[i, j]:
            successor[i] = j
    return Links(successor)


def handover_log_likelihood_ratio(
    ends: TrackEnds, error: FloatArray, gap_seconds: FloatArray, model: HandoverModel, clutter: FloatArray
) -> FloatArray:
    """`(N, N)` log likelihood ratio, one person against clutter, of row i continuing as column j;
    -inf outside the bounds."""
    position_bound = model.position.at(gap_seconds)
    size_bound = model.size.at(gap_seconds)
    everyone = np.arange(len(ends.first_frame))
    size = size_change(ends, everyone[:, None], everyone[None, :])
    sigma, size_sigma = position_bound / NORMAL_95[2], size_bound / NORMAL_95[1]
    log_same = -0.5 * (error / sigma) ** 2 - np.log(2.0 * np.pi * sigma**2)
    log_same += -0.5 * (size / size_sigma) ** 2 - np.log(np.sqrt(2.0 * np.pi) * size_sigma)
    inside = (error <= position_bound) & (np.abs(size) <= size_bound)
    return np.where(inside, log_same - np.log(np.maximum(clutter, 1e-9))[:, None], -np.inf)


def chains(successor: IntArray) -> IntArray:
    """`(N,)` chain label of each track (chains numbered by their first track's index).

    >>> chains(np.array([2, -1, -1, 1])).tolist()
    [0, 1, 0, 1]
    """
    n = len(successor)
    has_predecessor = np.zeros(n, dtype=bool)
    has_predecessor[successor[successor >= 0]] = True
    label = -np.ones(n, dtype=np.int64)
    for head in np.flatnonzero(~has_predecessor):
        k = head
        while k >= 0:
            label[k] = head
            k = successor[k]
    _, dense = np.unique(label, return_inverse=True)
    return dense.astype(np.int64)
