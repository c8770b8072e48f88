"""Sample up to K good crops per track, spread over its lifetime, in the same pass as tracking.

The sampler sees each frame once (while the tracker does), scores every box for how useful
its crop is (big enough, inside the frame, not hidden behind another person) and keeps,
per track, the best box of each time slot. Slots double in length when a track outlives
them, so a track keeps at most ``2 K`` candidate crops however long it lives (and a dozen
beside its encounters, below), and the final K are spread evenly over its life.

A track that met somebody (`encounters`) may hold two people, the tracker having swapped them
there, and its crops are the only evidence (`impurity`). Where the even spread leaves fewer
than `encounters.MIN_CROPS_EACH_SIDE` crops before the place of its first encounter or from
the place of its last one on (a swap early or late in a long track), the missing ones are
taken from there too, crops with nobody close first, so that every place where it could have
been swapped has crops on both sides. They are flagged (`CropSet.beside_encounter`): the merge
compares the K spread crops only, as for every other track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np
import numpy.typing as npt

from reid_merge.core.encounters import MIN_CROPS_EACH_SIDE, box_jump, near_another
from reid_merge.core.tracks import TrackSet

STORED_CROP_HEIGHT = 256  # the embedder's input height: larger crops are shrunk on arrival


@dataclass(frozen=True)
class CropSet:
    """Crops of many tracks.

    Attributes:
        crops: `M` RGB uint8 arrays `(h, w, 3)`.
        track_id: `(M,)` the track each crop belongs to.
        frame: `(M,)` the frame each crop was cut from.
        quality: `(M,)` the usefulness score that chose it, in `(0, 1]`.
        beside_encounter: `(M,)` True for the crops taken only so that both sides of a track's
            encounters can be judged (`impurity`), beyond its K spread over its life; None: none.
    """

    crops: list[np.ndarray]
    track_id: npt.NDArray[np.int64]
    frame: npt.NDArray[np.int64]
    quality: npt.NDArray[np.float64]
    beside_encounter: npt.NDArray[np.bool_] | None = None

    @property
    def spread(self) -> npt.NDArray[np.bool_]:
        """`(M,)` True for the crops spread over each track's life: those the merge compares."""
        return ~self.beside_encounter if self.beside_encounter is not None else np.ones(len(self), dtype=bool)

    def __len__(self) -> int:
        return len(self.crops)


def box_quality(
    xyxy: npt.NDArray[np.float64],
    width: int,
    height: int,
    min_height: float,
    max_covered: float = 1.0,
) -> npt.NDArray[np.float64]:
    """How useful each box of one frame is as a re-identification crop, 0 meaning unusable.

    The score is the fraction of the box inside the frame times the fraction not covered by
    a box in front of it, times a size term that saturates at 128 px. "In front" means feet
    at least as low in the image (nearer the camera in a street scene): a person in front
    shows in the crop of the one behind, not the other way round. Boxes shorter than
    `min_height` once clipped, more than 40% outside the frame, or covered by more than
    `max_covered` score 0: their crop shows somebody else as much as its own person.

    Args:
        xyxy: `(n, 4)` boxes of one frame.
        width: frame width in pixels.
        height: frame height in pixels.
        min_height: smallest usable clipped box height in pixels.
        max_covered: largest usable share of a box covered by a box in front of it.

    Returns:
        `(n,)` scores in `[0, 1]`.

    >>> boxes = np.array([[0., 0, 64, 128], [32, 0, 96, 120], [200, 0, 210, 10]])
    >>> box_quality(boxes, 640, 480, 32).tolist()  # the second box stands behind the first
    [1.0, 0.46875, 0.0]
    >>> box_quality(boxes, 640, 480, 32, max_covered=0.4).tolist()
    [1.0, 0.0, 0.0]
    """
    n = len(xyxy)
    if n == 0:
        return np.zeros(0)
    area = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    clipped = np.stack(
        [
            np.clip(xyxy[:, 0], 0, width),
            np.clip(xyxy[:, 1], 0, height),
            np.clip(xyxy[:, 2], 0, width),
            np.clip(xyxy[:, 3], 0, height),
        ],
        axis=1,
    )
    clipped_h = clipped[:, 3] - clipped[:, 1]
    clipped_area = (clipped[:, 2] - clipped[:, 0]) * clipped_h
    inside = np.divide(clipped_area, area, out=np.zeros(n), where=area > 0)
    # Fraction of each box covered by the largest overlap with any other box.
    ix1 = np.maximum(xyxy[:, None, 0], xyxy[None, :, 0])
    iy1 = np.maximum(xyxy[:, None, 1], xyxy[None, :, 1])
    ix2 = np.minimum(xyxy[:, None, 2], xyxy[None, :, 2])
    iy2 = np.minimum(xyxy[:, None, 3], xyxy[None, :, 3])
    overlap = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    np.fill_diagonal(overlap, 0.0)
    overlap[xyxy[None, :, 3] < xyxy[:, None, 3]] = 0.0  # [i, j]: j's feet higher, j stands behind i
    covered = np.divide(overlap.max(axis=1), area, out=np.ones(n), where=area > 0)
    size = np.clip(clipped_h / 128.0, 0.0, 1.0)
    quality = inside * np.clip(1.0 - covered, 0.0, 1.0) * size
    quality[(clipped_h < min_height) | (inside < 0.6) | (covered > max_covered)] = 0.0
    return quality


