"""A small run folder made without models: a synthetic video of coloured boxes, its tracks, and
the real pipeline (`merge_tracks_file`) with a fake embedder whose feature is the crop's colour.

The scene, 48 frames at 10 fps, 160 x 128 px:

- track 1: red, frames 1-20, walking right;
- track 2: blue, frames 1-30, standing;
- track 3: red, frames 23-48, where track 1 would be by then (the same person, fragmented);
- track 4: green, frames 33-48.

So the merge joins 1 and 3 (P1), and 2 (P2) and 4 (P3) stay alone; 1 and 2, 2 and 3 share
frames, 2 and 4 do not. Gap filling then boxes P1 in frames 21-22.

With `double`, a fifth track boxes part of the blue person (track 2) a second time in frames
5-15, as a detector sometimes does: the same person boxed twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from reid_merge.app.config import Config
from reid_merge.core.tracks import TrackSet
from reid_merge.io.tracks_io import write_mot

NUM_FRAMES = 48
FPS = 10
WIDTH, HEIGHT = 160, 128
COLOURS_BGR = {1: (0, 0, 220), 2: (220, 0, 0), 3: (0, 0, 220), 4: (0, 200, 0)}
SPANS = {1: range(1, 21), 2: range(1, 31), 3: range(23, 49), 4: range(33, 49)}
LOST_FRAMES = (21, 22)  # the red person is there, undetected: gap filling boxes them after the merge


def box_of(track_id: int, frame: int) -> tuple[float, float, float, float]:
    if track_id in (1, 3):  # one red person walking right at 2 px per frame
        x = 4.0 + 2.0 * frame
        return x, 40.0, x + 24.0, 88.0
    if track_id == 2:
        return 120.0, 10.0, 144.0, 58.0
    return 120.0, 70.0, 144.0, 118.0


DOUBLE_TRACK, DOUBLE_SPAN = 5, range(5, 16)


def scene_tracks(lost_frames: bool = False, double: bool = False) -> TrackSet:
    """The tracks of the scene; with `lost_frames`, also the red person in frames 21-22, where
    no track has them (the ground truth); with `double`, track 5 inside track 2's boxes."""
    rows = [(f, t, *box_of(t, f)) for t, span in SPANS.items() for f in span]
    rows += [(f, 1, *box_of(1, f)) for f in LOST_FRAMES] if lost_frames else []
    if double:
        x1, y1, x2, y2 = box_of(2, 1)
        rows += [(f, DOUBLE_TRACK, x1 + 1.0, y1 + 2.0, x2, y2 - 2.0) for f in DOUBLE_SPAN]
    arr = np.array(rows, dtype=np.float64)
    return TrackSet.from_arrays(arr[:, 0], arr[:, 1], arr[:, 2:6], np.full(len(rows), 0.9))


def write_scene_video(path: Path) -> None:
    """H.264 mp4 of the scene: grey background, a filled box per detection."""
    tracks = scene_tracks()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "10"}
        for frame in range(1, NUM_FRAMES + 1):
            image = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
            for track_id, (x1, y1, x2, y2) in zip(
                tracks.track_id[tracks.frame == frame], tracks.xyxy[tracks.frame == frame]
            ):
                image[int(y1) : int(y2), int(x1) : int(x2)] = COLOURS_BGR[int(track_id)]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@dataclass(frozen=True)
class FakeReidInfo:
    name: str = "mean-colour"
    weights: str = ""
    sha256: str = "0" * 64
    source: str = "test fake: the crop's mean colour"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def colour_embedder(crops_rgb: list[np.ndarray]) -> np.ndarray:
    """`(N, 8)` unit features: the crop's mean RGB, zero-padded."""
    features = np.zeros((len(crops_rgb), 8), dtype=np.float32)
    for i, crop in enumerate(crops_rgb):
        features[i, :3] = crop.reshape(-1, 3).mean(axis=0)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-9)


def make_run(
    folder: Path, monkeypatch: pytest.MonkeyPatch, *, ground_truth: bool = False, double: bool = False
) -> Path:
    """Write the scene's video and tracks (`double`: with track 5) into `folder` and merge them;
    returns the run folder."""
    import reid_merge.models.embedding
    from reid_merge.app.pipeline import merge_tracks_file

    folder.mkdir(parents=True, exist_ok=True)
    video = folder / "scene.mp4"
    write_scene_video(video)
    tracks_path = folder / "scene_tracks.txt"
    write_mot(tracks_path, scene_tracks(double=double))
    gt_path = None
    if ground_truth:  # the true identities: 1 and 3 are one person, also there in frames 21-22
        gt_path = folder / "gt.txt"
        truth = scene_tracks(lost_frames=True).relabel({1: 1, 2: 2, 3: 1, 4: 3})
        # conf 1: a MOTChallenge 2015 row whose conf reads as integer 0 is ignored ground truth.
        write_mot(gt_path, TrackSet.from_arrays(truth.frame, truth.track_id, truth.xyxy, np.ones(len(truth))))
    monkeypatch.setattr(reid_merge.models.embedding, "load_embedder", lambda *a, **k: (colour_embedder, FakeReidInfo()))
    out = folder / "run"
    # No whitening: with a handful of flat-coloured crops there is nothing to learn it from.
    # Linear gap filling: GSI would smooth the tracker's boxes too, and the tests find each
    # raw track's boxes in tracks.txt.
    config = dataclasses.replace(Config(), adapt=False, device="cpu", fill_method="linear")
    merge_tracks_file(tracks_path, video, out, config, ground_truth=gt_path)
    return out
