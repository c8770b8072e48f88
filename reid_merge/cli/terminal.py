"""What the user sees on stderr: progress bars, notes, and one line per error with its exit code.

Shared by every command (`run`, `merge`, `batch`, `apply`, `models`), so that an error reads and
exits the same wherever it happens.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
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

from reid_merge.app.results import Reporter
from reid_merge.errors import ReidMergeError

console = Console(stderr=True, highlight=False)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM

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


def progress_bars() -> Progress:
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
def user_errors(debug: bool) -> Iterator[None]:
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
        print_line(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print_line(f"[red]{'terminated' if terminated else 'interrupted'}:[/] previous outputs left as they were")
        raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message = escape(f"{exc.__class__.__name__}: {exc}")
        hint = "" if debug else " (run with --debug for the traceback)"
        print_line(f"[red]internal error:[/] {message}{hint}")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def print_line(markup: str) -> None:
    """One line on stderr however narrow the terminal: messages are grepped and logged."""
    console.print(markup, soft_wrap=True)
