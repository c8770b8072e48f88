"""Detect + track throughput: `track_frames` against ultralytics' `model.track` as it comes.

The first `model.track` call sets torch's intra-op threads to ``min(8, cores - 1)`` (for
ultralytics' training data loaders): on a 2-core machine the detector then runs on one core.
`track_frames` puts torch's own count back before each frame. Same process, same detector,
same frames, alternated, best of `--repeats`; the ratio is what matters.

    python bench/tracking.py [--video sample_videos/pets2009_s2l1.mp4] [--frames 30] [--detector offline]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ultralytics.utils import NUM_THREADS

from reid_merge.io.video import probe_video, read_frames
from reid_merge.models.tracking import check_tracker_config, load_detector, track_frames

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=ROOT / "sample_videos" / "pets2009_s2l1.mp4")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--detector", default="offline")
    args = parser.parse_args(argv)
    frames = list(itertools.islice(read_frames(probe_video(args.video)), args.frames))
    model, info = load_detector(args.detector)
    tracker = check_tracker_config("bytetrack")
    threads = torch.get_num_threads()

    def as_it_comes() -> int:
        torch.set_num_threads(NUM_THREADS)  # what ultralytics' first call leaves (it runs only once per model)
        boxes = 0
        for position, (_, image) in enumerate(frames):
            result = model.track(image, persist=position > 0, tracker=tracker, conf=0.1, verbose=False)
            boxes += len(result[0].boxes)
        return boxes

    def ours() -> int:
        torch.set_num_threads(threads)  # what the process had before ultralytics touched it
        return sum(len(tracked.tracks) for tracked in track_frames(model, frames, info, tracker=tracker))

    as_it_comes()  # warm-up: builds ultralytics' predictor
    best = {"ultralytics as it comes": np.inf, "track_frames": np.inf}
    for _ in range(args.repeats):
        for name, run in (("ultralytics as it comes", as_it_comes), ("track_frames", ours)):
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"{info.name}, {len(frames)} frames of {args.video.name}, torch threads {threads}, {torch.__version__}")
    for name, seconds in best.items():
        print(f"{name:24s} {seconds / len(frames):.3f} s/frame")
    print(f"speed-up: {best['ultralytics as it comes'] / best['track_frames']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