def cut_crop(image: np.ndarray, box: npt.NDArray[np.float64]) -> np.ndarray:
    """The box's pixels (clipped to the frame), RGB, shrunk to at most 256 px high."""
    h, w = image.shape[:2]
    x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x2, y2 = int(min(w, np.ceil(box[2]))), int(min(h, np.ceil(box[3])))
    crop = image[y1:y2, x1:x2]
    if crop.shape[0] > STORED_CROP_HEIGHT:
        scale = STORED_CROP_HEIGHT / crop.shape[0]
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * scale)), STORED_CROP_HEIGHT), interpolation=cv2.INTER_AREA
        )
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


@dataclass
class _Candidate:
    frame: int
    quality: float
    crop: np.ndarray
    alone: bool = True  # no other track's box close to it (`encounters.near_another`)


@dataclass
class _Slots:
    """Best candidate per time slot of a stretch of one track, slots `stride` detections long.

    Slots double in length whenever there are more than `capacity`, so the stretch keeps at
    most `capacity` candidates, spread over it, however long it is. With `prefer_alone`, a crop
    taken with nobody close beats any taken beside somebody, whose crop may show them too.
    """

    capacity: int
    prefer_alone: bool = False
    stride: int = 1
    seen: int = 0
    slots: list[_Candidate | None] = field(default_factory=list)

    def rank(self, quality: float, alone: bool) -> float:
        return quality + (1.0 if self.prefer_alone and alone else 0.0)

    def wants(self, quality: float, alone: bool) -> bool:
        """Whether the next detection would be kept (call `put` next)."""
        slot = self.seen // self.stride
        current = self.slots[slot] if slot < len(self.slots) else None
        rank = self.rank(quality, alone)
        return quality > 0 and (current is None or rank > self.rank(current.quality, current.alone))

    def put(self, candidate: _Candidate | None) -> None:
        """The next detection: its crop when `wants` said so, else None."""
        slot = self.seen // self.stride
        self.seen += 1
        if slot == len(self.slots):
            self.slots.append(None)
        if candidate is not None:
            self.slots[slot] = candidate
        self._fit()

    def extend(self, later: _Slots) -> None:
        """Append the slots of the stretch that follows this one."""
        self.slots += later.slots
        self.seen = len(self.slots) * self.stride
        self._fit()

    def _fit(self) -> None:
        while len(self.slots) > self.capacity:
            self.slots = [self._better(*self.slots[j : j + 2]) for j in range(0, len(self.slots), 2)]
            self.stride *= 2

    def _better(self, a: _Candidate | None, b: _Candidate | None = None) -> _Candidate | None:
        if a is None or b is None:
            return a if b is None else b
        return a if self.rank(a.quality, a.alone) >= self.rank(b.quality, b.alone) else b

    def choose(self, k: int, leave_out: set[int] | None = None) -> list[_Candidate]:
        """`k` of the candidates (but those of frames in `leave_out`), spread over the stretch."""
        kept = [c for c in self.slots if c is not None and c.frame not in (leave_out or set())]
        ranks = np.array([self.rank(c.quality, c.alone) for c in kept])
        return [kept[j] for j in spread_indices(ranks, k)]


