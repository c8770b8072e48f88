"""Cut impure tracks: one track ID that the tracker moved from one person to another.

A merge can only join tracks, so a track that holds two people drags one of them into the
wrong person. A tracker hands an ID to somebody else only where two people come close, so
the candidates are the stretches where the track passed within a box width of another track
(an encounter); inside one, the cut goes where the box jumps most (a swap moves the box), or
where the tracker picked the track up again after losing it there.
Whether to cut is appearance's call, judged against what this video shows. At a candidate the
crops before and after are compared: how much less alike the two sides are to each other than
each is to itself (the split margin). The same margin at every place of every track where it
met nobody (one person on both sides) shows what one person scores; the margin between tracks
that share a frame shows what two people score. A cut is made only where, over all the video's
candidates at once, the estimated share of cuts through one person stays at most the target
rate (the merge's false-discovery rule, mirrored) and the margin is likelier for two people
than for one. Even then the cut is made only where the later side looks like a person the track met
there (as that person looked before): more than like its own earlier side, and as much as
one person looks like themselves across a place of a track rather than as two people who
share a frame look alike. A swap hands the ID to somebody it met, while a change of light,
of background or of who walks in front changes the look of one person into nobody's in
particular (docs/quality.md: on MOT16-09 with OSNet this took clean tracks cut by mistake
from 6% to 1%). The two sides are then never joined again; otherwise they go through the
merge like any other fragment.
A cut that passes only at a looser rate is tentative: the merge may join its two sides again,
and it stands only where the merge joins the later side to somebody else
(`undo_unclaimed_cuts`). A swap hands the later side to a person seen elsewhere in the video,
while a look that changed leaves it nobody's; the merge, which sees every track, tells them
apart where one comparison at the place cannot (docs/quality.md, "Tentative cuts").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import false_discovery_control

from reid_merge.core.adaptation import fit_within_track_whitening
from reid_merge.core.calibration import ScoreModel
from reid_merge.core.encounters import (
    MIN_CROPS_EACH_SIDE,
    close_pairs,
    encounter_frames,
    near_another,
    near_runs,
)
from reid_merge.core.similarity import track_similarity
from reid_merge.core.tracks import TrackSet, cooccurrence

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Most cuts one track may get: after each round of cuts the parts are examined again.
MAX_ROUNDS = 4


@dataclass(frozen=True)
class Split:
    """Track `track_id` becomes `new_track_id` from frame `frame` on.

    `by` is what found it: "appearance" (here), where `margin` is how far the two sides' split
    margin (`split_sides`) lies above what one person shows in this video, in spreads of that;
    or "motion" (`crossings`), where it is the log odds of the tracks having crossed. Larger:
    surer. `tentative`: made at the looser rate only, so its two sides are not kept apart and
    the cut stands only where the merge joins the later side to somebody (`undo_unclaimed_cuts`).
    """

    track_id: int
    new_track_id: int
    frame: int
    margin: float
    by: str = "appearance"
    tentative: bool = False


def within_similarity(features: FloatArray) -> float:
    """Mean similarity of distinct crops of one group; NaN for fewer than two."""
    k = len(features)
    return float(((features @ features.T).sum() - np.trace(features @ features.T)) / (k * (k - 1))) if k > 1 else np.nan


def split_sides(features: FloatArray, crop_frame: IntArray, cut: int) -> tuple[float, float]:
    """`(margin, across)` of dividing the crops at frame `cut`. `across` is the mean similarity of
    the crops before it to those from it on; the split margin is how much less alike that is
    than each side is to itself (mean within-side similarity minus `across`): measured against
    each track's own consistency, so a person who looks alike from every side and one who does
    not score on one scale. NaNs when either side has fewer than MIN_CROPS_EACH_SIDE crops.

    >>> f = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    >>> split_sides(f, np.arange(6), 3), split_sides(f, np.arange(6), 2)
    ((1.0, 0.0), (nan, nan))
    """
    before, after = crop_frame < cut, crop_frame >= cut
    if before.sum() < MIN_CROPS_EACH_SIDE or after.sum() < MIN_CROPS_EACH_SIDE:
        return float("nan"), float("nan")
    within = (within_similarity(features[before]) + within_similarity(features[after])) / 2.0
    across = float(np.mean(features[before] @ features[after].T))
    return within - across, across


def two_people(
    features: FloatArray, owner: IntArray, num_tracks: int, shared_frame: npt.NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray]:
    """`(margins, across)` that a split would show if its two sides were two people: for each
    pair of tracks that share a frame, their mean similarity to each other, and the mean of their
    within-track similarities minus that."""
    within = np.array([within_similarity(features[owner == i]) for i in range(num_tracks)])
    across = track_similarity(features, owner, num_tracks, "mean")
    margins = (within[:, None] + within[None, :]) / 2.0 - across
    pairs = np.triu(shared_frame, k=1)
    return margins[pairs], across[pairs]


@dataclass(frozen=True)
class _Place:
    """One place of one part of a track where its crops are divided in two."""

    track_id: int
    frame: int
    margin: float


def picked_up_near(track: TrackSet, near: npt.NDArray[np.bool_]) -> IntArray:
    """The frames where a track was picked up again, after the tracker lost its person for a frame
    or more, next to somebody: its box there or its last box before the loss near another track's.

    A tracker hands an ID on where it picks a lost person up about as often as anywhere else in
    an encounter: of the real switches in our tracker's raw tracks of the four dev sequences, 16
    of 41 came within 5 frames of a loss, and the encounters' places (one each, where the box
    jumped most) lay within 5 frames of 16 of the 41; with the pick-ups, 22 (docs/quality.md).

    Args:
        track: the detections of one track, sorted by frame.
        near: `(n,)` its boxes that were near another track's.

    >>> t = TrackSet.from_arrays([1, 2, 5, 6, 9], [1] * 5, [[0, 0, 10, 30]] * 5, [1.0] * 5)
    >>> picked_up_near(t, np.array([False, True, False, False, False])).tolist()
    [5]
    """
    after = np.flatnonzero(np.diff(track.frame) > 1) + 1
    return track.frame[after[near[after] | near[after - 1]]].astype(np.int64)


def _places(
    part_id: int, part: TrackSet, near: npt.NDArray[np.bool_], features: FloatArray, crop_frame: IntArray
) -> tuple[list[_Place], list[tuple[float, float]]]:
    """The candidate places of one part of a track, and `split_sides` at every place between two
    of its crops (one person on both sides, unless the part is impure).

    The places are each encounter's (`encounter_frames`), then every pick-up next to somebody
    (`picked_up_near`). Two places with the same crops on each side have the same margin, and
    the first one listed is taken: where the crops cannot tell them apart, the box's jump does
    (with the places in frame order instead, OSNet found 0.73 of MOT16-09's judgeable synthetic
    swaps rather than 0.81).
    """
    jumps = encounter_frames(part, near)
    places = np.concatenate([jumps, np.setdiff1d(picked_up_near(part, near), jumps)])
    candidates = [_Place(part_id, int(cut), split_sides(features, crop_frame, int(cut))[0]) for cut in places]
    references = [split_sides(features, crop_frame, int(cut)) for cut in np.unique(crop_frame)[1:]]
    return [c for c in candidates if np.isfinite(c.margin)], [r for r in references if np.isfinite(r[0])]


def _met(
    place: _Place,
    frame_of: IntArray,
    near: npt.NDArray[np.bool_],
    part_of: IntArray,
    close: tuple[IntArray, IntArray, IntArray],
) -> set[int]:
    """The parts whose boxes came close to this part's in the encounter the place lies in: the
    run of near boxes whose cut (`encounter_frames`) is the place, a row of the run or the
    first row after it.

    Args:
        place: a candidate place of one part.
        frame_of: `(n,)` frame of every detection.
        near: `(n,)` the detections near another track's box.
        part_of: `(n,)` the part each detection belongs to now.
        close: `close_pairs` of the detections.
    """
    rows = np.flatnonzero(part_of == place.track_id)
    rows = rows[np.argsort(frame_of[rows], kind="stable")]
    at = int(np.searchsorted(frame_of[rows], place.frame))
    starts, ends = near_runs(near[rows])
    run = np.flatnonzero((starts <= at) & (at <= ends))
    if len(run) == 0:
        return set()
    encounter = rows[starts[run[0]] : ends[run[0]]]
    _, first, second = close
    involved = np.isin(first, encounter) | np.isin(second, encounter)
    others = np.where(np.isin(first[involved], encounter), second[involved], first[involved])
    return {int(p) for p in part_of[others] if int(p) != place.track_id}


def _took_over(
    place: _Place,
    met: set[int],
    unit: FloatArray,
    crop_part: IntArray,
    crop_frame: IntArray,
    one_person: ScoreModel,
    two_persons: ScoreModel,
) -> bool:
    """Whether the later side looks like somebody met at the place (as they were before it):
    more than like the earlier side, and with a similarity likelier for one person across a
    place (`one_person`) than for two people who share a frame (`two_persons`). What a swap
    does, and a change of light, of background or of who walks in front does not. False when
    nobody met there has enough crops before it to tell."""
    mine = crop_part == place.track_id
    after = unit[mine & (crop_frame >= place.frame)]
    stays = float(np.mean(after @ unit[mine & (crop_frame < place.frame)].T))
    for other in met:
        theirs = unit[(crop_part == other) & (crop_frame < place.frame)]
        if len(theirs) < MIN_CROPS_EACH_SIDE:
            continue
        alike = np.array(np.mean(after @ theirs.T))
        if alike > stays and one_person.log_density(alike) > two_persons.log_density(alike):
            return True
    return False


def find_impure_tracks(
    tracks: TrackSet,
    features: npt.NDArray[np.floating],
    crop_track: IntArray,
    crop_frame: IntArray,
    false_rate: float,
    adapt: tuple[int, float] | None = None,
    tentative_rate: float = 0.0,
) -> list[Split]:
    """Where tracks hold two people, cut where it is confident (see the module docstring).

    Args:
        tracks: the raw detections.
        features: `(M, D)` L2-normalised crop features.
        crop_track: `(M,)` track of each crop.
        crop_frame: `(M,)` frame of each crop.
        false_rate: the target share of cuts through one person.
        tentative_rate: the same, looser, for the tentative cuts (`Split.tentative`); at most
            `false_rate`: none.
        adapt: `(dims, regularization)` of the per-video whitening (`adaptation`), fitted here on
            the stretches of tracks between encounters: a whitening fitted on whole tracks learns
            the difference between the two people of an impure track as nuisance, and hides it.

    Returns:
        The cuts in the order made; a later cut may cut a part an earlier one made.
    """
    unit: FloatArray = np.asarray(features, dtype=np.float64)
    splits: list[Split] = []
    if len(tracks) == 0:
        return splits
    track_ids = tracks.track_ids
    close = close_pairs(tracks)
    near = near_another(tracks, close)
    owner = np.searchsorted(track_ids, crop_track)
    if adapt is not None:
        whitening = fit_within_track_whitening(unit, _stretches(tracks, near, crop_track, crop_frame), *adapt)
        unit = np.asarray(whitening.project(unit), dtype=np.float64) if whitening is not None else unit
    margins_apart, across_apart = two_people(unit, owner, len(track_ids), cooccurrence(tracks, track_ids))
    different, two_persons = ScoreModel.fit(margins_apart), ScoreModel.fit(across_apart)
    if different is None or two_persons is None:
        return splits
    part_of, crop_part = tracks.track_id.copy(), crop_track.copy()
    next_id = int(track_ids.max()) + 1
    for _ in range(MAX_ROUNDS):
        candidates: list[_Place] = []
        references: list[tuple[float, float]] = []
        for part_id in np.unique(part_of):
            rows = np.flatnonzero(part_of == part_id)
            rows = rows[np.argsort(tracks.frame[rows], kind="stable")]
            crops = crop_part == part_id
            found, reference = _places(int(part_id), tracks[rows], near[rows], unit[crops], crop_frame[crops])
            if found:  # the best-supported place of each part; the others wait for the next round
                candidates.append(max(found, key=lambda place: place.margin))
            references += reference
        margins, across = np.array(references).reshape(-1, 2).T
        same, one_person = ScoreModel.fit(margins), ScoreModel.fit(across)
        if same is not None and same.spread < different.spread / 2:
            # References of few tracks claim more certainty than they have: the spread is then
            # half of two people's, and known from as many pairs as theirs.
            same = ScoreModel(same.centre, different.spread / 2, different.pairs)
        if same is None or one_person is None or not candidates or same.centre >= different.centre:
            break
        # Every candidate counts in the false-discovery rule; a confident one is cut only if
        # somebody met there took the track over.
        looser = max(false_rate, tentative_rate)
        cuts = [
            (place, rate)
            for place, rate in _cut_rates(candidates, same, different)
            if rate <= looser
            and _took_over(
                place,
                _met(place, tracks.frame, near, part_of, close),
                unit,
                crop_part,
                crop_frame,
                one_person,
                two_persons,
            )
        ]
        if not cuts:
            break
        for place, rate in cuts:
            margin = (place.margin - same.centre) / same.spread
            splits.append(Split(place.track_id, next_id, place.frame, margin, tentative=rate > false_rate))
            part_of[(part_of == place.track_id) & (tracks.frame >= place.frame)] = next_id
            crop_part[(crop_part == place.track_id) & (crop_frame >= place.frame)] = next_id
            next_id += 1
    return splits


def _stretches(tracks: TrackSet, near: npt.NDArray[np.bool_], crop_track: IntArray, crop_frame: IntArray) -> IntArray:
    """`(M,)` the stretch of its track each crop lies in, the stretches numbered from 0: a track
    is cut into stretches at its encounters' places, and a stretch holds one person. Not also at
    its pick-ups: shorter stretches hold fewer crops each, and the whitening learnt from them
    lost both of TUD-Stadtmitte's right cuts with OSNet (docs/quality.md)."""
    stretch = np.zeros(len(crop_track), dtype=np.int64)
    for track_id in np.unique(crop_track):
        rows = np.flatnonzero(tracks.track_id == track_id)
        rows = rows[np.argsort(tracks.frame[rows], kind="stable")]
        crops = crop_track == track_id
        stretch[crops] = np.searchsorted(encounter_frames(tracks[rows], near[rows]), crop_frame[crops], side="right")
    return np.unique(np.stack([crop_track, stretch], axis=1), axis=0, return_inverse=True)[1].ravel()


