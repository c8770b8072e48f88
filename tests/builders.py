"""Small builders for test data."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from reid_merge.core.tracks import TrackSet


def tracks_from_rows(rows: list[tuple[int, int, float, float, float, float]], score: float = 0.9) -> TrackSet:
    """A track set from ``(frame, track_id, x1, y1, x2, y2)`` rows."""
    if not rows:
        return TrackSet.empty()
    arr = np.array(rows, dtype=np.float64)
    return TrackSet.from_arrays(arr[:, 0], arr[:, 1], arr[:, 2:6], np.full(len(rows), score))


def walking_track(track_id: int, frames: range, x0: float = 100.0, speed: float = 2.0) -> list[tuple]:
    """Rows of one person walking right at `speed` px/frame, box 40x120."""
    return [(f, track_id, x0 + speed * f, 100.0, x0 + speed * f + 40.0, 220.0) for f in frames]


def approaching_track(
    track_id: int, frames: range, growth: float, y: float = 300.0, since: int = 0, speed: float = 2.0
) -> list[tuple]:
    """Rows of one person coming towards the camera while walking right at `speed` px/frame: the
    box, 120 px high at frame `since`, grows about its centre by `growth` (log) a frame."""
    rows = []
    for f in frames:
        h = 120.0 * float(np.exp(growth * (f - since)))
        rows.append((f, track_id, speed * f - h / 6.0, y - h / 2.0, speed * f + h / 6.0, y + h / 2.0))
    return rows


def write_video(path: Path, frames: Iterable[np.ndarray], fps: int = 25, faststart: bool = False) -> Path:
    """Encode BGR frames as H.264 in MP4 (`faststart`: the index before the frames)."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = image.shape[1], image.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"preset": "ultrafast", "crf": "18"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


def plain_frames(width: int, height: int, count: int, value: int = 128) -> list[np.ndarray]:
    """`count` uniform grey BGR frames: a scene in which nobody can be detected."""
    return [np.full((height, width, 3), value, dtype=np.uint8) for _ in range(count)]


def sample_frames(video: Path, first: int, last: int, columns: slice = slice(None)) -> list[np.ndarray]:
    """Frames `first..last` (1-based, inclusive) of `video`, cropped to `columns`."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = []
    for frame in range(1, last + 1):
        ok, image = capture.read()
        if not ok:
            break
        if frame >= first:
            frames.append(np.ascontiguousarray(image[:, columns]))
    capture.release()
    return frames


CROSSING_FRAMES = range(1, 61)


def _crossing_track(track_id: int, x0: float, speed: float, y: float) -> list[tuple]:
    return [(f, track_id, x0 + speed * f, y, x0 + speed * f + 40.0, y + 120.0) for f in CROSSING_FRAMES]


def crossing_scene(
    swap: bool, seed: int = 0, lost: tuple[int, ...] = (), swap_at: int = 31
) -> tuple[TrackSet, np.ndarray, np.ndarray, np.ndarray]:
    """Persons 1 and 2 cross at frame 30 (the tracker swaps their IDs from `swap_at` on when
    `swap`); 3 and 4 cross at frame 30 too and keep theirs; 5 to 8 walk alone, far from
    everybody. The tracker loses 1 and 2 in the frames `lost`."""
    rows = _crossing_track(1, 0.0, 4.0, 100.0) + _crossing_track(2, 240.0, -4.0, 140.0)
    rows = [row for row in rows if row[0] not in lost]
    rows += _crossing_track(3, 1000.0, 4.0, 100.0) + _crossing_track(4, 1240.0, -4.0, 140.0)
    for k, track_id in enumerate(range(5, 9)):
        rows += walking_track(track_id, CROSSING_FRAMES, x0=2000.0 + 400.0 * k)
    tracks = tracks_from_rows(rows)
    person = tracks.track_id.copy()
    if swap:
        later = tracks.frame >= swap_at
        tracks = TrackSet(
            tracks.frame,
            np.where(later & (person == 1), 2, np.where(later & (person == 2), 1, person)),
            tracks.xyxy,
            tracks.score,
        )
    rng = np.random.default_rng(seed)
    look = rng.normal(size=(9, 32))
    spread = np.linspace(2, 59, 16).round().astype(np.int64)
    seen = np.setdiff1d(CROSSING_FRAMES, lost)
    crop_frame = np.tile(seen[np.abs(seen[:, None] - spread[None, :]).argmin(axis=0)], 8)  # nearest seen frames
    crop_track = np.repeat(np.arange(1, 9), 16)
    crop_person = np.array(
        [person[(tracks.track_id == t) & (tracks.frame == f)][0] for t, f in zip(crop_track, crop_frame)]
    )
    features = look[crop_person] + 0.35 * rng.normal(size=(len(crop_track), 32))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return tracks, features, crop_track, crop_frame
