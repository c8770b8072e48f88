"""The summary of a batch: one row per video, written as summary.csv and summary.json and shown as a table."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

from reid_merge import __version__
from reid_merge.app.config import Config
from reid_merge.io.atomic import write_text_atomic

Status = Literal["done", "skipped", "failed"]

SUMMARY_FORMAT = "reid-merge-batch-summary"
SUMMARY_COLUMNS = (
    "video",
    "frames",
    "raw_tracks",
    "persons",
    "seconds",
    "status",
    "error",
    "out_dir",
    "worker",
    "models_loaded",
)


@dataclass
class BatchResult:
    """One row of the summary."""

    video: str
    status: Status
    out_dir: str = ""
    frames: int | None = None
    raw_tracks: int | None = None
    persons: int | None = None
    seconds: float = 0.0
    error: str = ""
    worker: str = ""
    models_loaded: bool = False  # this video's worker loaded the models for it (its first video)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchSummary:
    """What a batch did, in input order; renders itself as CSV and JSON."""

    source: str
    out_root: Path
    executor: str
    jobs: int | None  # None: nothing ran, or Ray ran as many as the cluster fits
    config: Config
    results: list[BatchResult]
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in ("done", "skipped", "failed")}

    @property
    def failed(self) -> int:
        return self.counts()["failed"]

    def to_json(self) -> str:
        document = {
            "format": SUMMARY_FORMAT,
            "version": 1,
            "tool": {"name": "reid-merge", "version": __version__},
            "source": self.source,
            "out_root": str(self.out_root),
            "executor": self.executor,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "parameters": self.config.to_dict(),
            "videos": [r.to_dict() for r in self.results],
        }
        return json.dumps(document, indent=1) + "\n"

    def table(self) -> Table:
        """One row per video; errors cut to one line here (summary.csv has them whole)."""
        table = Table(title=f"reid-merge batch: {self.out_root}", title_justify="left")
        table.add_column("video", overflow="fold")
        table.add_column("status", no_wrap=True)
        for column in ("frames", "tracks", "persons", "seconds"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("error", overflow="fold")
        colours = {"done": "green", "skipped": "cyan", "failed": "red"}
        for row in self.results:
            numbers = [str(v) if v is not None else "" for v in (row.frames, row.raw_tracks, row.persons)]
            # Input errors start with the input's absolute path, which the row already names.
            error = row.error.split(": ", 1)[1] if row.error.startswith("/") and ": " in row.error else row.error
            table.add_row(row.video, f"[{colours[row.status]}]{row.status}[/]", *numbers, f"{row.seconds:.1f}", error)
        return table

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for result in self.results:
            row = result.to_dict()
            writer.writerow({k: "" if row[k] is None else row[k] for k in SUMMARY_COLUMNS})
        return buffer.getvalue()


def write_summary(summary: BatchSummary) -> dict[str, Path]:
    """summary.csv and summary.json in the output root, each written atomically."""
    files = {"summary.csv": summary.out_root / "summary.csv", "summary.json": summary.out_root / "summary.json"}
    write_text_atomic(files["summary.csv"], summary.to_csv())
    write_text_atomic(files["summary.json"], summary.to_json())
    return files


def read_summary(path: Path) -> list[BatchResult]:
    """The rows of a summary.json (for scripts and tests)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    names = {f.name for f in fields(BatchResult)}
    return [BatchResult(**{k: v for k, v in row.items() if k in names}) for row in document["videos"]]