def _cut_rates(candidates: list[_Place], same: ScoreModel, different: ScoreModel) -> list[tuple[_Place, float]]:
    """The candidates, the likeliest cuts first, each with the lowest target share of cuts
    through one person at which it is cut: Benjamini-Hochberg's adjusted p-value, over every
    candidate, of how often one person shows as large a margin; inf where the margin is not
    also likelier for two people than for one. The share is read as far as the pairs behind one
    person's spread can tell it (`ScoreModel.survival_as_learnt`): a firm cut is never undone."""
    values = np.array([c.margin for c in candidates])
    p_same = same.survival_as_learnt(values)
    likelier_two = (values >= different.centre) | (different.log_density(values) > same.log_density(values))
    rates = np.where(likelier_two, false_discovery_control(p_same), np.inf)
    return [(candidates[i], float(rates[i])) for i in np.argsort(p_same, kind="stable")]


def split_apart(splits: list[Split], track_ids: IntArray) -> npt.NDArray[np.bool_]:
    """`(N, N)` True between the two sides of each cut but the tentative ones: appearance said
    two people, so neither motion nor the clustering may join them again."""
    apart = np.zeros((len(track_ids), len(track_ids)), dtype=bool)
    for split in splits:
        if split.tentative:
            continue
        i, j = np.searchsorted(track_ids, [split.track_id, split.new_track_id])
        apart[i, j] = apart[j, i] = True
    return apart


