"""The ``reid-merge`` command: options → Config → one library call → summary → exit code.

Exit codes: 0 success, 1 internal error (a bug), 2 usage (bad options or config), 3 input
(missing or malformed video/tracks, unwritable output), 4 model (weights missing or wrong),
130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from reid_merge.config import Config, load_config
from reid_merge.errors import ReidMergeError
from reid_merge.pipeline import Reporter, RunResult

app = typer.Typer(
    help="Repair fragmented person tracks in videos: one person, one ID.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, highlight=False)

SCORE_ROWS = (
    ("idf1", "IDF1"),
    ("hota", "HOTA"),
    ("assa", "AssA"),
    ("mota", "MOTA"),
    ("id_switches", "ID switches"),
    ("num_pred_ids", "IDs"),
    ("num_gt_ids", "true IDs"),
)
STAGE_LABELS = {"track": "detect + track", "decode": "decode + crops", "embed": "embed crops", "video": "write video"}


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
        self.progress.console.print(f"[cyan]note:[/] {message}")


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


@contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    """Turn errors into one line on stderr and an exit code; --debug lets them through."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        yield
    except ReidMergeError as exc:
        if debug:
            raise
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        console.print(f"[red]internal error:[/] {exc.__class__.__name__}: {exc} (run with --debug for the traceback)")
        raise typer.Exit(1) from None


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
    table.add_row("raw tracks", str(result.raw_tracks))
    table.add_row("persons", str(result.persons))
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


def _settings(config_file: Path | None, **overrides: Any) -> Config:
    return load_config(config_file).with_overrides(**overrides)


ConfigOpt = typer.Option(None, "--config", help="YAML file of settings (see configs/default.yaml).")
OutputOpt = typer.Option(None, "-o", "--output", help="Output folder [default: runs/<video name>].")
DeviceOpt = typer.Option(None, "--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")
CropsOpt = typer.Option(None, "--crops", help="Crops sampled per track [default: 16].")
ThresholdOpt = typer.Option(None, "--threshold", help="Merge while average distance (1 - similarity) <= this, 0..2.")
PersonsOpt = typer.Option(None, "--persons", help="Stop at this many persons when you know how many there are.")
AggregationOpt = typer.Option(
    None, "--aggregation", help="Crop-block aggregation: mean, median, max, min, trimmed_mean or centroid."
)
CriterionOpt = typer.Option(None, "--criterion", help="Clustering: average (linkage) or dbc (dispersion-based).")
DispersionOpt = typer.Option(None, "--dispersion-weight", help="λ of --criterion dbc [default: 0.1].")
SplitOpt = typer.Option(None, "--split-impure/--no-split-impure", help="Split tracks whose crops show two people.")
ReidModelOpt = typer.Option(
    None, "--reid-model", help="Re-identification architecture, e.g. osnet_x1_0 [default: auto]."
)
ReidWeightsOpt = typer.Option(None, "--reid-weights", help="Checkpoint file for --reid-model.")
NoVideoOpt = typer.Option(False, "--no-video", help="Do not write annotated.mp4.")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")
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
    detector: str | None = typer.Option(
        None, "--detector", help="auto, offline, an ultralytics name (yolo11n.pt) or a .pt path."
    ),
    tracker: str | None = typer.Option(None, "--tracker", help="bytetrack, botsort or a tracker .yaml file."),
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


def main() -> None:
    app(prog_name="reid-merge")
