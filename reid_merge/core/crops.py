"""Sample up to K good crops per track, spread over its lifetime, in the same pass as tracking.

The sampler sees each frame once (while the tracker does), scores every box for how useful
its crop is (big enough, inside the frame, not hidden behind another person) and keeps,
per track, the best box of each time slot. Slots double in length when a track outlives
them, so a track keeps at most ``2 K`` candidate crops however long it lives, and the final
K are spread evenly over its life.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

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
    """

    crops: list[np.ndarray]
    track_id: npt.NDArray[np.int64]
    frame: npt.NDArray[np.int64]
    quality: npt.NDArray[np.float64]

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


@dataclass
class _TrackSlots:
    """Best candidate per time slot of one track; slots cover `stride` detections each.

    Once the track has not been seen for a while its final crops are chosen (`final`) and
    the other candidates are dropped.
    """

    stride: int = 1
    seen: int = 0
    last_frame: int = 0
    slots: list[_Candidate | None] = field(default_factory=list)
    final: list[_Candidate] | None = None


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
    """

    def __init__(
        self,
        crops_per_track: int = 16,
        min_crop_height: float = 32.0,
        max_covered: float = 1.0,
        stale_after: int = 300,
    ) -> None:
        if crops_per_track < 1:
            raise ValueError(f"crops_per_track must be >= 1, got {crops_per_track}")
        self.crops_per_track = crops_per_track
        self.min_crop_height = min_crop_height
        self.max_covered = max_covered
        self.stale_after = stale_after
        self._capacity = 2 * crops_per_track
        self._tracks: dict[int, _TrackSlots] = {}
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
        for i in range(len(detections)):
            state = self._tracks.setdefault(int(detections.track_id[i]), _TrackSlots())
            if state.final is not None:
                continue
            state.last_frame = frame
            slot = state.seen // state.stride
            state.seen += 1
            if slot == len(state.slots):
                state.slots.append(None)
            current = state.slots[slot]
            if quality[i] > 0 and (current is None or quality[i] > current.quality):
                state.slots[slot] = _Candidate(
                    int(detections.frame[i]), float(quality[i]), cut_crop(image, detections.xyxy[i])
                )
            if len(state.slots) > self._capacity:
                state.slots = [_better(*state.slots[j : j + 2]) for j in range(0, len(state.slots), 2)]
                state.stride *= 2

    def _finish_stale(self, frame: int) -> None:
        self._last_sweep = frame
        for state in self._tracks.values():
            if state.final is None and frame - state.last_frame > self.stale_after:
                state.final = self._choose(state)
                state.slots = []

    def _choose(self, state: _TrackSlots) -> list[_Candidate]:
        candidates = [c for c in state.slots if c is not None]
        return [candidates[j] for j in spread_indices(np.array([c.quality for c in candidates]), self.crops_per_track)]

    def finish(self) -> CropSet:
        chosen = [
            (track_id, candidate)
            for track_id in sorted(self._tracks)
            for candidate in (self._tracks[track_id].final or self._choose(self._tracks[track_id]))
        ]
        return CropSet(
            crops=[c.crop for _, c in chosen],
            track_id=np.array([t for t, _ in chosen], dtype=np.int64),
            frame=np.array([c.frame for _, c in chosen], dtype=np.int64),
            quality=np.array([c.quality for _, c in chosen], dtype=np.float64),
        )


def _better(a: _Candidate | None, b: _Candidate | None = None) -> _Candidate | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.quality >= b.quality else b
