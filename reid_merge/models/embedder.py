"""What every embedder shares, without torch: the protocol, the description of a model, and its input.

torchreid models and their ONNX exports take the same input (crops resized to 256 x 128,
ImageNet mean and deviation), so both embedders prepare crops here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

#: Input size of torchreid's ReID models, `(height, width)`.
INPUT_SIZE: tuple[int, int] = (256, 128)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Embedder(Protocol):
    """Anything that turns RGB crops into unit-length feature rows.

    Crops are RGB `uint8` arrays `(h, w, 3)` of any size; the result is `(N, D)` float32
    with L2-normalised rows (an all-zero feature stays zero).
    """

    def __call__(self, crops_rgb: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class ReidModelInfo:
    """Which appearance model was used, so results can name it (and its file's hash)."""

    name: str
    weights: str
    sha256: str
    source: str
    feature_dim: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def resize_crops(crops_rgb: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    """Stack crops resized to `INPUT_SIZE`: `(B, 256, 128, 3)` uint8 (kept uint8 so the
    host-to-device copy is 4x smaller than float32)."""
    height, width = INPUT_SIZE
    batch = np.empty((len(crops_rgb), height, width, 3), dtype=np.uint8)
    for i, crop in enumerate(crops_rgb):
        if not (
            isinstance(crop, np.ndarray)
            and crop.dtype == np.uint8
            and crop.ndim == 3
            and crop.shape[2] == 3
            and crop.shape[0] > 0
            and crop.shape[1] > 0
        ):
            got = f"{crop.dtype} {crop.shape}" if isinstance(crop, np.ndarray) else type(crop).__name__
            raise ValueError(f"crop {i}: expected a uint8 (h, w, 3) RGB array, got {got}")
        batch[i] = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)
    return batch
