"""``reid-merge models``: list the known models, download one into the cache, export to ONNX.

Thin like the other commands: options → one library call (registry, download, onnx_embedding)
→ a table or a line → exit code. Errors go through the same one-line handler as ``run``.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reid_merge.cli.terminal import console, print_line, user_errors
from reid_merge.errors import UsageError
from reid_merge.models import registry
from reid_merge.models.download import fetch_model, locate
from reid_merge.models.registry import MODELS, ModelEntry
from reid_merge.models.weights import cache_dir, sha256_file

models_app = typer.Typer(
    help="Detectors and re-identification models: what is known, what is here, fetch and export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CacheOpt = typer.Option(
    None, "--cache-dir", help="Weight cache [default: $REID_MERGE_CACHE, else $XDG_CACHE_HOME/reid-merge]."
)
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")


def _use_cache(folder: Path | None) -> Path:
    """`--cache-dir` for this process (and the loaders it calls) and the folder in effect."""

    if folder is not None:
        os.environ["REID_MERGE_CACHE"] = str(folder.expanduser().absolute())
    return cache_dir()


def model_rows(with_sha256: bool = True) -> list[dict[str, Any]]:
    """One dict per registry entry: what `models list` shows (and prints with --json)."""

    rows = []
    for entry in MODELS:
        path = locate(entry)
        sha256 = sha256_file(path) if path is not None and with_sha256 else None
        rows.append(
            {
                "kind": entry.kind,
                "name": entry.name,
                "architecture": entry.architecture,
                "trained_on": entry.training_set,
                "sources": [f"PyPI {entry.package}"] if entry.offline else [s.url for s in entry.sources],
                "present": path is not None,
                "path": str(path) if path is not None else None,
                "sha256": sha256,
                # verified: a source publishes this sha256; unverified: no digest known, so the
                # file is checked only by loading it; mismatch: refused when used.
                "verified": entry.digest_status(sha256) if sha256 is not None else None,
            }
        )
    return rows


#: How `models list` shows `ModelEntry.digest_status`.
_CHECKED = {"verified": "[green]sha256[/]", "unverified": "loading", "mismatch": "[red]sha256 mismatch[/]"}


def _hosts(row: dict[str, Any]) -> str:
    from urllib.parse import urlparse

    hosts = [urlparse(s).hostname or s for s in row["sources"]]
    return ", ".join(dict.fromkeys(hosts))


@models_app.command("list")
def list_models(
    cache: Path | None = CacheOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON on stdout."),
    debug: bool = DebugOpt,
) -> None:
    """Every detector and re-identification model the tool knows, and which are on this machine."""

    with user_errors(debug):
        folder = _use_cache(cache)
        rows = model_rows()
    if as_json:
        print(json.dumps({"cache": str(folder), "models": rows}, indent=1))
        return
    table = Table(title=f"reid-merge models (cache: {folder})", title_justify="left")
    for column in ("kind", "name", "trained on", "source", "present", "checked", "path", "sha256"):
        table.add_column(column, overflow="fold", no_wrap=column in ("kind", "name", "present"))
    for row in rows:
        table.add_row(
            row["kind"],
            row["name"],
            row["trained_on"],
            _hosts(row),
            "[green]yes[/]" if row["present"] else "no",
            _CHECKED.get(row["verified"], ""),
            escape(row["path"] or ""),
            f"{row['sha256'][:16]}…" if row["sha256"] else "",
        )
    Console().print(table)
    print(
        f"{sum(r['present'] for r in rows)} of {len(rows)} present; full sha256 with --json; "
        "checked: 'sha256' = a source publishes this digest, 'loading' = no digest known, checked by loading it"
    )


def verify_model_file(entry: ModelEntry, path: Path) -> None:
    """Raise `ModelError` unless `path` loads as `entry`'s model (the check when no digest is known)."""
    if entry.kind == "reid":
        from reid_merge.models.embedding import load_reid_model  # torch: off the start-up path

        load_reid_model(entry.architecture, path)
    else:
        from reid_merge.models.tracking import load_detector  # ultralytics: off the start-up path

        load_detector(str(path))


@models_app.command("download")
def download_model(
    name: str = typer.Argument(..., help="A name from `reid-merge models list`, e.g. osnet_x0_25_msmt17_combineall."),
    cache: Path | None = CacheOpt,
    force: bool = typer.Option(False, "--force", help="Download again even when the file is present."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a connection and for each read."),
    deadline: float = typer.Option(1200.0, "--deadline", help="Seconds each mirror may take in all."),
    debug: bool = DebugOpt,
) -> None:
    """Fetch NAME into the cache: mirrors in order, checked, then renamed into place."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with user_errors(debug):
        folder = _use_cache(cache)
        try:
            entry = registry.get(name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        for option, value in (("--timeout", timeout), ("--deadline", deadline)):
            if not 0 < value < float("inf"):
                raise UsageError(f"{option}: expected a number of seconds > 0, got {value}")
        columns = (TextColumn(f"{name:<20}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(name, total=None)

            def advance(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            path, fetched = fetch_model(
                entry,
                folder,
                verify=lambda tmp: verify_model_file(entry, tmp),
                force=force,
                timeout=timeout,
                deadline=deadline,
                progress=advance,
            )
    verb = "downloaded" if fetched else "already present"
    print_line(f"{escape(entry.name)}: {verb}: {escape(str(path))} (sha256 {sha256_file(path)})")


@models_app.command("export")
def export_model(
    model: str = typer.Argument(
        ..., help="Re-identification model: a name from `models list`, an architecture, or auto."
    ),
    weights: Path | None = typer.Option(None, "--reid-weights", help="Checkpoint file to export [default: cached]."),
    export_format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="File to write [default: beside the cache's]."),
    cache: Path | None = CacheOpt,
    debug: bool = DebugOpt,
) -> None:
    """Export a re-identification model for onnxruntime (then: run --reid-weights FILE.onnx)."""

    with user_errors(debug):
        folder = _use_cache(cache)
        if export_format.lower() != "onnx":
            raise UsageError(f"--format: only onnx is supported, got {export_format!r}")
        from reid_merge.models.embedding import load_reid_model  # torch: off the start-up path
        from reid_merge.models.onnx_embedding import export_onnx  # onnx: an optional extra

        module, architecture, path, source = load_reid_model(model, weights)
        out = output if output is not None else folder / f"{path.name.split('.')[0]}.onnx"
        export_onnx(module, architecture, out, source_weights=path, source_sha256=sha256_file(path), source=source)
    print_line(
        f"{architecture} from {escape(str(path))} -> {escape(str(out))}; "
        f"use it with --reid-weights {escape(shlex.quote(str(out)))}"
    )
