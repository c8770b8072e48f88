"""Track-to-track appearance similarity from per-crop embeddings.

For tracks A and B with crop features `F_A (k_a, D)` and `F_B (k_b, D)` the similarity is
an aggregate of the `k_a x k_b` block `F_A @ F_B.T`. All blocks come from one batched
product over padded `(N, K, D)` features, chunked over rows so memory stays bounded.
``centroid`` is the baseline the per-crop scheme replaces: average each track's crops,
normalise, then compare.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import stats

Aggregation = Literal["mean", "median", "max", "min", "trimmed_mean", "centroid"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
TRIM_FRACTION = 0.1  # share cut from each end for trimmed_mean
_BLOCK_BUDGET = 2**24  # elements of one chunk of similarity blocks (64 MiB in float32)


def pad_features(
    features: npt.NDArray[np.floating], owner: npt.NDArray[np.int64], num_tracks: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Group crop features by track into a padded array.

    Args:
        features: `(M, D)` crop embeddings.
        owner: `(M,)` track index in `[0, num_tracks)` of each crop.
        num_tracks: N.

    Returns:
        `(N, K, D)` features (zeros where padded) and `(N, K)` validity mask, K the most crops
        any track has.
    """
    counts = np.bincount(owner, minlength=num_tracks)
    k = int(counts.max()) if len(counts) and counts.max() > 0 else 1
    order = np.argsort(owner, kind="stable")
    sorted_owner = owner[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(owner)) - starts[sorted_owner]
    padded = np.zeros((num_tracks, k, features.shape[1]), dtype=np.float32)
    mask = np.zeros((num_tracks, k), dtype=bool)
    padded[sorted_owner, slot] = features[order]
    mask[sorted_owner, slot] = True
    return padded, mask


def track_similarity(
    features: npt.NDArray[np.floating],
    owner: npt.NDArray[np.int64],
    num_tracks: int,
    aggregation: Aggregation = "mean",
) -> npt.NDArray[np.float64]:
    """`(N, N)` similarity between tracks; NaN where a track has no crops.

    Args:
        features: `(M, D)` L2-normalised crop embeddings.
        owner: `(M,)` track index in `[0, N)` of each crop.
        num_tracks: N.
        aggregation: how a `k_a x k_b` block of crop similarities becomes one number.

    >>> f = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> float(track_similarity(f, np.array([0, 0, 1]), 2, "max")[0, 1])
    1.0
    >>> float(track_similarity(f, np.array([0, 0, 1]), 2, "mean")[0, 1])
    0.5
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation: expected one of {AGGREGATIONS}, got {aggregation!r}")
    padded, mask = pad_features(np.asarray(features, dtype=np.float32), owner, num_tracks)
    counts = mask.sum(axis=1)
    if aggregation in ("mean", "centroid"):
        # mean over the block of dot products is the dot product of the mean features.
        means = padded.sum(axis=1) / np.maximum(counts, 1)[:, None]
        if aggregation == "centroid":
            means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        result = (means @ means.T).astype(np.float64)
    else:
        result = np.empty((num_tracks, num_tracks), dtype=np.float64)
        k = padded.shape[1]
        rows_per_chunk = max(1, _BLOCK_BUDGET // max(1, num_tracks * k * k))
        for start in range(0, num_tracks, rows_per_chunk):
            stop = min(num_tracks, start + rows_per_chunk)
            blocks = np.einsum("akd,bld->abkl", padded[start:stop], padded, optimize=True)
            valid = mask[start:stop, None, :, None] & mask[None, :, None, :]
            result[start:stop] = _aggregate(blocks, valid, aggregation)
    missing = counts == 0
    result[missing, :] = np.nan
    result[:, missing] = np.nan
    return result


def _aggregate(
    blocks: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_], aggregation: str
) -> npt.NDArray[np.float64]:
    """Reduce `(a, b, K, K)` blocks with validity masks to `(a, b)`."""
    a, b = blocks.shape[:2]
    flat = blocks.reshape(a, b, -1)
    ok = np.broadcast_to(valid, blocks.shape).reshape(a, b, -1)
    n = ok.sum(axis=2)
    if aggregation == "max":
        return np.where(ok, flat, -np.inf).max(axis=2).astype(np.float64)
    if aggregation == "min":
        return np.where(ok, flat, np.inf).min(axis=2).astype(np.float64)
    # Order statistics: invalid entries sort to the end as +inf; ranks < n are the real values.
    ordered = np.sort(np.where(ok, flat, np.inf), axis=2)
    if aggregation == "median":
        lo = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[..., None], axis=2)[..., 0]
        hi = np.take_along_axis(ordered, np.maximum(n // 2, 0)[..., None], axis=2)[..., 0]
        return (lo.astype(np.float64) + hi) / 2.0
    cut = np.floor(n * TRIM_FRACTION).astype(int)
    rank = np.arange(flat.shape[2])
    keep = (rank >= cut[..., None]) & (rank < (n - cut)[..., None])
    total = np.where(keep, ordered, 0.0).sum(axis=2, dtype=np.float64)
    return total / np.maximum(keep.sum(axis=2), 1)


def describe(values: npt.NDArray[np.floating]) -> dict[str, float | int]:
    """Summary of a set of similarity values: count, min, max, mean, std, skew."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"count": 0}
    return {
        "count": int(len(v)),
        "min": round(float(v.min()), 6),
        "max": round(float(v.max()), 6),
        "mean": round(float(v.mean()), 6),
        "std": round(float(v.std()), 6),
        "skew": round(float(stats.skew(v)), 6) if len(v) > 2 and v.std() > 0 else 0.0,
    }