@dataclass
class _TrackCrops:
    """The candidate crops of one track: over its whole life, before its first encounter's place
    and from its latest one on (empty until it meets somebody).

    An encounter is a run of boxes near another track's and the first box after it; its place is
    where the box jumped most in it (`encounters.encounter_frames`), known once the run is over.
    Once the track has not been seen for a while its final crops are chosen (`final`) and the
    other candidates are dropped.
    """

    life: _Slots
    before_first: _Slots
    after_last: _Slots
    beside_encounters: bool = True  # False: the life's crops only, encounters not followed
    last_frame: int = 0
    last_box: npt.NDArray[np.float64] | None = None
    in_encounter: bool = False
    largest_jump: float = -np.inf
    first_place: int | None = None
    last_place: int | None = None
    first_encounter_over: bool = False
    final: list[tuple[_Candidate, bool]] | None = None

    def see(self, frame: int, box: npt.NDArray[np.float64], near: bool) -> None:
        """Follow the encounters with one more detection, before its crop is offered."""
        if not self.beside_encounters:
            self.last_frame = frame
            return
        jump = float(box_jump(self.last_box, box)) if self.last_box is not None else None
        self.last_frame, self.last_box = frame, box
        if near and not self.in_encounter:
            self.in_encounter, self.largest_jump = True, -np.inf
        if self.in_encounter and jump is not None and jump > self.largest_jump:
            # The place moves here: all crops so far lie before it, none after.
            self.largest_jump, self.last_place = jump, frame
            if not self.first_encounter_over:
                self.first_place = frame
                self.before_first.extend(self.after_last)
            self.after_last = _Slots(self.after_last.capacity, prefer_alone=True)
        if self.in_encounter and not near:  # the first box after the run closes the encounter
            self.in_encounter = False
            self.first_encounter_over = self.first_place is not None

    def offer(self, quality: float, alone: bool, frame: int, cut: Callable[[], np.ndarray]) -> None:
        """The crop of the detection just seen, cut only if some stretch keeps it."""
        pools = (self.life, self.after_last) if self.beside_encounters else (self.life,)
        wanted = [pool.wants(quality, alone) for pool in pools]
        candidate = _Candidate(frame, quality, cut(), alone) if any(wanted) else None
        for pool, wants in zip(pools, wanted):
            pool.put(candidate if wants else None)


