"""Writing annotated.mp4: x264 with PyAV's default threading (slices) against frame threads too.

`write_annotated_video` as a run calls it, the same frames for both, in this one process,
alternating, best of `--repeats`. Frames are the clip's, resized to `--size` first, so the
encoder sees the size being asked about; no boxes, so drawing costs nothing.

    python bench/video_encoding.py [VIDEO] [--size 1920x1080] [--frames 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from reid_merge.core.tracks import TrackSet
from reid_merge.io import annotate
from reid_merge.io.video import probe_video, read_frames

ROOT = Path(__file__).resolve().parents[1]


def with_threading(thread_type: str) -> Callable:
    """`annotate._open_stream`, with the encoder's threading set to `thread_type`."""
    open_stream = annotate._open_stream

    def opened(*args):  # noqa: ANN002, ANN202
        stream = open_stream(*args)
        stream.codec_context.thread_type = thread_type
        return stream

    return opened


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=ROOT / "sample_videos" / "pets2009_s2l1.mp4")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.lower().split("x"))
    first = itertools.islice(read_frames(probe_video(args.video)), args.frames)
    clip = [cv2.resize(image, (width, height)) for _, image in first]
    if not clip:
        parser.error(f"{args.video}: no frames to encode")
    frames = [clip[i % len(clip)] for i in range(args.frames)]  # a short clip is looped
    variants = {"slices (PyAV's default)": with_threading("SLICE"), "slices and frames": with_threading("AUTO")}
    best = dict.fromkeys(variants, float("inf"))
    workdir = Path(tempfile.mkdtemp(prefix="reid-merge-encoding-"))
    for _ in range(args.repeats):
        for name, opened in variants.items():
            annotate._open_stream = opened
            start = time.perf_counter()
            annotate.write_annotated_video(enumerate(frames, 1), TrackSet.empty(), {}, workdir / "out.mp4", 25.0)
            best[name] = min(best[name], time.perf_counter() - start)
    baseline = best["slices (PyAV's default)"]
    print(f"{args.frames} frames at {width}x{height}, {os.cpu_count()} CPUs")
    print("| encoder threads | frames/s | speed-up |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {args.frames / seconds:.1f} | {baseline / seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
