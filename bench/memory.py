"""Peak memory of `reid-merge run` as the video gets longer: it must stay flat.

Makes a long video by looping a shared clip (forwards then backwards, so motion stays
continuous), runs `reid-merge run` on a short and a long version in fresh processes, and
reports each one's peak resident set size (RSS) and wall time.

    python bench/memory.py [--minutes 1,10] [--image-size 640]

Tracking a 10-minute video at 640 px takes a long time on a CPU; `--image-size` (the
detector's input size) lowers that cost without changing what is measured: that memory
does not grow with the number of frames.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"


def looped_video(clip: Path, minutes: float, path: Path) -> Path:
    """`clip` played forwards and backwards until the video lasts `minutes`."""
    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="bgr24") for f in source.decode(stream)]
    wanted = int(minutes * 60 * float(rate))
    bounce = frames + frames[-2:0:-1]
    with av.open(str(path), "w") as out:
        encoder = out.add_stream("libx264", rate=Fraction(rate))
        encoder.width, encoder.height, encoder.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        encoder.options = {"preset": "ultrafast"}
        for i in range(wanted):
            out.mux(encoder.encode(av.VideoFrame.from_ndarray(bounce[i % len(bounce)], format="bgr24")))
        out.mux(encoder.encode())
    return path


# Runs the CLI in a child process and reports that process's own peak RSS when it ends.
_CHILD = """
import resource, sys
from reid_merge.cli.main import app
try:
    app(args=sys.argv[1:], prog_name="reid-merge", standalone_mode=False)
finally:
    print("peak-rss-kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run_and_measure(video: Path, out_dir: Path, image_size: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `reid-merge run` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "run", str(video), "-o", str(out_dir), "--device", "cpu"]
        + ["--config", str(_config(out_dir.parent, image_size))],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("peak-rss-kib")]
    if done.returncode != 0 or not peaks:
        raise SystemExit(f"run failed on {video}: {done.stderr.strip().splitlines()[-1:]}")
    return seconds, int(peaks[-1]) / 1024


def _config(folder: Path, image_size: int) -> Path:
    path = folder / f"config-{image_size}.yaml"
    path.write_text(f"image_size: {image_size}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,10")
    parser.add_argument("--image-size", type=int, default=640)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="reid-merge-memory-"))
    print(f"clip {CLIP.name} looped; detector image size {args.image_size}")
    print("| video length (min) | frames | wall time (s) | peak RSS (MiB) |")
    print("|---|---|---|---|")
    for minutes in sorted(float(m) for m in args.minutes.split(",")):
        video = looped_video(CLIP, minutes, workdir / f"looped-{minutes:g}min.mp4")
        with av.open(str(video)) as container:
            frames = container.streams.video[0].frames
        seconds, peak = run_and_measure(video, workdir / f"out-{minutes:g}", args.image_size)
        print(f"| {minutes:g} | {frames} | {seconds:.1f} | {peak:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