def apply_splits(
    tracks: TrackSet, crop_track: IntArray, crop_frame: IntArray, splits: list[Split]
) -> tuple[TrackSet, IntArray]:
    """Relabel the later part of each split track, in the detections and in the crops (in order:
    a later split may cut a part an earlier one made)."""
    track_id = tracks.track_id.copy()
    new_crop_track = crop_track.copy()
    for split in splits:
        track_id[(track_id == split.track_id) & (tracks.frame >= split.frame)] = split.new_track_id
        new_crop_track[(new_crop_track == split.track_id) & (crop_frame >= split.frame)] = split.new_track_id
    return TrackSet(tracks.frame.copy(), track_id, tracks.xyxy.copy(), tracks.score.copy()), new_crop_track


def undo_unclaimed_cuts(
    splits: list[Split], track_ids: IntArray, labels: IntArray, shared_frame: npt.NDArray[np.bool_]
) -> tuple[IntArray, list[Split]]:
    """Give the later side of each tentative cut that the merge left on its own back to the
    earlier side's person, where it shares no frame with anybody of that person.

    A tentative cut is a doubt, not a finding: a swap gives the later side to somebody the merge
    finds elsewhere in the video, while a cut through one person leaves it nobody's. Undone in
    the order made, so that a part cut twice is taken back whole.

    Args:
        splits: the cuts in the order made.
        track_ids: `(N,)` sorted IDs of the tracks after every cut.
        labels: `(N,)` person of each track.
        shared_frame: `(N, N)` True where two tracks share a frame.

    Returns:
        The labels with the unclaimed cuts undone, and those cuts.

    >>> cuts = [Split(1, 3, 10, 2.0, tentative=True), Split(2, 4, 10, 2.0, tentative=True)]
    >>> ids, no_frame_shared = np.array([1, 2, 3, 4]), np.zeros((4, 4), dtype=bool)
    >>> labels, undone = undo_unclaimed_cuts(cuts, ids, np.array([0, 1, 2, 0]), no_frame_shared)
    >>> labels.tolist(), [cut.track_id for cut in undone]
    ([0, 1, 0, 0], [1])
    """
    labels = labels.copy()
    undone = []
    for split in splits:
        if not split.tentative:
            continue
        later, earlier = np.searchsorted(track_ids, [split.new_track_id, split.track_id])
        claimed = (labels == labels[later]).sum() > 1
        if claimed or shared_frame[later, labels == labels[earlier]].any():
            continue
        labels[later] = labels[earlier]
        undone.append(split)
    return labels, undone
