from __future__ import annotations

import numpy as np

from reid_merge.core.crops import CropSampler, box_quality
from tests.builders import tracks_from_rows


def _frame(value: int = 0) -> np.ndarray:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[..., 2] = value  # red channel in BGR
    return image


def test_quality_rejects_tiny_outside_and_covered_boxes() -> None:
    boxes = np.array(
        [
            [100, 100, 140, 220],  # good
            [300, 300, 305, 310],  # tiny
            [-100, 100, 10, 220],  # mostly outside the frame
            [400, 100, 440, 220],  # covered by the next box
            [398, 98, 442, 222],
        ],
        dtype=float,
    )
    q = box_quality(boxes, 640, 480, min_height=32)
    assert q[0] > 0.9
    assert q[1] == 0 and q[2] == 0
    assert q[3] == 0.0  # fully covered


def test_only_a_box_in_front_hides_another() -> None:
    front = [300, 100, 360, 300]  # feet at y=300: nearer the camera
    behind = [320, 90, 370, 250]  # three quarters of it hidden by the front box
    q = box_quality(np.array([front, behind], dtype=float), 640, 480, min_height=32)
    assert q[0] == 1.0  # the person behind does not spoil the crop of the one in front
    assert 0.0 < q[1] < 0.5
    strict = box_quality(np.array([front, behind], dtype=float), 640, 480, min_height=32, max_covered=0.4)
    assert strict[0] == 1.0 and strict[1] == 0.0  # too hidden to show its own person


def test_sampler_spreads_crops_over_a_long_track() -> None:
    sampler = CropSampler(crops_per_track=4)
    for f in range(1, 201):
        detections = tracks_from_rows([(f, 5, 100, 100, 140, 220)])
        sampler.update(_frame(f % 256), detections)
    crops = sampler.finish()
    assert len(crops) == 4
    assert (crops.track_id == 5).all()
    frames = np.sort(crops.frame)
    # one crop from each quarter of the track's life
    assert [int((f - 1) // 50) for f in frames] == [0, 1, 2, 3]
    # crops are RGB: the BGR red channel ends up in channel 0
    assert crops.crops[0][..., 0].max() > 0 and crops.crops[0][..., 2].max() == 0


def test_sampler_keeps_what_a_short_track_has_and_skips_bad_boxes() -> None:
    sampler = CropSampler(crops_per_track=16)
    for f in range(1, 4):
        sampler.update(_frame(), tracks_from_rows([(f, 1, 100, 100, 140, 220), (f, 2, 10, 10, 14, 14)]))
    crops = sampler.finish()
    assert crops.track_id.tolist() == [1, 1, 1]  # track 2 is tiny: no crops
    assert all(c.shape == (120, 40, 3) for c in crops.crops)


def test_sampler_memory_is_bounded_by_crops_per_track() -> None:
    sampler = CropSampler(crops_per_track=3)
    for f in range(1, 1001):
        sampler.update(_frame(), tracks_from_rows([(f, 1, 100, 100, 140, 220)]))
    assert len(sampler._tracks[1].slots) <= 6


def test_a_track_gone_for_long_is_finished_early_and_frees_its_candidates() -> None:
    sampler = CropSampler(crops_per_track=4, stale_after=20)
    for f in range(1, 101):
        rows = [(f, 1, 100, 100, 140, 220)] if f <= 50 else [(f, 2, 300, 100, 340, 220)]
        sampler.update(_frame(), tracks_from_rows(rows))
    first = sampler._tracks[1]
    assert first.final is not None and len(first.final) == 4 and first.slots == []
    crops = sampler.finish()
    assert crops.track_id.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert crops.frame[:4].max() <= 50  # the early finish chose from the track's own life
