"""The ``reid-merge`` command: options → Config → one library call → summary → exit code.

Exit codes: 0 success, 1 internal error (a bug), 2 usage (bad options or config), 3 input
(missing or malformed video/tracks, unwritable output), 4 model (weights missing or wrong),
5 batch ran but at least one video failed, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from reid_merge.cli_models import models_app
from reid_merge.config import Config, load_config
from reid_merge.errors import ReidMergeError
from reid_merge.pipeline import Reporter, RunResult

app = typer.Typer(
    help="Repair fragmented person tracks in videos: one person, one ID.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.add_typer(models_app, name="weights", hidden=True)  # the name issue 4 also used
console = Console(stderr=True, highlight=False)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM

SCORE_ROWS = (
    ("idf1", "IDF1"),
    ("hota", "HOTA"),
    ("assa", "AssA"),
    ("mota", "MOTA"),
    ("id_switches", "ID switches"),
    ("num_pred_ids", "IDs"),
    ("num_gt_ids", "true IDs"),
)
STAGE_LABELS = {
    "track": "detect + track",
    "decode": "decode + crops",
    "embed": "embed crops",
    "video": "write video",
    "videos": "videos",
}


class RichReporter(Reporter):
    """Progress bars and notes on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def start(self, stage: str, total: int | None) -> None:
        self.tasks[stage] = self.progress.add_task(STAGE_LABELS.get(stage, stage), total=total)

    def advance(self, stage: str, amount: int = 1) -> None:
        self.progress.advance(self.tasks[stage], amount)

    def finish(self, stage: str) -> None:
        task = self.tasks[stage]
        done = self.progress.tasks[task].completed
        self.progress.update(task, total=done, completed=done)

    def note(self, message: str) -> None:
        self.progress.console.print(f"[cyan]note:[/] {escape(message)}", soft_wrap=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated


@contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    """Turn errors into one line on stderr and an exit code; --debug adds the traceback.

    The exit code is the same with and without --debug. SIGTERM is turned into an exception
    while the block runs: Python's default action ends the process without running `finally`
    blocks, which would leave temporary files behind.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        # FFmpeg inside OpenCV prints its own lines ("moov atom not found") on stderr;
        # our error names the file and the problem.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except ReidMergeError as exc:
        if debug:
            traceback.print_exc()
        _print_line(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        _print_line(f"[red]{'terminated' if terminated else 'interrupted'}:[/] previous outputs left as they were")
        raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message = escape(f"{exc.__class__.__name__}: {exc}")
        hint = "" if debug else " (run with --debug for the traceback)"
        _print_line(f"[red]internal error:[/] {message}{hint}")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def _print_line(markup: str) -> None:
    """One line on stderr however narrow the terminal: messages are grepped and logged."""
    console.print(markup, soft_wrap=True)


def _execute(debug: bool, job: Callable[[Reporter], RunResult]) -> None:
    """Run a job with progress bars, then print its summary."""
    if not debug:
        os.environ.setdefault("YOLO_VERBOSE", "False")
    with _user_errors(debug), _progress() as progress:
        result = job(RichReporter(progress))
    _print_summary(result)


def _print_summary(result: RunResult) -> None:
    table = Table(title="reid-merge", show_header=False, title_justify="left")
    table.add_row("frames", str(result.frames))
    table.add_row("raw tracks -> persons", f"{result.raw_tracks} -> {result.persons}")
    table.add_row("tracks joined", f"{result.tracks_joined} (tracks now one person with another track)")
    left_alone = {why: n for why, n in result.left_alone.items() if n}
    if left_alone:
        reasons = ", ".join(f"{n} {why}" for why, n in left_alone.items())
        table.add_row("tracks left alone", f"{sum(left_alone.values())}: {reasons}")
    table.add_row("boxes filled", f"{result.boxes_filled} (dashed in annotated.mp4)" if result.boxes_filled else "0")
    for stage, seconds in result.timings.items():
        table.add_row(f"time: {stage}", f"{seconds:.2f} s")
    table.add_row("time: total", f"{sum(result.timings.values()):.2f} s")
    for name, path in result.outputs.items():
        table.add_row(name, str(path))
    console.print(table)
    if result.scores is not None:
        scores = Table(title="against ground truth", title_justify="left")
        scores.add_column("")
        scores.add_column("raw", justify="right")
        scores.add_column("merged", justify="right")
        raw, merged = result.scores["raw"], result.scores["merged"]
        for key, label in SCORE_ROWS:
            fmt = (lambda v: f"{100 * v:.1f}%") if isinstance(raw[key], float) else str
            scores.add_row(label, fmt(raw[key]), fmt(merged[key]))
        console.print(scores)
    if "report.html" in result.outputs:
        console.print(f"what was joined and why: {result.outputs['report.html']}", soft_wrap=True)


def _settings(config_file: Path | None, **overrides: Any) -> Config:
    return load_config(config_file).with_overrides(**overrides)


ConfigOpt = typer.Option(None, "--config", help="YAML file of settings (see configs/default.yaml).")
OutputOpt = typer.Option(None, "-o", "--output", help="Output folder [default: runs/<video name>].")
DeviceOpt = typer.Option(None, "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")
CropsOpt = typer.Option(None, "--crops", help="Crops sampled per track [default: 16].")
ThresholdOpt = typer.Option(
    None,
    "--threshold",
    help="Join stitched fragments by appearance while their average distance (1 - similarity) <= this, 0..2. "
    "Default: learnt from the video (false_merge_rate).",
)
PersonsOpt = typer.Option(None, "--persons", help="Stop at this many persons when you know how many there are.")
AggregationOpt = typer.Option(
    None, "--aggregation", help="Crop-block aggregation: mean, median, max, min, trimmed_mean or centroid."
)
CriterionOpt = typer.Option(None, "--criterion", help="Clustering: average (linkage) or dbc (dispersion-based).")
DispersionOpt = typer.Option(None, "--dispersion-weight", help="λ of --criterion dbc [default: 0.1].")
SplitOpt = typer.Option(
    None,
    "--split-impure/--no-split-impure",
    help="Cut tracks the tracker moved from one person to another where two people met [default: on].",
)
FillOpt = typer.Option(
    None, "--fill-gaps/--no-fill-gaps", help="Box each person in the frames the tracker lost them [default: on]."
)
MaxGapOpt = typer.Option(None, "--max-gap", help="Longest gap filled, in seconds [default: 1.0].")
ReidModelOpt = typer.Option(
    None,
    "--reid-model",
    help="Re-identification model: auto, an architecture (osnet_x1_0) or a name from `reid-merge models list` "
    "(osnet_x0_25_msmt17_combineall) [default: auto].",
)
ReidWeightsOpt = typer.Option(
    None, "--reid-weights", help="Checkpoint for --reid-model: torchreid .pth, or .onnx (`reid-merge models export`)."
)
NoVideoOpt = typer.Option(False, "--no-video", help="Do not write annotated.mp4.")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")
DetectorOpt = typer.Option(None, "--detector", help="auto, offline, an ultralytics name (yolo11n.pt) or a .pt path.")
TrackerOpt = typer.Option(None, "--tracker", help="bytetrack, botsort or a tracker .yaml file.")
GtOpt = typer.Option(None, "--gt", help="Ground truth (MOTChallenge gt.txt): score raw and merged tracks.")


def _default_out(video: Path) -> Path:
    return Path("runs") / (video.stem if video.suffix else video.name)


@app.command()
def run(
    video: Path = typer.Argument(..., help="Video file (mp4/avi/mov/mkv) or MOTChallenge sequence folder."),
    output: Path | None = OutputOpt,
    config: Path | None = ConfigOpt,
    device: str | None = DeviceOpt,
    crops: int | None = CropsOpt,
    threshold: float | None = ThresholdOpt,
    persons: int | None = PersonsOpt,
    aggregation: str | None = AggregationOpt,
    criterion: str | None = CriterionOpt,
    dispersion_weight: float | None = DispersionOpt,
    split_impure: bool | None = SplitOpt,
    fill_gaps: bool | None = FillOpt,
    max_gap: float | None = MaxGapOpt,
    detector: str | None = DetectorOpt,
    tracker: str | None = TrackerOpt,
    reid_model: str | None = ReidModelOpt,
    reid_weights: str | None = ReidWeightsOpt,
    no_video: bool = NoVideoOpt,
    gt: Path | None = GtOpt,
    debug: bool = DebugOpt,
) -> None:
    """Detect and track people in VIDEO, merge fragmented tracks into persons, write the outputs."""
    from reid_merge.pipeline import run_video

    def job(reporter: Reporter) -> RunResult:
        settings = _settings(
            config,
            device=device,
            crops_per_track=crops,
            threshold=threshold,
            persons=persons,
            aggregation=aggregation,
            criterion=criterion,
            dispersion_weight=dispersion_weight,
            split_impure=split_impure,
            fill_gaps=fill_gaps,
            fill_max_gap_seconds=max_gap,
            detector=detector,
            tracker=tracker,
            reid_model=reid_model,
            reid_weights=reid_weights,
            write_video=False if no_video else None,
        )
        return run_video(video, output or _default_out(video), settings, reporter, ground_truth=gt)

    _execute(debug, job)


@app.command()
def merge(
    tracks: Path = typer.Argument(..., help="Tracks from any tracker: MOTChallenge txt or reid-merge tracks.json."),
    video: Path = typer.Option(..., "--video", help="The video (or sequence folder) the tracks belong to."),
    output: Path | None = OutputOpt,
    config: Path | None = ConfigOpt,
    device: str | None = DeviceOpt,
    crops: int | None = CropsOpt,
    threshold: float | None = ThresholdOpt,
    persons: int | None = PersonsOpt,
    aggregation: str | None = AggregationOpt,
    criterion: str | None = CriterionOpt,
    dispersion_weight: float | None = DispersionOpt,
    split_impure: bool | None = SplitOpt,
    fill_gaps: bool | None = FillOpt,
    max_gap: float | None = MaxGapOpt,
    reid_model: str | None = ReidModelOpt,
    reid_weights: str | None = ReidWeightsOpt,
    no_video: bool = NoVideoOpt,
    gt: Path | None = GtOpt,
    debug: bool = DebugOpt,
) -> None:
    """Merge existing TRACKS of VIDEO into persons (no detection or tracking)."""
    from reid_merge.pipeline import merge_tracks_file

    def job(reporter: Reporter) -> RunResult:
        settings = _settings(
            config,
            device=device,
            crops_per_track=crops,
            threshold=threshold,
            persons=persons,
            aggregation=aggregation,
            criterion=criterion,
            dispersion_weight=dispersion_weight,
            split_impure=split_impure,
            fill_gaps=fill_gaps,
            fill_max_gap_seconds=max_gap,
            reid_model=reid_model,
            reid_weights=reid_weights,
            write_video=False if no_video else None,
        )
        return merge_tracks_file(tracks, video, output or _default_out(video), settings, reporter, ground_truth=gt)

    _execute(debug, job)


@app.command("eval")
def evaluate_command(
    pred: Path = typer.Argument(..., help="Predicted tracks: MOTChallenge txt or reid-merge tracks.json."),
    gt: Path = typer.Argument(..., help="Ground truth: MOTChallenge gt.txt (2015 10-column or MOT16+ 9-column)."),
    iou: float = typer.Option(0.5, "--iou", help="IoU a predicted box needs to match a true one (IDF1, MOTA)."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON on stdout."),
    debug: bool = DebugOpt,
) -> None:
    """Score PRED against GT: IDF1, IDP, IDR, MOTA, ID switches, HOTA, DetA, AssA."""
    from reid_merge.evaluation import evaluate, read_ground_truth
    from reid_merge.tracks_io import read_tracks

    with _user_errors(debug):
        scores = evaluate(read_tracks(pred), read_ground_truth(gt), iou_threshold=iou)
    if as_json:
        print(json.dumps(scores.to_dict(), indent=1))
        return
    table = Table(title=f"{pred} vs {gt}", show_header=False, title_justify="left")
    for label, value in scores.rows():
        table.add_row(label, value)
    Console().print(table)


@app.command()
def batch(
    source: str = typer.Argument(
        ..., help="Folder (searched recursively) or quoted glob of videos and MOTChallenge sequence folders."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Output root, one folder per input at its relative path [default: runs/<folder>]."
    ),
    jobs: int | None = typer.Option(
        None,
        "-j",
        "--jobs",
        help="Videos at a time [default local: 2 per GPU, else 1 per core, 2 GiB each; ray: what the cluster fits].",
    ),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Skip videos whose outputs are complete for the same input and settings."
    ),
    executor: str = typer.Option("local", "--executor", help="local (worker processes) or ray (a Ray cluster)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to use [default: $RAY_ADDRESS, else a local Ray instance]."
    ),
    config: Path | None = ConfigOpt,
    device: str | None = DeviceOpt,
    crops: int | None = CropsOpt,
    threshold: float | None = ThresholdOpt,
    persons: int | None = PersonsOpt,
    aggregation: str | None = AggregationOpt,
    criterion: str | None = CriterionOpt,
    dispersion_weight: float | None = DispersionOpt,
    split_impure: bool | None = SplitOpt,
    fill_gaps: bool | None = FillOpt,
    max_gap: float | None = MaxGapOpt,
    detector: str | None = DetectorOpt,
    tracker: str | None = TrackerOpt,
    reid_model: str | None = ReidModelOpt,
    reid_weights: str | None = ReidWeightsOpt,
    no_video: bool = NoVideoOpt,
    debug: bool = DebugOpt,
) -> None:
    """Process every video under SOURCE into its own folder, then write summary.csv and summary.json.

    A video that fails gets a row that says why and the others go on; the exit code is then 5.
    """
    from reid_merge.batch import EXIT_SOME_FAILED, run_batch, split_glob

    if not debug:
        os.environ.setdefault("YOLO_VERBOSE", "False")
    with _user_errors(debug), _progress() as progress:
        settings = _settings(
            config,
            device=device,
            crops_per_track=crops,
            threshold=threshold,
            persons=persons,
            aggregation=aggregation,
            criterion=criterion,
            dispersion_weight=dispersion_weight,
            split_impure=split_impure,
            fill_gaps=fill_gaps,
            fill_max_gap_seconds=max_gap,
            detector=detector,
            tracker=tracker,
            reid_model=reid_model,
            reid_weights=reid_weights,
            write_video=False if no_video else None,
        )
        out_root = output or Path("runs") / (split_glob(source)[0].resolve().name or "batch")
        summary = run_batch(
            source,
            out_root,
            settings,
            jobs=jobs,
            resume=resume,
            executor=executor,
            ray_address=ray_address,
            reporter=RichReporter(progress),
        )
    _print_batch_table(summary)
    counts = summary.counts()
    console.print(
        f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed in {summary.seconds:.1f} s; "
        f"summary: {summary.files['summary.csv']}, {summary.files['summary.json']}"
    )
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _print_batch_table(summary: Any) -> None:
    """One row per video; errors cut to one line here (summary.csv has them whole)."""
    table = Table(title=f"reid-merge batch: {summary.out_root}", title_justify="left")
    table.add_column("video", overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("frames", "tracks", "persons", "seconds"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    colours = {"done": "green", "skipped": "cyan", "failed": "red"}
    for row in summary.results:
        numbers = [str(v) if v is not None else "" for v in (row.frames, row.raw_tracks, row.persons)]
        # Input errors start with the input's absolute path, which the row already names.
        error = row.error.split(": ", 1)[1] if row.error.startswith("/") and ": " in row.error else row.error
        table.add_row(row.video, f"[{colours[row.status]}]{row.status}[/]", *numbers, f"{row.seconds:.1f}", error)
    console.print(table)


@app.command("apply")
def apply_command(
    run_dir: Path = typer.Argument(..., help="Output folder of `reid-merge run` or `merge` (holds merge_plan.json)."),
    merge: list[str] = typer.Option(
        [], "--merge", help="Raw tracks that are one person, e.g. 3,17: 17's person joins 3's (repeatable)."
    ),
    split: list[int] = typer.Option([], "--split", help="A raw track that is a person of its own (repeatable)."),
    plan: Path | None = typer.Option(
        None, "--plan", help="Start from this edited merge_plan.json (default: RUN_DIR/merge_plan.json)."
    ),
    no_video: bool = typer.Option(False, "--no-video", help="Do not re-encode annotated.mp4 (the old one is removed)."),
    gt: Path | None = typer.Option(None, "--gt", help="Score against this gt.txt (default: the run's, if it had one)."),
    debug: bool = DebugOpt,
) -> None:
    """Correct a run by hand: rewrite its tracks, video and report without detecting or embedding again."""
    from reid_merge.plan import apply_plan, parse_merge

    def job(reporter: Reporter) -> RunResult:
        merges = [parse_merge(value) for value in merge]
        return apply_plan(run_dir, merges, split, plan, write_video=not no_video, ground_truth=gt, reporter=reporter)

    _execute(debug, job)


def main() -> None:
    app(prog_name="reid-merge")
