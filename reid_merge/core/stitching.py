"""Stitch fragments end to start: the tracker lost somebody, and picked them up again.

A fragment has at most one predecessor and one successor, and over a short gap a person
carries on as they were going. So the fragments of a video are chained by a one-to-one
assignment (Hungarian, as tracklet-linking methods do) between track ends and track starts.
A link's evidence is a likelihood ratio: how well the start matches the end moved on over
the gap (position, in box heights, and size), under "one person" against "somebody else who
happens to be there". On held-out fragments the true successor was the best motion
continuation 94% of the time and the most similar-looking candidate 51%, so motion leads and
appearance is added as evidence of its own (`calibration`). Best is not sure, though: two
companions walking side by side, lost together, land where either could be the other, and
94% is not enough to guess. A link is made only where it beats every other way of linking
those ends and starts by the ratio asked of it.

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
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import bellman_ford, connected_components, dijkstra

from reid_merge.core.motion import TrackEnds, aspect_change, handover, size_change, track_ends, velocity_change
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
        velocity: the change of velocity (`motion.velocity_change`), in box heights per second:
            what tells two people who cross apart where they stand in one place (`crossings`).
        aspect: the change of width over height (`motion.aspect_change`), as a ``|log|``:
            what tells a box around two people from one around either (`crossings`).
    """

    position: Envelope
    size: Envelope
    samples: int
    velocity: Envelope = Envelope(1.0, 0.0)
    aspect: Envelope = Envelope(0.3, 0.0)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "position_slack_heights": self.position.slack,
            "position_heights_per_second": self.position.rate,
            "size_slack_log": self.size.slack,
            "size_log_per_second": self.size.rate,
            "velocity_slack_heights_per_second": self.velocity.slack,
            "velocity_heights_per_second_per_second": self.velocity.rate,
            "aspect_slack_log": self.aspect.slack,
            "aspect_log_per_second": self.aspect.rate,
            "samples": self.samples,
        }


#: Boxes each part of a cut keeps, so that its end velocity is measured, not guessed.
MIN_PART = 5

