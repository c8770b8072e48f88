"""Which track could continue which: position and velocity extrapolated over the gap.

Appearance alone glues look-alikes together. A person who vanishes at the left edge cannot
reappear a moment later at the right, so before appearance is asked, each pair of tracks is
checked for a plausible hand-over: the end of the earlier track, moved on at its velocity
over the gap, must land near the start of the later one (or the later one, moved back,
near the end of the earlier one). A stitch asks more: one walk that both ends agree on
(`handover` with `walk`). Distances are measured in box heights, so the rule does
not depend on the image size or how far people are from the camera, and gaps in seconds,
so it does not depend on the frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from reid_merge.core.tracks import TrackSet

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrackEnds:
    """Where and how each track starts and ends.

    Attributes:
        first_frame, last_frame: `(N,)` frames of the first and last detection.
        start_xy, end_xy: `(N, 2)` box centres at the first and last detection.
        start_velocity, end_velocity: `(N, 2)` centre velocity in px/frame near each end.
        height: `(N,)` median box height, the track's unit of distance.
        start_height, end_height: `(N,)` median box height near each end (a person's size
            changes little over a short gap, a different person's often does).
        start_growth, end_growth: `(N,)` change of log box height per frame near each end: a
            person walking towards a camera, or a camera driving towards them, grows steadily.
        fitted_boxes: `(N,)` how many boxes the velocity and growth near either end were fitted
            on, the track's boxes up to the window (one box: no velocity measured).
        start_line_xy, end_line_xy: `(N, 2)` the first and last centre read off the line the
            velocity near that end was fitted on: where the walk puts it, without the jitter
            of one box.
        start_aspect, end_aspect: `(N,)` median width over height near each end: what a growth
            in size leaves alone, and what a box around two people, or a swap onto somebody
            broader, changes.
    """

    first_frame: npt.NDArray[np.int64]
    last_frame: npt.NDArray[np.int64]
    start_xy: FloatArray
    end_xy: FloatArray
    start_velocity: FloatArray
    end_velocity: FloatArray
    height: FloatArray
    start_height: FloatArray
    end_height: FloatArray
    start_growth: FloatArray
    end_growth: FloatArray
    fitted_boxes: npt.NDArray[np.int64]
    start_line_xy: FloatArray
    end_line_xy: FloatArray
    start_aspect: FloatArray
    end_aspect: FloatArray

    def subset(self, index: npt.ArrayLike) -> TrackEnds:
        """The ends of the tracks at `index`, in that order."""
        rows = np.asarray(index, dtype=np.int64)
        return TrackEnds(*(getattr(self, f.name)[rows] for f in fields(self)))

    def on_the_line(self) -> TrackEnds:
        """The same ends with the first and last centres read off each end's fitted line."""
        return replace(self, start_xy=self.start_line_xy, end_xy=self.end_line_xy)


def track_ends(tracks: TrackSet, track_ids: npt.NDArray[np.int64], window: int = 10) -> TrackEnds:
    """Measure the ends of every track; velocities are least-squares fits over `window` boxes."""
    n = len(track_ids)
    first = np.zeros(n, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    start_xy, end_xy = np.zeros((n, 2)), np.zeros((n, 2))
    start_v, end_v = np.zeros((n, 2)), np.zeros((n, 2))
    height, start_height, end_height = np.ones(n), np.ones(n), np.ones(n)
    start_growth, end_growth = np.zeros(n), np.zeros(n)
    start_line_xy, end_line_xy = np.zeros((n, 2)), np.zeros((n, 2))
    start_aspect, end_aspect = np.ones(n), np.ones(n)
    centres = (tracks.xyxy[:, :2] + tracks.xyxy[:, 2:]) / 2.0
    heights = tracks.xyxy[:, 3] - tracks.xyxy[:, 1]
    log_heights = np.log(np.maximum(heights, 1.0))[:, None]
    aspects = np.maximum(tracks.xyxy[:, 2] - tracks.xyxy[:, 0], 1.0) / np.maximum(heights, 1.0)
    order = np.lexsort((tracks.frame, tracks.track_id))
    sorted_ids = tracks.track_id[order]
    bounds = np.searchsorted(sorted_ids, track_ids), np.searchsorted(sorted_ids, track_ids, side="right")
    for k, (lo, hi) in enumerate(zip(*bounds)):
        rows = order[lo:hi]
        frames = tracks.frame[rows]
        first[k], last[k] = frames[0], frames[-1]
        start_xy[k], end_xy[k] = centres[rows[0]], centres[rows[-1]]
        start_v[k] = _velocity(frames[:window], centres[rows[:window]])
        end_v[k] = _velocity(frames[-window:], centres[rows[-window:]])
        start_line_xy[k] = _on_line(frames[:window], centres[rows[:window]], start_v[k], frames[0])
        end_line_xy[k] = _on_line(frames[-window:], centres[rows[-window:]], end_v[k], frames[-1])
        height[k] = max(float(np.median(heights[rows])), 1.0)
        start_height[k] = max(float(np.median(heights[rows[:window]])), 1.0)
        end_height[k] = max(float(np.median(heights[rows[-window:]])), 1.0)
        start_growth[k] = _velocity(frames[:window], log_heights[rows[:window]])[0]
        end_growth[k] = _velocity(frames[-window:], log_heights[rows[-window:]])[0]
        start_aspect[k] = float(np.median(aspects[rows[:window]]))
        end_aspect[k] = float(np.median(aspects[rows[-window:]]))
    return TrackEnds(
        first,
        last,
        start_xy,
        end_xy,
        start_v,
        end_v,
        height,
        start_height,
        end_height,
        start_growth,
        end_growth,
        np.minimum(bounds[1] - bounds[0], window).astype(np.int64),
        start_line_xy,
        end_line_xy,
        start_aspect,
        end_aspect,
    )


def _velocity(frames: npt.NDArray[np.int64], xy: FloatArray) -> FloatArray:
    if len(frames) < 2 or frames[-1] == frames[0]:
        return np.zeros(xy.shape[1])
    t = frames - frames.mean()
    return (t[:, None] * (xy - xy.mean(axis=0))).sum(axis=0) / (t * t).sum()


def _on_line(frames: npt.NDArray[np.int64], xy: FloatArray, velocity: FloatArray, frame: int) -> FloatArray:
    """The least-squares line through `xy` with slope `velocity` (`_velocity`'s), at `frame`."""
    return np.asarray(xy.mean(axis=0) + velocity * (frame - frames.mean()), dtype=np.float64)


def handover(
    ends: TrackEnds, fps: float, walk: bool = False, rows_per_chunk: int = 1024
) -> tuple[FloatArray, FloatArray]:
    """Hand-over error (box heights) and gap (seconds) between every two tracks, both `(N, N)`.

    For tracks A (the one ending first) and B with a gap of `g` frames, the error is the
    smallest of ``|end_A + v_A g - start_B|`` (A walked on), ``|start_B - v_B g - end_A|``
    (B walked in) and ``|start_B - end_A|`` (stopped or turned), over their mean height:
    whether anybody could have got there at all.

    With `walk` it is ``|start_B - end_A - v g|`` for the one velocity both ends agree on: v_A
    and v_B weighted by the boxes each was fitted on (less one: a single box measures none).
    That is how a stitch is judged. Either end alone let a person who walked left continue as
    one who starts walking right from the same place, and gave a wrong link one more way to
    fit; measured, both ends together lifted every sequence's oracle F1 (docs/quality.md).

    Tracks whose spans overlap get a gap of 0 and are judged at the near ends. Computed in
    chunks of rows so that memory stays a few `(N, N)` arrays however many tracks there are.
    """
    n = len(ends.first_frame)
    error = np.empty((n, n))
    gap = np.empty((n, n))
    for lo in range(0, n, rows_per_chunk):
        hi = min(n, lo + rows_per_chunk)
        error[lo:hi], gap[lo:hi] = _handover_rows(ends, slice(lo, hi), walk)
    # Tracks ending in the same frame are judged both ways: keep the worse.
    np.maximum(error, error.T, out=error)
    return error, gap / max(fps, 1e-6)


def _handover_rows(ends: TrackEnds, rows: slice, walk: bool) -> tuple[FloatArray, FloatArray]:
    """Rows `rows` of the hand-over error and of the gap in frames."""
    first, last = ends.first_frame, ends.last_frame
    a_is_row = last[rows, None] <= last[None, :]  # the row's track ends first

    def earlier(values: npt.NDArray) -> npt.NDArray:  # of A, the track ending first
        return np.where(a_is_row, values[rows, None], values[None, :])

    def later(values: npt.NDArray) -> npt.NDArray:  # of B
        return np.where(a_is_row, values[None, :], values[rows, None])

    gap = np.maximum(later(first) - earlier(last), 0).astype(np.float64)
    # Per coordinate: how far B starts from where A ended, A's velocity there, B's at its start.
    moves = [
        (
            later(ends.start_xy[:, c]) - earlier(ends.end_xy[:, c]),
            earlier(ends.end_velocity[:, c]),
            later(ends.start_velocity[:, c]),
        )
        for c in range(2)
    ]
    if walk:
        fitted_a = np.maximum(earlier(ends.fitted_boxes) - 1, 0).astype(np.float64)
        fitted_b = np.maximum(later(ends.fitted_boxes) - 1, 0).astype(np.float64)
        weight_a = np.divide(fitted_a, fitted_a + fitted_b, out=np.full(gap.shape, 0.5), where=fitted_a + fitted_b > 0)
        squared = sum((static - (weight_a * v_a + (1.0 - weight_a) * v_b) * gap) ** 2 for static, v_a, v_b in moves)
    else:
        walked_on = sum((static - v_a * gap) ** 2 for static, v_a, _ in moves)
        walked_in = sum((static - v_b * gap) ** 2 for static, _, v_b in moves)
        stood_still = sum(static**2 for static, _, _ in moves)
        squared = np.minimum(np.minimum(walked_on, walked_in), stood_still)
    error = np.sqrt(squared)
    error /= (ends.height[rows, None] + ends.height[None, :]) / 2.0
    return error, gap


def size_change(ends: TrackEnds, earlier: npt.ArrayLike, later: npt.ArrayLike) -> FloatArray:
    """Log of how much larger track `later` starts than track `earlier` ends, beyond its growth.

    As `handover` for the centre: the smallest in size of the change against the earlier
    track's height grown on at its rate over the frames between the two tracks, against the
    later one's grown back, and against no growth. The heights are medians over the boxes at
    each end, and are grown over the unseen frames only, not from the middle of those boxes: a
    growth fitted on a few boxes is noisy, and carried the longer way it joined more companions
    walking side by side (docs/quality.md).

    Args:
        ends: where each track starts and ends.
        earlier, later: track indices, broadcast together: index arrays for pairs, or a column
            and a row for every pair (`[i, j]`: j continuing i).
    """
    i, j = np.asarray(earlier), np.asarray(later)
    gap = np.maximum(ends.first_frame[j] - ends.last_frame[i], 0).astype(np.float64)
    change = np.log(ends.start_height[j] / ends.end_height[i])
    options = np.stack([change, change - ends.end_growth[i] * gap, change - ends.start_growth[j] * gap])
    return np.take_along_axis(options, np.abs(options).argmin(axis=0)[None], axis=0)[0]


def aspect_change(ends: TrackEnds, earlier: npt.ArrayLike, later: npt.ArrayLike) -> FloatArray:
    """``|log|`` of how much broader for its height track `later` starts than track `earlier`
    ends. Arguments as `size_change`."""
    i, j = np.asarray(earlier), np.asarray(later)
    return np.asarray(np.abs(np.log(ends.start_aspect[j] / ends.end_aspect[i])), dtype=np.float64)


def velocity_change(ends: TrackEnds, earlier: npt.ArrayLike, later: npt.ArrayLike, fps: float) -> FloatArray:
    """How much track `later` starts walking otherwise than track `earlier` ended: the length of
    the difference of their velocities, in box heights (the two tracks' mean) per second; 0
    where either was seen in one box only (no velocity measured). Arguments as `size_change`."""
    i, j = np.asarray(earlier), np.asarray(later)
    change = np.linalg.norm(ends.start_velocity[j] - ends.end_velocity[i], axis=-1)
    measured = (ends.fitted_boxes[i] > 1) & (ends.fitted_boxes[j] > 1)
    return np.where(measured, change * fps / ((ends.height[i] + ends.height[j]) / 2.0), 0.0)


def reachable(
    error: FloatArray, gap_seconds: FloatArray, slack_heights: float = 0.5, heights_per_second: float = 1.0
) -> npt.NDArray[np.bool_]:
    """`(N, N)`: could one track be the other's continuation at a plausible speed?

    The hand-over error may be at most ``slack_heights + heights_per_second * gap``: a pair
    close in time but far apart cannot be one person, while after a long gap anyone may be
    anywhere and appearance alone decides. Being a bound on speed it holds for any two
    tracks of one person, not only consecutive ones.

    >>> starts, ends = np.array([[0., 0], [62, 0], [600, 0]]), np.array([[38., 0], [100, 0], [640, 0]])
    >>> e = TrackEnds(np.array([1, 30, 30]), np.array([20, 50, 50]), starts, ends,
    ...     np.full((3, 2), [2., 0]), np.full((3, 2), [2., 0]), *np.full((3, 3), 100.), *np.zeros((2, 3)),
    ...     np.full(3, 10), starts, ends, np.full(3, 0.4), np.full(3, 0.4))
    >>> reachable(*handover(e, fps=25)).astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    """
    ok = error <= slack_heights + heights_per_second * gap_seconds
    np.fill_diagonal(ok, True)
    return ok
