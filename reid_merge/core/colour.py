"""Colour histograms of a person's upper and lower body: what an ImageNet backbone barely keeps.

A network trained to name objects pools away most of what tells two people apart: the colours
of what they wear. Re-identification models learn that cue; the offline ImageNet MobileNetV2
does not (docs/quality.md: on MOT16-09's oracle fragments its pooled features alone merge at
F1 0.548, with these histograms beside them at 0.619, precision 0.990 and 0.958). So the offline
appearance model puts them beside its features (`models.embedding`); a model trained for
re-identification does not (with OSNet they cost KITTI-17's F1 0.504 -> 0.371).

Each crop gives two HSV histograms (8 hues x 4 saturations x 4 values), of the upper and the
lower body, the head and feet left out; square roots of the shares, so that the dot product of
two is the Bhattacharyya coefficient of their colour distributions.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

#: Bins of hue, saturation and value.
BINS: tuple[int, int, int] = (8, 4, 4)
#: The upper and the lower body, as shares of the crop's height from its top.
BODY: tuple[tuple[float, float], ...] = ((0.15, 0.5), (0.5, 0.85))
COLOUR_DIM = len(BODY) * BINS[0] * BINS[1] * BINS[2]


def colour_histograms(crops_rgb: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """`(N, COLOUR_DIM)` unit rows: per crop, the square roots of its body parts' colour shares.

    >>> red, blue = np.zeros((40, 20, 3), np.uint8), np.zeros((40, 20, 3), np.uint8)
    >>> red[..., 0], blue[..., 2] = 200, 200
    >>> h = colour_histograms([red, red.copy(), blue])
    >>> round(float(h[0] @ h[1]), 3), round(float(h[0] @ h[2]), 3)
    (1.0, 0.0)
    """
    rows = np.zeros((len(crops_rgb), COLOUR_DIM), dtype=np.float32)
    for i, crop in enumerate(crops_rgb):
        hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)
        height = hsv.shape[0]
        parts = [hsv[int(height * top) : max(int(height * bottom), int(height * top) + 1)] for top, bottom in BODY]
        counts = np.concatenate(
            [cv2.calcHist([part], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256]).ravel() for part in parts]
        )
        rows[i] = np.sqrt(counts / max(float(counts.sum()), 1.0))
    return _unit(rows)


def with_colour(
    features: npt.NDArray[np.floating], crops_rgb: Sequence[npt.NDArray[np.uint8]]
) -> npt.NDArray[np.float32]:
    """`features` (unit rows) with the crops' colour histograms beside them, equal parts, as unit
    rows: the similarity of two is the mean of their features' and their colours' similarities.

    >>> crops = [np.full((40, 20, 3), 90, np.uint8)] * 2
    >>> with_colour(np.array([[1.0, 0.0], [0.0, 1.0]]), crops).shape
    (2, 258)
    """
    both = np.hstack([np.asarray(features, dtype=np.float32), colour_histograms(crops_rgb)])
    return _unit(both)


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