#: Used when a video has too few long tracks to learn from: the motion gate's bound, a size
#: change of at most 30% (+ 30% per second), a velocity change of a box height per second and a
#: change of width for the height of at most 35% (the last two `HandoverModel`'s defaults).
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
    a different gap (spread up to `max_gap_seconds` or what the track allows; 0: no frame
    dropped, how a track carries on where nothing was lost); both parts keep
    at least `MIN_PART` boxes. Each
    bound is the line through the `quantile` of the cuts in the shorter and the longer half of
    the gaps. With fewer than `min_samples` cuts the video says too little: `FALLBACK_MODEL`.
    """
    max_gap = max(int(round(max_gap_seconds * fps)), 0)
    parts: list[TrackSet] = []
    for index, track_id in enumerate(tracks.track_ids):
        rows = np.flatnonzero(tracks.track_id == track_id)
        rows = rows[np.argsort(tracks.frame[rows], kind="stable")]
        span = int(tracks.frame[rows[-1]] - tracks.frame[rows[0]]) if len(rows) else 0
        room = span - 2 * MIN_PART  # both parts keep MIN_PART frames or more
        if len(rows) < 2 * MIN_PART or room < 1:
            continue
        longest = min(max_gap, room)
        for cut in range(cuts_per_track):
            gap = 1 + (index * cuts_per_track + cut) * 7919 % longest if longest else 0  # spread, deterministic
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
    joined = TrackSet.concat(parts)
    ends = track_ends(joined, joined.track_ids)
    earlier, later = np.arange(0, 2 * len(parts), 2), np.arange(1, 2 * len(parts), 2)
    errors = np.array([stitch_error(ends.subset([a, b]), fps)[0][0, 1] for a, b in zip(earlier, later)])
    size = np.abs(size_change(ends, earlier, later))
    turn = velocity_change(ends, earlier, later, fps)
    aspect = aspect_change(ends, earlier, later)
    seconds = (ends.first_frame[later] - ends.last_frame[earlier]) / fps
    return HandoverModel(
        _quantile_line(errors, seconds, quantile),
        _quantile_line(size, seconds, quantile),
        len(parts),
        _quantile_line(turn, seconds, quantile),
        _quantile_line(aspect, seconds, quantile),
    )


def stitch_error(ends: TrackEnds, fps: float, on_the_line: bool = False) -> tuple[FloatArray, FloatArray]:
    """`motion.handover` as a stitch is judged, and its bounds learnt: on one walk that both ends
    agree on, not on either end alone nor on stopping or turning. Each other way to land gave a
    wrong link one more way to fit and a true one one more rival (docs/quality.md).

    With `on_the_line` (a link, not the bounds: those are what the boxes show), where a track
    ends is read two ways and the hand-over kept from the better: at its last box, and where
    the line its velocity was fitted on puts that box. One box jitters (boxes labelled by hand,
    or seen from a driving car: KITTI-17), a line through ten does not; a turn shows in the
    last box before the line. Either reading alone lost true links somewhere (the line alone
    MOT16-09's), the better of the two none (docs/quality.md).
    """
    error, gap = handover(ends, fps, walk=True)
    if on_the_line:
        error = np.minimum(error, handover(ends.on_the_line(), fps, walk=True)[0])
    return error, gap


def _quantile_line(values: FloatArray, seconds: FloatArray, quantile: float) -> Envelope:
    """The line through the `quantile` of `values` for the shorter and for the longer half of the gaps,
    never below 0.01 where the gaps are: tracks of perfect boxes would otherwise allow one person
    no stray at all."""
    shorter = seconds <= np.median(seconds)
    if shorter.all() or (~shorter).sum() < 5:
        return Envelope(max(float(np.quantile(values, quantile)), 0.01), 0.0)
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


#: How many times the video's 95% hand-over bound two chains' facing ends may lie apart and
#: still be one person to the join by appearance. One person lands beyond the bound 5% of the
#: time on cuts of clean tracks, and a real tracker's break further (an end box distorted by
#: whoever hid the person: BoxMOT ByteTrack's MOT16-09 tracks, a true join at 2.2 times the
#: bound), so the factor is wide; what it rules out is somebody far from where the lost person
#: could be, whom the fixed speed gate (`motion.reachable`) lets through (docs/quality.md).
JOIN_BOUND_FACTOR = 3.0


def beyond_the_handover(
    ends: TrackEnds,
    error: FloatArray,
    gap_seconds: FloatArray,
    model: HandoverModel,
    chain: IntArray,
    max_gap_seconds: float,
    factor: float = JOIN_BOUND_FACTOR,
) -> npt.NDArray[np.bool_]:
    """`(C, C)`: chains too far apart to be one person where motion can still tell.

    Where one chain ends and another starts within `max_gap_seconds`, the later one's first
    box must lie within `factor` times the video's hand-over bound at that gap of where the
    earlier one's last box left off (`error`: `motion.handover`, stopping and turning
    included). Beyond that gap motion says too little, and appearance alone decides.

    Args:
        ends: where each track starts and ends.
        error, gap_seconds: `(N, N)` hand-over error (box heights) and gap (seconds).
        model: the video's hand-over bounds.
        chain: `(N,)` each track's chain, numbered from 0.
        max_gap_seconds: the longest gap motion speaks for.
        factor: how many times the bound.
    """
    num_chains = int(chain.max()) + 1 if len(chain) else 0
    everyone = np.arange(num_chains)
    by_start = np.lexsort((ends.first_frame, chain))
    first = by_start[np.searchsorted(chain[by_start], everyone)]
    by_end = np.lexsort((ends.last_frame, chain))
    last = by_end[np.searchsorted(chain[by_end], everyone, side="right") - 1]
    earlier, later = last[:, None], first[None, :]
    gap = gap_seconds[earlier, later]
    follows = ends.first_frame[later] > ends.last_frame[earlier]
    apart = follows & (gap <= max_gap_seconds) & (error[earlier, later] > factor * model.position.at(gap))
    return apart | apart.T


def crosses_the_edge(
    tracks: TrackSet, ends: TrackEnds, track_ids: IntArray, frame_size: tuple[int, int], margin: float = 0.01
) -> npt.NDArray[np.bool_]:
    """`(N, N)` True where continuing track i as track j would join somebody who walked out of
    the picture to somebody who walked in.

    A track whose last box touches the edge (within `margin` of the frame) while it moves
    towards that edge was not lost by the tracker: its person left the view. Whoever starts
    there next is more often somebody else coming in, so such an end is not stitched (a person
    who turns back can still be joined by appearance), but to a start still walking out there:
    the same person seen again on the way out, not somebody coming in (on oracle fragments of
    MOT16-09, 15 of the 20 true links the edge ruled out). The same the other way round: a
    start walking in is stitched only to an end that was walking in too. Towards means more
    across the edge than along it: somebody near the camera, cut off by the bottom of the
    picture, who walks sideways and drifts down a little as they come closer, has not left (on
    MOT16-09 and KITTI-17 such ends were a tenth of the true links that were ruled out).
    """
    width, height = frame_size
    pad_x, pad_y = margin * width, margin * height
    rows = np.lexsort((tracks.frame, tracks.track_id))
    first = rows[np.searchsorted(tracks.track_id[rows], track_ids, side="left")]
    last = rows[np.searchsorted(tracks.track_id[rows], track_ids, side="right") - 1]

    def outward(box: FloatArray, velocity: FloatArray) -> npt.NDArray[np.bool_]:
        vx, vy = velocity[:, 0], velocity[:, 1]
        across_x, across_y = np.abs(vx) > np.abs(vy), np.abs(vy) > np.abs(vx)
        return (
            ((box[:, 0] <= pad_x) & (vx < 0) & across_x)
            | ((box[:, 2] >= width - pad_x) & (vx > 0) & across_x)
            | ((box[:, 1] <= pad_y) & (vy < 0) & across_y)
            | ((box[:, 3] >= height - pad_y) & (vy > 0) & across_y)
        )

    end_box, start_box = tracks.xyxy[last], tracks.xyxy[first]
    leaves, still_leaving = outward(end_box, ends.end_velocity), outward(start_box, ends.start_velocity)
    enters, was_entering = outward(start_box, -ends.start_velocity), outward(end_box, -ends.end_velocity)
    return (leaves[:, None] & ~still_leaving[None, :]) | (enters[None, :] & ~was_entering[:, None])


@dataclass(frozen=True)
class Links:
    """Stitched pairs: `successor[i]` is the index of the track that continues track i, or -1.

    `ambiguous` counts the links likely enough on their own but left unmade, since another way
    of linking those ends and starts was nearly as likely.
    """

    successor: IntArray
    ambiguous: int = 0

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(int(i), int(j)) for i, j in enumerate(self.successor) if j >= 0]


def link_weights(
    ends: TrackEnds,
    error: FloatArray,
    gap_seconds: FloatArray,
    model: HandoverModel,
    clutter: FloatArray,
    max_gap_seconds: float,
    allowed: npt.NDArray[np.bool_],
    appearance: FloatArray | None = None,
) -> FloatArray:
    """`(N, N)` evidence that track i is continued by track j, for `stitch`.

    A link's evidence is the log likelihood ratio of its hand-over (position error and size
    change) under "one person", normals whose 95% radii are the video's bounds, against
    "somebody else who happens to be there", the video's clutter density. A long gap is a
    loose prediction, so it needs a closer landing than a short one. Every link possible and
    likelier than chance keeps its evidence, whether or not it could be made itself: it is an
    alternative to the others. The rest are 0.

    Args:
        ends: where each track starts and ends.
        error, gap_seconds: `(N, N)` from `motion.handover`.
        model: the video's hand-over bounds.
        clutter: `(N,)` `clutter_density` where each track ends.
        max_gap_seconds: longest gap stitched; beyond it motion says too little.
        allowed: `(N, N)` False where a link is ruled out (shared frames, an appearance veto,
            a track that stays alone).
        appearance: `(N, N)` log likelihood ratio of appearance, same person against different,
            added to the motion's (the two are independent evidence), or None.
    """
    evidence = handover_log_likelihood_ratio(ends, error, gap_seconds, model, clutter)
    if appearance is not None:
        evidence = evidence + appearance
    follows = ends.first_frame[None, :] > ends.last_frame[:, None]  # [i, j]: j starts after i ends
    return np.where(follows & allowed & (gap_seconds <= max_gap_seconds) & (evidence > 0.0), evidence, 0.0)


def stitch(weight: FloatArray, min_margin: float | FloatArray) -> Links:
    """One-to-one end-to-start links: those of the most likely matching (Hungarian) that it
    beats, by at least `min_margin` (one for all, or `(N, N)`, one per link), every matching
    without that link: nobody there, and any other way of linking those ends and starts, such as
    two companions walking side by side swapped.

    `weight[i, j]` is the log likelihood ratio of row i continuing as column j against neither
    being linked (0: not a possible link). The margin of a link is what the best matching loses
    when it is forbidden: the two sides left alone, or taken by their next best partners, a
    swap of two companions included. A link only as likely as its alternatives is not made,
    however likely it is against chance.

    Tracks 0 and 1 end, 2 and 3 start; the swap (0 -> 3, 1 -> 2) is far less likely, or nearly
    as likely:

    >>> clear = np.zeros((4, 4)); clear[0, 2] = clear[1, 3] = 9.0; clear[0, 3] = clear[1, 2] = 2.0
    >>> stitch(clear, 5.0).pairs
    [(0, 2), (1, 3)]
    >>> companions = np.zeros((4, 4)); companions[0, 2] = companions[1, 3] = 9.0
    >>> companions[0, 3] = companions[1, 2] = 8.0
    >>> links = stitch(companions, 5.0)
    >>> links.pairs, links.ambiguous
    ([], 2)
    """
    successor = -np.ones(weight.shape[0], dtype=np.int64)
    margin = np.broadcast_to(np.asarray(min_margin, dtype=np.float64), weight.shape)
    rows, cols = np.nonzero(weight > 0.0)
    if len(rows) == 0:
        return Links(successor)
    # Links compete only within a connected group of ends and starts: solve each on its own.
    n_rows = weight.shape[0]
    graph = sparse.coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(2 * n_rows, 2 * n_rows))
    _, component = connected_components(graph, directed=False)
    groups = []
    best_successor = -np.ones(n_rows, dtype=np.int64)
    for label in np.unique(component[rows]):
        r = np.unique(rows[component[rows] == label])
        c = np.unique(cols[component[n_rows + cols] == label])
        block = weight[np.ix_(r, c)]
        pairs = _best_matching(block)
        for a, b in pairs:
            best_successor[r[a]] = c[b]
        groups.append((r, c, block, pairs))
    chain = chain_positions(best_successor)
    ambiguous = 0
    for r, c, block, pairs in groups:
        detours = _Detours(block, pairs)
        row_chain, col_chain = chain[r], chain[c]
        for a, b in pairs:
            # Alternatives that jump from this link's chain before it to its chain after it are
            # the same person linked otherwise, not a rival: they do not count against it.
            head, position = row_chain[a]
            before = (row_chain[:, 0] == head) & (row_chain[:, 1] <= position)
            after = (col_chain[:, 0] == head) & (col_chain[:, 1] > position)
            needed = margin[r[a], c[b]]
            if block[a, b] + detours.cheapest(a, b, before, after) >= needed:
                successor[r[a]] = c[b]
            elif block[a, b] >= needed:
                ambiguous += 1
    return Links(successor, ambiguous)


class _Detours:
    """What the best matching of `block` loses, at least, when one of its links is forbidden.

    Forbidding link (a, b) leaves end a and start b free; the best matching without it is the
    best matching with a detour from a to b: a takes another start, whose end takes another,
    and so on until somebody takes b, or a and b simply stay free. In the residual graph of the
    matching (taking a start costs its weight, giving one back earns it) that is the cheapest
    path from a to b, found by Dijkstra on costs made non-negative once by Bellman-Ford
    potentials (an optimal matching leaves no negative cycle), so each link costs one shortest
    path, not one more assignment. A hub node stands for being unmatched: any end may let its
    start go and any free end may step in, at no cost.
    """

    def __init__(self, block: FloatArray, pairs: list[tuple[int, int]]) -> None:
        n_rows, n_cols = block.shape
        self.n_rows, hub = n_rows, n_rows + n_cols
        col_of, row_of = -np.ones(n_rows, dtype=np.int64), -np.ones(n_cols, dtype=np.int64)
        for a, b in pairs:
            col_of[a], row_of[b] = b, a
        rows, cols = np.nonzero(block > 0.0)
        unmatched = col_of[rows] != cols
        self.rows, self.cols = rows[unmatched], cols[unmatched]  # links the matching did not make
        matched = np.flatnonzero(col_of >= 0)
        free_rows, free_cols = np.flatnonzero(col_of < 0), np.flatnonzero(row_of < 0)
        edges = [
            (self.rows, n_rows + self.cols, -block[self.rows, self.cols]),  # an end takes a start
            # its end lets it go (a hair dearer, so that a matching optimal only to rounding
            # leaves no negative cycle for Bellman-Ford to refuse)
            (n_rows + col_of[matched], matched, block[matched, col_of[matched]] + 1e-9),
            (matched, np.full(len(matched), hub), np.zeros(len(matched))),  # an end stays alone
            (n_rows + free_cols, np.full(len(free_cols), hub), np.zeros(len(free_cols))),  # a free start taken
            (np.full(len(matched), hub), n_rows + col_of[matched], np.zeros(len(matched))),  # a start left alone
            (np.full(len(free_rows), hub), free_rows, np.zeros(len(free_rows))),  # a free end steps in
        ]
        self.tail, self.head, cost = (np.concatenate(part) for part in zip(*edges))
        self.nodes = hub + 1
        source = self.nodes  # joined to every node at no cost, for the potentials
        graph = sparse.csr_matrix(
            (
                np.concatenate([cost, np.zeros(self.nodes)]),
                (
                    np.concatenate([self.tail, np.full(self.nodes, source)]),
                    np.concatenate([self.head, np.arange(self.nodes)]),
                ),
            ),
            shape=(self.nodes + 1, self.nodes + 1),
        )
        self.potential = bellman_ford(graph, indices=source)[: self.nodes]
        self.reduced = np.maximum(cost + self.potential[self.tail] - self.potential[self.head], 0.0)

    def cheapest(self, a: int, b: int, rows: npt.NDArray[np.bool_], cols: npt.NDArray[np.bool_]) -> float:
        """Cost of the cheapest detour from end a to start b (at most 0: a and b may stay free),
        with the links from the ends in `rows` to the starts in `cols` ruled out."""
        keep = np.ones(len(self.tail), dtype=bool)
        keep[: len(self.rows)] = ~(rows[self.rows] & cols[self.cols])
        graph = sparse.csr_matrix((self.reduced[keep], (self.tail[keep], self.head[keep])), shape=(self.nodes,) * 2)
        target = self.n_rows + b
        return float(dijkstra(graph, indices=a)[target] - self.potential[a] + self.potential[target])


def chain_positions(successor: IntArray) -> IntArray:
    """`(N, 2)`: the first track of each track's chain, and its place in that chain.

    >>> chain_positions(np.array([2, -1, -1, 1])).tolist()
    [[0, 0], [3, 1], [0, 1], [3, 0]]
    """
    n = len(successor)
    has_predecessor = np.zeros(n, dtype=bool)
    has_predecessor[successor[successor >= 0]] = True
    out = np.zeros((n, 2), dtype=np.int64)
    for head in np.flatnonzero(~has_predecessor):
        k, place = head, 0
        while k >= 0:
            out[k] = (head, place)
            k, place = successor[k], place + 1
    return out


def _best_matching(weight: FloatArray) -> list[tuple[int, int]]:
    """The pairs of the heaviest matching over the positive entries of `weight`."""
    a, b = linear_sum_assignment(weight, maximize=True)
    return [(int(i), int(j)) for i, j in zip(a, b) if weight[i, j] > 0.0]


def handover_log_likelihood_ratio(
    ends: TrackEnds, error: FloatArray, gap_seconds: FloatArray, model: HandoverModel, clutter: FloatArray
) -> FloatArray:
    """`(N, N)` log likelihood ratio, one person against clutter, of row i continuing as column j;
    -inf outside the bounds."""
    everyone = np.arange(len(ends.first_frame))
    size = size_change(ends, everyone[:, None], everyone[None, :])
    log_same = one_person_log_density(error, size, gap_seconds, model)
    inside = within_bounds(error, size, gap_seconds, model)
    return np.where(inside, log_same - np.log(np.maximum(clutter, 1e-9))[:, None], -np.inf)


def one_person_log_density(
    error: FloatArray,
    size: FloatArray,
    gap_seconds: FloatArray,
    model: HandoverModel,
    turn: FloatArray | None = None,
    aspect: FloatArray | None = None,
) -> FloatArray:
    """Log density of a hand-over (position error, in box heights; size change; and, given, the
    change of velocity and of width over height) under "one person": normals whose 95% radii
    are the video's bounds at that gap, with no wall."""
    log_same = _log_normal(error, model.position.at(gap_seconds), 2) + _log_normal(size, model.size.at(gap_seconds), 1)
    if turn is not None:
        log_same = log_same + _log_normal(turn, model.velocity.at(gap_seconds), 2)
    if aspect is not None:
        log_same = log_same + _log_normal(aspect, model.aspect.at(gap_seconds), 1)
    return log_same


