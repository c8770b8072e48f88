"""The ``reid-merge`` command: options → Config → one library call → summary → exit code.

Exit codes: 0 success, 1 internal error (a bug), 2 usage (bad options or config), 3 input
(missing or malformed video/tracks, unwritable output), 4 model (weights missing or wrong),
5 batch ran but at least one video failed, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from reid_merge.app.config import SECTIONS
from reid_merge.app.plan import parse_merge
from reid_merge.app.results import Reporter, RunResult
from reid_merge.app.run_folder import REPORT_HTML
from reid_merge.cli.models import models_app
from reid_merge.cli.settings import GivenSettings, settings_options
from reid_merge.cli.terminal import RichReporter, console, progress_bars, user_errors
from reid_merge.io.tracks_io import read_tracks

app = typer.Typer(
    help="Repair fragmented person tracks in videos: one person, one ID.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.add_typer(models_app, name="weights", hidden=True)  # the name issue 4 also used

#: `merge` takes existing tracks: every setting but those of detection and tracking.
MERGE_SECTIONS = tuple(section for section in SECTIONS if section != "detection")


def _execute(debug: bool, job: Callable[[Reporter], RunResult]) -> None:
    """Run a job with progress bars, then print its summary."""
    if not debug:
        os.environ.setdefault("YOLO_VERBOSE", "False")
    with user_errors(debug), progress_bars() as progress:
        result = job(RichReporter(progress))
    _print_summary(result)


def _print_summary(result: RunResult) -> None:
    console.print(result.table())
    scores = result.scores_table()
    if scores is not None:
        console.print(scores)
    if REPORT_HTML in result.outputs:
        console.print(f"what was joined and why: {result.outputs[REPORT_HTML]}", soft_wrap=True)


OutputOpt = typer.Option(None, "-o", "--output", help="Output folder \\[default: runs/<video name>].")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")
GtOpt = typer.Option(None, "--gt", help="Ground truth (MOTChallenge gt.txt): score raw and merged tracks.")


def _default_out(video: Path) -> Path:
    return Path("runs") / (video.stem if video.suffix else video.name)


@app.command()
@settings_options()
def run(
    video: Path = typer.Argument(..., help="Video file (mp4/avi/mov/mkv) or MOTChallenge sequence folder."),
    output: Path | None = OutputOpt,
    gt: Path | None = GtOpt,
    debug: bool = DebugOpt,
    *,
    settings: GivenSettings,
) -> None:
    """Detect and track people in VIDEO, merge fragmented tracks into persons, write the outputs."""
    from reid_merge.app.pipeline import run_video  # here: OpenCV and PyAV stay off the start-up path

    def job(reporter: Reporter) -> RunResult:
        return run_video(video, output or _default_out(video), settings.config(), reporter, ground_truth=gt)

    _execute(debug, job)


@app.command()
@settings_options(*MERGE_SECTIONS)
def merge(
    tracks: Path = typer.Argument(..., help="Tracks from any tracker: MOTChallenge txt or reid-merge tracks.json."),
    video: Path = typer.Option(..., "--video", help="The video (or sequence folder) the tracks belong to."),
    output: Path | None = OutputOpt,
    gt: Path | None = GtOpt,
    debug: bool = DebugOpt,
    *,
    settings: GivenSettings,
) -> None:
    """Merge existing TRACKS of VIDEO into persons (no detection or tracking)."""
    from reid_merge.app.pipeline import merge_tracks_file  # here: OpenCV and PyAV stay off the start-up path

    def job(reporter: Reporter) -> RunResult:
        out = output or _default_out(video)
        return merge_tracks_file(tracks, video, out, settings.config(), reporter, ground_truth=gt)

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
    from reid_merge.eval.scores import evaluate, read_ground_truth  # here: TrackEval stays off the start-up path

    with user_errors(debug):
        scores = evaluate(read_tracks(pred), read_ground_truth(gt), iou_threshold=iou)
    if as_json:
        print(json.dumps(scores.to_dict(), indent=1))
        return
    table = Table(title=f"{pred} vs {gt}", show_header=False, title_justify="left")
    for label, value in scores.rows():
        table.add_row(label, value)
    Console().print(table)


@app.command()
@settings_options()
def batch(
    source: str = typer.Argument(
        ..., help="Folder (searched recursively) or quoted glob of videos and MOTChallenge sequence folders."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Output root, one folder per input at its relative path \\[default: runs/<folder>].",
    ),
    jobs: int | None = typer.Option(
        None,
        "-j",
        "--jobs",
        help="Videos at a time \\[default local: 2 per GPU, else 1 per core, 2 GiB each; ray: what the cluster fits].",
    ),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Skip videos whose outputs are complete for the same input and settings."
    ),
    executor: str = typer.Option("local", "--executor", help="local (worker processes) or ray (a Ray cluster)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to use \\[default: $RAY_ADDRESS, else a local Ray instance]."
    ),
    debug: bool = DebugOpt,
    *,
    settings: GivenSettings,
) -> None:
    """Process every video under SOURCE into its own folder, then write summary.csv and summary.json.

    A video that fails gets a row that says why and the others go on; the exit code is then 5.
    """
    from reid_merge.app.batch import EXIT_SOME_FAILED, run_batch, split_glob  # here: as run_video

    if not debug:
        os.environ.setdefault("YOLO_VERBOSE", "False")
    with user_errors(debug), progress_bars() as progress:
        config = settings.config()
        out_root = output or Path("runs") / (split_glob(source)[0].resolve().name or "batch")
        summary = run_batch(
            source,
            out_root,
            config,
            jobs=jobs,
            resume=resume,
            executor=executor,
            ray_address=ray_address,
            reporter=RichReporter(progress),
        )
    console.print(summary.table())
    counts = summary.counts()
    console.print(
        f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed in {summary.seconds:.1f} s; "
        f"summary: {summary.files['summary.csv']}, {summary.files['summary.json']}"
    )
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


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
    drop_doubles: bool | None = typer.Option(
        None,
        "--drop-doubles/--no-drop-doubles",
        help="Leave out persons boxed twice, or keep them (default: as the run did).",
    ),
    debug: bool = DebugOpt,
) -> None:
    """Correct a run by hand: rewrite its tracks, video and report without detecting or embedding again."""
    from reid_merge.app.apply import apply_plan  # here: OpenCV and PyAV stay off the start-up path

    def job(reporter: Reporter) -> RunResult:
        merges = [parse_merge(value) for value in merge]
        return apply_plan(
            run_dir,
            merges,
            split,
            plan,
            write_video=not no_video,
            ground_truth=gt,
            drop_doubles=drop_doubles,
            reporter=reporter,
        )

    _execute(debug, job)


def main() -> None:
    app(prog_name="reid-merge")
