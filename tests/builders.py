"""Small builders for test data."""

from __future__ import annotations

import numpy as np

from reid_merge.tracks import TrackSet


def tracks_from_rows(rows: list[tuple[int, int, float, float, float, float]], score: float = 0.9) -> TrackSet:
    """A track set from ``(frame, track_id, x1, y1, x2, y2)`` rows."""
    if not rows:
        return TrackSet.empty()
    arr = np.array(rows, dtype=np.float64)
    return TrackSet.from_arrays(arr[:, 0], arr[:, 1], arr[:, 2:6], np.full(len(rows), score))


def walking_track(track_id: int, frames: range, x0: float = 100.0, speed: float = 2.0) -> list[tuple]:
    """Rows of one person walking right at `speed` px/frame, box 40x120."""
    return [(f, track_id, x0 + speed * f, 100.0, x0 + speed * f + 40.0, 220.0) for f in frames]
