"""Many videos in one job: find them, skip the finished ones, run the rest in parallel, summarise.

The stages are plain functions, one module each: `inputs.plan_batch` (discovery: one
`BatchItem` per input, each with its own output folder) → `run_batch` here (the resume check
of `resume`, then an executor: `workers.run_local`, worker processes, or `ray_tasks.run_ray`,
Ray tasks) → `summary.write_summary` (summary.csv and summary.json). Every worker runs
`workers.process_item`, which keeps the loaded models for the life of its process, so each
worker loads them once, not once per video.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reid_merge.app.batch.inputs import BatchItem, find_inputs, plan_batch, relative_path, split_glob
from reid_merge.app.batch.ray_tasks import run_ray
from reid_merge.app.batch.resume import RECORD_NAME, fingerprint_input, is_complete, read_record, resume_key
from reid_merge.app.batch.summary import BatchResult, BatchSummary, read_summary, write_summary
from reid_merge.app.batch.workers import available_memory, cores, cuda_devices, default_jobs, run_local
from reid_merge.app.config import Config
from reid_merge.app.results import Reporter
from reid_merge.errors import InputError, UsageError
from reid_merge.io.video import VIDEO_SUFFIXES, probe_video

__all__ = [
    "EXIT_SOME_FAILED",
    "RECORD_NAME",
    "BatchItem",
    "BatchResult",
    "BatchSummary",
    "find_inputs",
    "fingerprint_input",
    "is_complete",
    "plan_batch",
    "read_record",
    "read_summary",
    "resume_key",
    "run_batch",
    "split_glob",
]

EXECUTORS: tuple[str, ...] = ("local", "ray")
#: Exit code of ``reid-merge batch`` when the batch ran but at least one video failed.
EXIT_SOME_FAILED = 5


def run_batch(
    root_or_glob: str | Path,
    out_root: Path,
    config: Config,
    *,
    jobs: int | None = None,
    resume: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    reporter: Reporter | None = None,
) -> BatchSummary:
    """Process every video under `root_or_glob` into ``out_root/<relative path>/``.

    Videos whose outputs are complete for the same input and settings are skipped (unless
    `resume` is False). A video that fails gets a 'failed' row and the batch goes on.
    Writes ``summary.csv`` and ``summary.json`` into `out_root`.

    Raises:
        UsageError: Bad `jobs` or `executor`, Ray missing or unreachable.
        InputError: Nothing to process, or an unwritable output root.
        ModelError: The models cannot be loaded (every video would fail).
    """
    if executor not in EXECUTORS:
        raise UsageError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"jobs: expected >= 1, got {jobs}")
    reporter = reporter or Reporter()
    start = time.perf_counter()
    items = plan_batch(root_or_glob, out_root)
    if not items and _inside(Path(root_or_glob), out_root):
        raise InputError(
            f"{root_or_glob}: is inside the output root {out_root}, whose videos are outputs, not inputs; "
            "write the outputs elsewhere (-o)"
        )
    if not items:
        raise InputError(f"{root_or_glob}: no video files ({', '.join(VIDEO_SUFFIXES)}) or sequence folders found")
    _check_out_root(out_root)
    results: dict[str, BatchResult] = {}
    by_name = {item.name: item for item in items}

    def finish(result: BatchResult) -> None:
        item = by_name[result.video]
        result.out_dir = str(relative_path(item.out_dir, out_root.resolve()).as_posix())
        results[result.video] = result
        if result.status == "failed":
            reporter.note(f"{result.video}: failed: {result.error}")
        reporter.advance("videos")

    reporter.start("videos", len(items))
    todo = []
    for item in items:
        try:
            skipped = _skipped(item, config) if resume else None
            if skipped is None:
                probe_video(item.video)  # an unreadable input fails here, without starting a worker
        except InputError as exc:
            finish(BatchResult(video=item.name, status="failed", error=str(exc)))
            continue
        if skipped is not None:
            finish(skipped)
        else:
            todo.append(item)
    used_jobs: int | None = None
    if todo and executor == "local":
        _check_local_settings(config)
        used_jobs = min(jobs or default_jobs(cuda_devices(config), cores(), available_memory()), len(todo))
        run_local(todo, config, used_jobs, finish)
    elif todo:
        run_ray(todo, config, jobs, ray_address, finish)
        used_jobs = jobs
    reporter.finish("videos")
    summary = BatchSummary(
        source=str(root_or_glob),
        out_root=out_root,
        executor=executor,
        jobs=used_jobs,
        config=config,
        results=[results[item.name] for item in items],
        seconds=time.perf_counter() - start,
    )
    summary.files = write_summary(summary)
    return summary


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (both resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_local_settings(config: Config) -> None:
    """Settings mistakes that every video would hit, reported before any worker starts."""
    from reid_merge.models.embedding import resolve_device  # here: torch and ultralytics stay off the
    from reid_merge.models.tracking import check_tracker_config  # command's start-up path

    check_tracker_config(config.tracker)
    resolve_device(config.device)


def _check_out_root(out_root: Path) -> None:
    if out_root.exists() and not out_root.is_dir():
        raise InputError(f"{out_root}: exists and is not a folder")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_root}: the output folder cannot be created ({exc.strerror})") from None
    if not os.access(out_root, os.W_OK):
        raise InputError(f"{out_root}: the output folder is not writable")


def _skipped(item: BatchItem, config: Config) -> BatchResult | None:
    """A 'skipped' row when the item's outputs are complete for this input and these settings."""
    record = read_record(item.out_dir)
    if record is None:
        return None
    fingerprint = fingerprint_input(item.video, record.get("input"))
    if not is_complete(item.out_dir, resume_key(fingerprint["sha256"], config), record):
        return None
    summary = record.get("summary", {})
    return BatchResult(
        video=item.name,
        status="skipped",
        frames=summary.get("frames"),
        raw_tracks=summary.get("raw_tracks"),
        persons=summary.get("persons"),
    )
