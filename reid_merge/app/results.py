"""What a run tells its caller while it works (`Reporter`) and when it is done (`RunResult`).

A result renders itself as the tables the command line prints, so that a script that calls
the library can print the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

#: The scores a run against ground truth shows, and their labels.
SCORE_ROWS = (
    ("idf1", "IDF1"),
    ("hota", "HOTA"),
    ("assa", "AssA"),
    ("mota", "MOTA"),
    ("id_switches", "ID switches"),
    ("num_pred_ids", "IDs"),
    ("num_gt_ids", "true IDs"),
)


class Reporter:
    """Receives progress and notes from the pipeline; this base class ignores them."""

    def start(self, stage: str, total: int | None) -> None:
        """A stage begins; `total` is its number of steps when known."""

    def advance(self, stage: str, amount: int = 1) -> None:
        """`amount` more steps of `stage` are done."""

    def finish(self, stage: str) -> None:
        """The stage is over."""

    def note(self, message: str) -> None:
        """Something the user should know (which model was used, a fallback taken)."""


@dataclass
class RunResult:
    """What a run produced, for the CLI's summary and for callers of the library."""

    out_dir: Path
    frames: int
    raw_tracks: int
    persons: int
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    scores: dict[str, dict[str, float | int]] | None = None
    tracks_joined: int = 0
    left_alone: dict[str, int] = field(default_factory=dict)
    boxes_filled: int = 0
    boxes_backfilled: int | None = None  # None: the run did not backfill (`merge`, `apply`)
    doubles_left_out: int = 0

    def table(self) -> Table:
        """The summary: what the merge changed, the time each stage took, the files written."""
        table = Table(title="reid-merge", show_header=False, title_justify="left")
        table.add_row("frames", str(self.frames))
        table.add_row("raw tracks -> persons", f"{self.raw_tracks} -> {self.persons}")
        if self.doubles_left_out:
            table.add_row("persons left out", f"{self.doubles_left_out} (boxed twice: each box over a longer person's)")
        table.add_row("tracks joined", f"{self.tracks_joined} (tracks now one person with another track)")
        left_alone = {why: n for why, n in self.left_alone.items() if n}
        if left_alone:
            reasons = ", ".join(f"{n} {why}" for why, n in left_alone.items())
            table.add_row("tracks left alone", f"{sum(left_alone.values())}: {reasons}")
        if self.boxes_backfilled is not None:
            table.add_row("boxes backfilled", f"{self.boxes_backfilled} (the first moments of tracks)")
        table.add_row("boxes filled", f"{self.boxes_filled} (dashed in annotated.mp4)" if self.boxes_filled else "0")
        for stage, seconds in self.timings.items():
            table.add_row(f"time: {stage}", f"{seconds:.2f} s")
        table.add_row("time: total", f"{sum(self.timings.values()):.2f} s")
        for name, path in self.outputs.items():
            table.add_row(name, str(path))
        return table

    def scores_table(self) -> Table | None:
        """Raw and merged tracks against ground truth; None when the run had none."""
        if self.scores is None:
            return None
        scores = Table(title="against ground truth", title_justify="left")
        scores.add_column("")
        scores.add_column("raw", justify="right")
        scores.add_column("merged", justify="right")
        raw, merged = self.scores["raw"], self.scores["merged"]
        for key, label in SCORE_ROWS:
            fmt = (lambda v: f"{100 * v:.1f}%") if isinstance(raw[key], float) else str
            scores.add_row(label, fmt(raw[key]), fmt(merged[key]))
        return scores
