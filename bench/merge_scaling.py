"""Merge-stage scaling: similarity + clustering time and peak memory against the number of tracks.

Synthetic but shaped like real output: N tracks of 16 crops each (512-d unit features,
fixed seed), about ten people visible at any time, tracks 20-120 frames long. Each size runs
in a fresh process so that its peak RSS is its own.

    python bench/merge_scaling.py [--sizes 100,500,2000,10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from reid_merge.app.config import Config
from reid_merge.app.pipeline import decide_merge
from reid_merge.core.crops import CropSet
from reid_merge.core.tracks import TrackSet

CROPS_PER_TRACK = 16
FEATURE_DIM = 512
VISIBLE_AT_ONCE = 10


def synthetic_scene(num_tracks: int, seed: int = 0) -> tuple[TrackSet, CropSet, np.ndarray]:
    """`num_tracks` tracks of 3x as many people as are ever visible, with noisy per-person features."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 121, size=num_tracks)
    video_frames = int(lengths.sum() / VISIBLE_AT_ONCE) + 1
    starts = rng.integers(1, max(2, video_frames - 120), size=num_tracks)
    people = max(1, num_tracks // 3)
    person = rng.integers(0, people, size=num_tracks)
    identity = rng.normal(size=(people, FEATURE_DIM))
    frame = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])
    track_id = np.repeat(np.arange(1, num_tracks + 1), lengths)
    x = rng.uniform(0, 1800, size=num_tracks)[track_id - 1] + (frame - np.repeat(starts, lengths)) * 2.0
    xyxy = np.stack([x, np.full_like(x, 300.0), x + 60.0, np.full_like(x, 480.0)], axis=1)
    tracks = TrackSet.from_arrays(frame, track_id, xyxy, np.full(len(frame), 0.9))
    crop_track = np.repeat(np.arange(1, num_tracks + 1), CROPS_PER_TRACK)
    crop_frame = np.repeat(starts, CROPS_PER_TRACK) + rng.integers(0, 20, size=len(crop_track))
    features = identity[person[crop_track - 1]] + 0.8 * rng.normal(size=(len(crop_track), FEATURE_DIM))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    crops = CropSet(
        crops=[],  # the merge never looks at pixels
        track_id=crop_track,
        frame=crop_frame,
        quality=np.ones(len(crop_track)),
    )
    return tracks, crops, features.astype(np.float32)


def measure(num_tracks: int) -> dict[str, float]:
    tracks, crops, features = synthetic_scene(num_tracks)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    outcome = decide_merge(tracks, crops, features, Config(), fps=25.0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "tracks": num_tracks,
        "crops": len(crops.track_id),
        "seconds": seconds,
        "peak_rss_mib": peak / 1024,
        "rss_before_mib": before / 1024,
        "persons": len(set(outcome.mapping.values())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500,2000,10000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # run one size in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    print("| tracks | crops | similarity + clustering (s) | peak RSS (MiB) | RSS before (MiB) | persons |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        done = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"| {size} | failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode} |")
            continue
        r = json.loads(done.stdout)
        print(
            f"| {r['tracks']} | {r['crops']} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_before_mib']:.0f} | {r['persons']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
