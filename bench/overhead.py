"""What reid-merge adds on top of tracking: `run` time over plain ultralytics tracking.

Both run in this one process, on the same video, with the same detector weights, tracker
settings, confidence, image size and device; each video is timed baseline first, then
`run`, `--repeats` times, and the best of each is kept. The baseline is what a user would
write by hand: `YOLO(weights).track(source=video, stream=True)` over every frame, nothing
else. `run` also samples crops, embeds them, merges, and writes the annotated video and
the track files; its per-stage times show where the extra goes.

    python bench/overhead.py [VIDEO ...] [--repeats 2] [--device cpu] [--size 1920x1080]
                             [--reid-model auto] [--reid-weights FILE]

Without videos it uses the two shared sequences and their concatenation. `--size` first
re-encodes each video at that size (frames/s at 1080p from any clip).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from reid_merge.app.config import Config
from reid_merge.app.pipeline import load_models, run_video
from reid_merge.models.tracking import check_tracker_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def plain_tracking(video: Path, models, config: Config, device: str) -> int:  # noqa: ANN001
    """Ultralytics tracking as a user would call it; returns the number of frames."""
    frames = 0
    for _ in models.detector.track(
        source=str(video),
        stream=True,
        tracker=check_tracker_config(config.tracker),
        conf=config.detection_confidence,
        imgsz=config.image_size,
        classes=models.detector_info.person_classes,
        device=device,
        verbose=False,
    ):
        frames += 1
    return frames


def concatenate(videos: list[Path], path: Path, size: tuple[int, int] | None = None) -> Path:
    """One H.264 file of all `videos` in a row, at `size` (else the first one's) and its frame rate."""
    with av.open(str(videos[0])) as first:
        stream = first.streams.video[0]
        width, height, rate = stream.codec_context.width, stream.codec_context.height, stream.average_rate
    if size is not None:
        width, height = size
    with av.open(str(path), "w") as out:
        encoder = out.add_stream("libx264", rate=Fraction(rate))
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        for video in videos:
            with av.open(str(video)) as source:
                for frame in source.decode(video=0):
                    image = frame.reformat(width=width, height=height, format="yuv420p")
                    image.pts = None
                    out.mux(encoder.encode(image))
        out.mux(encoder.encode())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default=None, help="re-encode each video at WIDTHxHEIGHT first")
    parser.add_argument("--reid-model", default="auto")
    parser.add_argument("--reid-weights", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    config = Config(device=args.device, reid_model=args.reid_model, reid_weights=args.reid_weights)
    models = load_models(config)
    device = models.reid_info.device
    workdir = Path(tempfile.mkdtemp(prefix="reid-merge-overhead-"))
    videos = args.videos or [
        SHARED / "TUD-Campus" / "TUD-Campus.mp4",
        SHARED / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4",
    ]
    if not args.videos:
        videos.append(concatenate(videos, workdir / "campus+stadtmitte.mp4"))
    if args.size:
        width, height = (int(n) for n in args.size.lower().split("x"))
        videos = [concatenate([v], workdir / f"{v.stem}-{args.size}.mp4", (width, height)) for v in videos]
    print(f"detector {models.detector_info.name}, re-identification {models.reid_info.name}, device {device}")
    print(
        "| video | frames | plain tracking (s) | reid-merge run (s) | ratio "
        "| extra: crops / embed / merge / video / tracks / report (s) |"
    )
    print("|---|---|---|---|---|---|")
    for video in videos:
        baseline, ours, stages = float("inf"), float("inf"), {}
        for repeat in range(args.repeats):
            start = time.perf_counter()
            frames = plain_tracking(video, models, config, device)
            baseline = min(baseline, time.perf_counter() - start)
            start = time.perf_counter()
            result = run_video(video, workdir / f"{video.stem}-{repeat}", config, models=models)
            elapsed = time.perf_counter() - start
            if elapsed < ours:
                ours, stages = elapsed, result.timings
        extra = " / ".join(
            f"{stages.get(k, 0.0):.2f}"
            for k in ("sample crops", "embed", "similarity + cluster", "write video", "write tracks", "write report")
        )
        print(f"| {video.name} | {frames} | {baseline:.2f} | {ours:.2f} | {ours / baseline:.3f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
