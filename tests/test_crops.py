from __future__ import annotations

import numpy as np

from reid_merge.core.crops import CropSampler, box_quality
from reid_merge.core.encounters import MIN_CROPS_EACH_SIDE, encounter_frames, near_another
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
    assert len(sampler._tracks[1].life.slots) <= 6


def test_a_track_gone_for_long_is_finished_early_and_frees_its_candidates() -> None:
    sampler = CropSampler(crops_per_track=4, stale_after=20)
    for f in range(1, 101):
        rows = [(f, 1, 100, 100, 140, 220)] if f <= 50 else [(f, 2, 300, 100, 340, 220)]
        sampler.update(_frame(), tracks_from_rows(rows))
    first = sampler._tracks[1]
    assert first.final is not None and len(first.final) == 4 and first.life.slots == []
    crops = sampler.finish()
    assert crops.track_id.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert crops.frame[:4].max() <= 50  # the early finish chose from the track's own life


def _meeting_twice() -> list[tuple[int, int, float, float, float, float]]:
    """Track 1 walks frames 1-200; track 2 comes close in frames 10-14 and 185-190, and track 1's
    box jumps at frames 12 and 188 (where a tracker would have swapped them)."""
    rows = []
    for f in range(1, 201):
        x = 100.0 + (30.0 if 12 <= f < 188 else 0.0)
        rows.append((f, 1, x, 100.0, x + 40.0, 220.0))
        if 10 <= f <= 14 or 185 <= f <= 190:
            rows.append((f, 2, x + 50.0, 100.0, x + 90.0, 220.0))
    return rows


def test_a_track_that_met_somebody_has_crops_on_both_sides_of_every_place() -> None:
    rows = _meeting_twice()
    sampler = CropSampler(crops_per_track=16)
    for f in range(1, 201):
        sampler.update(_frame(), tracks_from_rows([r for r in rows if r[0] == f]))
    crops = sampler.finish()
    tracks = tracks_from_rows(rows)
    one = tracks.track_id == 1
    places = encounter_frames(tracks[one], near_another(tracks)[one])
    assert places.tolist() == [12, 188]  # what the cutting will look at
    one = crops.track_id == 1
    mine, spread = crops.frame[one], crops.frame[one & crops.spread]
    # Spread evenly over 200 frames, 16 crops leave one before frame 12 and none from frame 188 on:
    # the missing ones are taken beside the encounters, and the merge still compares the 16.
    assert len(spread) == 16 and ((spread < places[0]).sum(), (spread >= places[-1]).sum()) == (1, 0)
    assert (mine < places[0]).sum() == MIN_CROPS_EACH_SIDE
    assert (mine >= places[-1]).sum() == MIN_CROPS_EACH_SIDE
    assert (np.diff(mine) > 0).all()  # no frame twice


def test_without_cutting_only_the_spread_is_taken() -> None:
    rows = _meeting_twice()
    crops = {}
    for beside in (True, False):
        sampler = CropSampler(crops_per_track=16, beside_encounters=beside)
        for f in range(1, 201):
            sampler.update(_frame(), tracks_from_rows([r for r in rows if r[0] == f]))
        crops[beside] = sampler.finish()
    with_cuts, without = crops[True], crops[False]
    assert without.spread.all() and len(without) < len(with_cuts)
    # Nothing the merge compares changes: the same spread crops, frame for frame.
    assert without.frame.tolist() == with_cuts.frame[with_cuts.spread].tolist()
    assert without.track_id.tolist() == with_cuts.track_id[with_cuts.spread].tolist()


def test_the_crops_kept_beside_encounters_are_bounded() -> None:
    sampler = CropSampler(crops_per_track=6)
    for f in range(1, 2001):
        rows = [(f, 1, 100, 100, 140, 220)]
        if f % 10 < 3:  # somebody passes every 10 frames
            rows.append((f, 2, 150, 100, 190, 220))
        sampler.update(_frame(), tracks_from_rows(rows))
    state = sampler._tracks[1]
    assert len(state.life.slots) <= 12
    assert len(state.before_first.slots) <= 4 and len(state.after_last.slots) <= 4
    crops = sampler.finish()
    assert crops.spread.sum() == 2 * 6 and len(crops) <= 2 * (6 + 2 * 2)


def test_a_track_whose_spread_covers_both_sides_keeps_the_plain_spread() -> None:
    def sample(meet: bool) -> np.ndarray:
        sampler = CropSampler(crops_per_track=16)
        for f in range(1, 201):
            rows = [(f, 1, 100.0, 100.0, 140.0, 220.0)]
            if meet and 95 <= f <= 105:  # somebody close beside it, hiding none of it
                rows.append((f, 2, 150.0, 100.0, 190.0, 220.0))
            sampler.update(_frame(), tracks_from_rows(rows))
        crops = sampler.finish()
        return crops.frame[crops.track_id == 1]

    assert sample(meet=True).tolist() == sample(meet=False).tolist()