def within_bounds(
    error: FloatArray, size: FloatArray, gap_seconds: FloatArray, model: HandoverModel, turn: FloatArray | None = None
) -> npt.NDArray[np.bool_]:
    """Whether a hand-over lies inside the video's 95% bounds at that gap (the change of velocity
    too, where given)."""
    inside = (error <= model.position.at(gap_seconds)) & (np.abs(size) <= model.size.at(gap_seconds))
    return inside if turn is None else inside & (turn <= model.velocity.at(gap_seconds))


def _log_normal(value: FloatArray, bound: FloatArray, dims: int) -> FloatArray:
    """Log density of the length `value` of a `dims`-dimensional centred normal whose 95% radius
    is `bound` (per unit area or length: 2 dimensions or 1)."""
    sigma = bound / NORMAL_95[dims]
    return -0.5 * (value / sigma) ** 2 - dims / 2.0 * np.log(2.0 * np.pi * sigma**2)


def chains(successor: IntArray) -> IntArray:
    """`(N,)` chain label of each track (chains numbered by their first track's index).

    >>> chains(np.array([2, -1, -1, 1])).tolist()
    [0, 1, 0, 1]
    """
    _, dense = np.unique(chain_positions(successor)[:, 0], return_inverse=True)
    return dense.astype(np.int64)