def spread_indices(quality: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """Pick `k` items from a time-ordered list: the best of each of `k` equal consecutive bins.

    >>> spread_indices(np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.1]), 3).tolist()
    [1, 3, 4]
    """
    n = len(quality)
    if n <= k:
        return np.arange(n)
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return np.array([lo + int(np.argmax(quality[lo:hi])) for lo, hi in zip(edges[:-1], edges[1:])])


class CropSampler:
    """Collects crops frame by frame; `finish()` returns at most `crops_per_track` per track.

    A track unseen for `stale_after` frames is finished early: its crops are chosen and the
    spare candidates freed, so memory follows the tracks alive at once, not the video's
    length. A track ID that comes back after that keeps the crops of its earlier life.
    Without `beside_encounters` (no track will be cut) only the K spread crops are taken.
    """

    def __init__(
        self,
        crops_per_track: int = 16,
        min_crop_height: float = 32.0,
        max_covered: float = 1.0,
        stale_after: int = 300,
        beside_encounters: bool = True,
    ) -> None:
        if crops_per_track < 1:
            raise ValueError(f"crops_per_track must be >= 1, got {crops_per_track}")
        self.crops_per_track = crops_per_track
        self.min_crop_height = min_crop_height
        self.max_covered = max_covered
        self.stale_after = stale_after
        self.beside_encounters = beside_encounters
        # Crops kept from before a track's first encounter and from after its last: enough to
        # judge both sides (impurity), and at most a third of the track's crops each.
        self._each_side = min(MIN_CROPS_EACH_SIDE, crops_per_track // 3)
        self._tracks: dict[int, _TrackCrops] = {}
        self._last_sweep = 0

    def update(self, image: np.ndarray, detections: TrackSet) -> None:
        """Offer every detection of one frame (all from the same frame)."""
        if len(detections) == 0:
            return
        frame = int(detections.frame[0])
        if frame - self._last_sweep >= self.stale_after // 4:
            self._finish_stale(frame)
        height, width = image.shape[:2]
        quality = box_quality(detections.xyxy, width, height, self.min_crop_height, self.max_covered)
        near = near_another(detections)
        for i in range(len(detections)):
            state = self._tracks.get(int(detections.track_id[i]))
            if state is None:
                ends = 2 * self._each_side
                state = self._tracks[int(detections.track_id[i])] = _TrackCrops(
                    _Slots(2 * self.crops_per_track),
                    _Slots(ends, prefer_alone=True),
                    _Slots(ends, prefer_alone=True),
                    self.beside_encounters,
                )
            if state.final is not None:
                continue
            box = detections.xyxy[i]
            state.see(frame, box, bool(near[i]))
            state.offer(float(quality[i]), not near[i], int(detections.frame[i]), partial(cut_crop, image, box))

    def _finish_stale(self, frame: int) -> None:
        self._last_sweep = frame
        for state in self._tracks.values():
            if state.final is None and frame - state.last_frame > self.stale_after:
                state.final = self._choose(state)
                state.life = state.before_first = state.after_last = _Slots(0)

    def _choose(self, state: _TrackCrops) -> list[tuple[_Candidate, bool]]:
        """K of the life's candidates, spread over it; for a track that met somebody, and
        whose spread leaves fewer than a few before its first encounter's place or from its last
        one on, the missing ones from there too (flagged True: beside an encounter)."""
        spread = state.life.choose(self.crops_per_track)
        extra: list[_Candidate] = []
        if state.first_place is not None and state.last_place is not None:
            taken = {c.frame for c in spread}
            for pool, have in (
                (state.before_first, sum(c.frame < state.first_place for c in spread)),
                (state.after_last, sum(c.frame >= state.last_place for c in spread)),
            ):
                if have < self._each_side:
                    extra += [c for c in pool.choose(self._each_side) if c.frame not in taken][: self._each_side - have]
        chosen = [(c, False) for c in spread] + [(c, True) for c in extra]
        return sorted(chosen, key=lambda pair: pair[0].frame)

    def finish(self) -> CropSet:
        chosen = [
            (track_id, candidate, beside)
            for track_id in sorted(self._tracks)
            for candidate, beside in (self._tracks[track_id].final or self._choose(self._tracks[track_id]))
        ]
        return CropSet(
            crops=[c.crop for _, c, _ in chosen],
            track_id=np.array([t for t, _, _ in chosen], dtype=np.int64),
            frame=np.array([c.frame for _, c, _ in chosen], dtype=np.int64),
            quality=np.array([c.quality for _, c, _ in chosen], dtype=np.float64),
            beside_encounter=np.array([beside for _, _, beside in chosen], dtype=bool),
        )
