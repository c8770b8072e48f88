from __future__ import annotations

import numpy as np
import pytest

from reid_merge.core.similarity import AGGREGATIONS, describe, track_similarity


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _brute_force(features: np.ndarray, owner: np.ndarray, n: int, agg: str) -> np.ndarray:
    out = np.full((n, n), np.nan)
    for a in range(n):
        for b in range(n):
            fa, fb = features[owner == a], features[owner == b]
            if len(fa) == 0 or len(fb) == 0:
                continue
            block = (fa @ fb.T).ravel()
            if agg == "centroid":
                ca, cb = _unit(fa.mean(0)), _unit(fb.mean(0))
                out[a, b] = ca @ cb
            elif agg == "trimmed_mean":
                s = np.sort(block)
                cut = int(np.floor(len(s) * 0.1))
                out[a, b] = s[cut : len(s) - cut].mean()
            else:
                out[a, b] = {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min}[agg](block)
    return out


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_batched_blocks_match_brute_force(aggregation: str) -> None:
    rng = np.random.default_rng(0)
    owner = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 4])  # track 3 has no crops, tracks of 1..4 crops
    features = _unit(rng.normal(size=(len(owner), 8)))
    got = track_similarity(features, owner, 5, aggregation)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, _brute_force(features, owner, 5, aggregation), atol=1e-5)
    assert np.isnan(got[3]).all() and np.isnan(got[:, 3]).all()


def test_known_vectors() -> None:
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    features = np.stack([e1, e2, e1, e1])
    owner = np.array([0, 0, 1, 1])
    assert track_similarity(features, owner, 2, "max")[0, 1] == pytest.approx(1.0)
    assert track_similarity(features, owner, 2, "min")[0, 1] == pytest.approx(0.0)
    assert track_similarity(features, owner, 2, "mean")[0, 1] == pytest.approx(0.5)
    assert track_similarity(features, owner, 2, "centroid")[0, 1] == pytest.approx(np.sqrt(0.5))


def test_chunking_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import reid_merge.core.similarity as similarity

    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(30), 4)
    features = _unit(rng.normal(size=(len(owner), 16)))
    whole = track_similarity(features, owner, 30, "median")
    monkeypatch.setattr(similarity, "_BLOCK_BUDGET", 30 * 16)  # one row per chunk
    np.testing.assert_allclose(track_similarity(features, owner, 30, "median"), whole)


def test_describe() -> None:
    d = describe(np.array([0.0, 1.0, np.nan, 2.0]))
    assert d["count"] == 3 and d["mean"] == 1.0 and d["skew"] == 0.0
    assert describe(np.array([])) == {"count": 0}
