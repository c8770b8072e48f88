from __future__ import annotations

import numpy as np
import pytest
from oracle import cut_into_fragments, pairwise_scores

from reid_merge.core.tracks import cooccurrence
from reid_merge.io.tracks_io import read_mot
from tests.builders import tracks_from_rows, walking_track
from tests.data_paths import SHARED_DATA


def test_fragments_cover_identities_without_overlap() -> None:
    gt = tracks_from_rows(walking_track(1, range(1, 301)) + walking_track(2, range(1, 101), x0=400))
    fragments, identity = cut_into_fragments(gt, seed=3, mean_fragment_frames=40)
    assert set(identity.values()) == {1, 2}
    assert len(fragments.track_ids) > 4  # 300 frames at ~40 per fragment
    assert sorted(identity) == fragments.track_ids.tolist()
    # fragments of one identity never share a frame
    together = cooccurrence(fragments, fragments.track_ids)
    ident = np.array([identity[int(t)] for t in fragments.track_ids])
    assert not (together & (ident[:, None] == ident[None, :])).any()
    assert len(fragments) < len(gt)  # frames were dropped at the cuts


def test_same_seed_same_fragments() -> None:
    gt = tracks_from_rows(walking_track(1, range(1, 301)))
    a, _ = cut_into_fragments(gt, seed=7)
    b, _ = cut_into_fragments(gt, seed=7)
    assert (a.track_id == b.track_id).all() and (a.frame == b.frame).all()


def test_a_gap_in_the_truth_always_cuts() -> None:
    gt = tracks_from_rows(walking_track(1, range(1, 11)) + walking_track(1, range(20, 30)))
    fragments, _ = cut_into_fragments(gt, seed=0, mean_fragment_frames=1e9)
    assert len(fragments.track_ids) == 2


@pytest.mark.skipif(not (SHARED_DATA / "TUD-Stadtmitte").is_dir(), reason="shared data not present")
def test_real_sequence_is_fragmented() -> None:
    gt = read_mot(SHARED_DATA / "TUD-Stadtmitte" / "gt" / "gt.txt")
    fragments, identity = cut_into_fragments(gt, seed=0)
    assert len(set(identity.values())) == 10 and len(fragments.track_ids) > 15


def test_pairwise_scores_perfect_and_all_in_one() -> None:
    perfect = pairwise_scores([1, 1, 2, 2], [0, 0, 3, 3])
    assert perfect.precision == perfect.recall == perfect.f1 == 1.0
    glued = pairwise_scores([1, 1, 1, 1], [0, 0, 3, 3])
    assert glued.recall == 1.0 and glued.precision == pytest.approx(2 / 6)
