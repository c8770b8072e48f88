"""Many videos in one job: find them, skip the finished ones, run the rest in parallel, summarise.

The stages are plain functions: `find_inputs` (discovery) → `plan_batch` (one `BatchItem`
per input, each with its own output folder) → `run_batch` (resume check, then an executor:
local worker processes or Ray tasks) → `write_summary` (summary.csv and summary.json).
Every worker runs `process_item`, which keeps the loaded models for the life of its
process, so each worker loads them once, not once per video.

Resume. After a video's outputs are written, its folder gets a record,
``.reid-merge-input.json``, holding the resume key: sha256 over the input's sha256, every
setting of the run that can change its outputs (all but `embed_batch_size`) and the tool's
version. A folder is complete when the record's key
equals the key of this run and every output it lists, tracks.json included, is on disk.
A worker deletes the record before it starts on a folder and writes the new one
(atomically) only after the pipeline has written tracks.json, so a run killed at any
point leaves no folder that looks complete.

The input's sha256 covers every byte (a video file; a sequence's seqinfo.ini and frames).
The record also keeps a digest of the files' sizes and modification times: while those are
unchanged the recorded sha256 is trusted, so a second run over finished videos reads no
video and takes seconds; when they change the bytes are hashed again and a mere touch or
copy does not force a rerun. Hashing whole files costs about a second per GB, far less
than processing them, and unlike a hash of the first and last MiB it notices any change.
"""

from __future__ import annotations

import configparser
import contextlib
import csv
import glob
import hashlib
import io
import json
import logging
import multiprocessing
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

from reid_merge import __version__
from reid_merge.app.config import Config
from reid_merge.app.pipeline import Models, Reporter, load_models, run_video
from reid_merge.errors import InputError, ReidMergeError, UsageError
from reid_merge.io.atomic import remove_stale_temps, write_text_atomic
from reid_merge.io.video import VIDEO_SUFFIXES, probe_video

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]
Executor = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")

RECORD_NAME = ".reid-merge-input.json"
RECORD_FORMAT = "reid-merge-batch-record"
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
#: Exit code of ``reid-merge batch`` when the batch ran but at least one video failed.
EXIT_SOME_FAILED = 5

_CHUNK = 1 << 20
_GLOB_CHARS = frozenset("*?[")
# On the CPU, one single-threaded worker per core: on 2 cores, two TUD videos took 62-64 s
# with 2 workers of 1 thread and 93 s (293 s when other processes competed for the cores)
# with 1 worker of 2 threads; decoding, tracking and crop sampling run on one thread anyway.
# A worker with both models peaked at 1.7 GB resident, hence 2 GiB of memory per worker.
_MEMORY_PER_WORKER = 2 << 30
# Workers sharing one GPU: one decodes and tracks on the CPU while the other's network runs.
_WORKERS_PER_GPU = 2


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and where its outputs go (absolute paths, so any worker finds them)."""

    video: Path
    out_dir: Path
    name: str  # the input's path relative to the batch root, as the summary shows it


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


# --- discovery -------------------------------------------------------------------------


def is_sequence(folder: Path) -> bool:
    """A MOTChallenge sequence folder: it holds seqinfo.ini."""
    return (folder / "seqinfo.ini").is_file()


def _is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _is_output_folder(folder: Path) -> bool:
    """A folder this tool wrote into (its videos are outputs, not inputs)."""
    return (folder / RECORD_NAME).is_file() or (folder / "tracks.json").is_file()


def split_glob(root_or_glob: str | Path) -> tuple[Path, str | None]:
    """The folder a search starts from, and the glob pattern when the argument is one.

    >>> split_glob("videos/**/*.mp4")
    (PosixPath('videos'), 'videos/**/*.mp4')
    >>> split_glob("videos")
    (PosixPath('videos'), None)
    """
    text = str(root_or_glob)
    path = Path(text)
    if path.exists() or not _GLOB_CHARS & set(text):
        return path, None
    parts = path.parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    return Path(*parts[:first]) if first else Path("."), text


def find_inputs(root_or_glob: str | Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every video file and MOTChallenge sequence folder under a folder or matching a glob.

    Folders are searched recursively; a sequence folder (with seqinfo.ini) is an input and
    is not searched further. Hidden files and folders, folders in `exclude` (the batch's
    output root) and folders this tool wrote into are skipped. Returns sorted paths, each
    input once.

    Raises:
        InputError: The folder, file or glob names nothing that exists.
    """
    root, pattern = split_glob(root_or_glob)
    excluded = {p.resolve() for p in exclude}
    if pattern is None:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        starts = [root]
    else:
        starts = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
        if not starts:
            raise InputError(f"{pattern}: the pattern matches no file or folder")
    found: dict[Path, Path] = {}
    for start in starts:
        for path in _walk_inputs(start, excluded):
            found.setdefault(path.resolve(), path)
    return sorted(found.values())


def _walk_inputs(start: Path, excluded: set[Path]) -> Iterable[Path]:
    if start.is_file():
        if _is_video_file(start) and not excluded & set(start.resolve().parents):
            yield start
        return
    if not start.is_dir() or start.resolve() in excluded or excluded & set(start.resolve().parents):
        return
    if is_sequence(start):
        yield start
        return
    for folder, subfolders, files in os.walk(start):
        here = Path(folder)
        keep = []
        for name in sorted(subfolders):
            sub = here / name
            if name.startswith(".") or sub.resolve() in excluded or _is_output_folder(sub):
                continue
            if is_sequence(sub):
                yield sub
            else:
                keep.append(name)
        subfolders[:] = keep
        for name in sorted(files):
            if _is_video_file(here / name):
                yield here / name


def plan_batch(root_or_glob: str | Path, out_root: Path, exclude: Sequence[Path] = ()) -> list[BatchItem]:
    """One item per input: ``out_root/<path relative to the root, without suffix>/``.

    Two inputs that would share a folder (``a.mp4`` and ``a.avi``, or a sequence folder
    ``a`` beside ``a.mp4``) keep their suffix in the folder name (``a_mp4``).
    """
    base, _ = split_glob(root_or_glob)
    base = base.resolve()
    if base.is_file():
        base = base.parent
    inputs = find_inputs(root_or_glob, exclude=(out_root, *exclude))
    relative = [_relative(path.resolve(), base) for path in inputs]
    stems = [rel.with_suffix("") if path.is_file() else rel for path, rel in zip(inputs, relative)]
    taken: dict[Path, int] = {}
    for stem in stems:
        taken[stem] = taken.get(stem, 0) + 1
    items = []
    root = out_root.resolve()
    for path, rel, stem in zip(inputs, relative, stems):
        folder = stem
        if taken[stem] > 1 and path.is_file():
            folder = rel.with_name(rel.name.replace(".", "_"))
        items.append(BatchItem(video=path.resolve(), out_dir=root / folder, name=rel.as_posix()))
    return items


def _relative(path: Path, base: Path) -> Path:
    try:
        return path.relative_to(base)
    except ValueError:  # a glob may reach outside its base (``../x/*.mp4``): the whole path, made relative
        return Path(*path.parts[1:])


# --- resume ----------------------------------------------------------------------------


def _input_files(video: Path) -> list[Path]:
    """The files whose bytes make the input: the video, or seqinfo.ini and the frames."""
    if not video.is_dir():
        return [video]
    files = [video / "seqinfo.ini"]
    parser = configparser.ConfigParser()
    try:
        parser.read(video / "seqinfo.ini", encoding="utf-8")
        image_dir = video / parser["Sequence"].get("imDir", "img1")
    except (configparser.Error, KeyError, UnicodeDecodeError):
        return files  # a malformed sequence; the run itself says what is wrong
    if image_dir.is_dir():
        files += sorted(p for p in image_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    return files


def fingerprint_input(video: Path, previous: dict[str, Any] | None = None) -> dict[str, str]:
    """``{"sha256": digest of the bytes, "stat": digest of names, sizes and mtimes}``.

    When `previous` (a fingerprint read from a record) has the same ``stat``, its
    ``sha256`` is reused without reading the input.

    Raises:
        InputError: A file of the input cannot be read.
    """
    files = _input_files(video)
    try:
        stats = [(p.relative_to(video).as_posix() if p != video else "", p.stat()) for p in files]
        stat = hashlib.sha256(
            "".join(f"{name}\0{s.st_size}\0{s.st_mtime_ns}\n" for name, s in stats).encode()
        ).hexdigest()
        if previous is not None and previous.get("stat") == stat and isinstance(previous.get("sha256"), str):
            return {"sha256": previous["sha256"], "stat": stat}
        digest = hashlib.sha256()
        for (name, _), path in zip(stats, files):
            digest.update(name.encode() + b"\0")
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{video}: cannot be read ({exc.strerror or exc})") from None
    return {"sha256": digest.hexdigest(), "stat": stat}


def resume_key(input_sha256: str, config: Config) -> str:
    """sha256 over the input's digest, the settings that shape results and the tool's version."""
    material = {"input_sha256": input_sha256, "settings": config.subset("shapes_results"), "tool_version": __version__}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def read_record(out_dir: Path) -> dict[str, Any] | None:
    """The resume record in `out_dir`, or None when it is missing or unreadable."""
    try:
        record = json.loads((out_dir / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    return record


def is_complete(out_dir: Path, key: str, record: dict[str, Any] | None) -> bool:
    """The record matches `key` and every output it lists (tracks.json at least) is on disk."""
    if record is None or record.get("key") != key:
        return False
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or "tracks.json" not in outputs:
        return False
    return all(isinstance(name, str) and (out_dir / name).is_file() for name in outputs)


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


# --- the worker --------------------------------------------------------------------------

# Models loaded in this process, keyed by the settings that choose them: a worker process
# (pool worker or Ray worker) loads them for its first video and reuses them afterwards.
_LOADED_MODELS: dict[str, Models] = {}


def _models_for(config: Config) -> tuple[Models, bool]:
    """The models `config` names, loaded once per process; and whether this call loaded them."""
    choice = json.dumps(config.subset("loads_models"))
    if choice in _LOADED_MODELS:
        return _LOADED_MODELS[choice], False
    _LOADED_MODELS.clear()  # one set of models per process
    _LOADED_MODELS[choice] = load_models(config)
    return _LOADED_MODELS[choice], True


def process_item(item: BatchItem, config: Config, threads: int | None = None) -> BatchResult:
    """Run one video of a batch and record its resume key; what every worker executes.

    A problem with the video becomes a 'failed' row. Only a failure to load the models,
    which no other video could escape either, is raised.
    """
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if threads is not None:
        _limit_threads(threads)
    row = BatchResult(video=item.name, status="failed", worker=worker)
    try:
        probe_video(item.video)  # a broken input fails in milliseconds, before any model is loaded
    except ReidMergeError as exc:
        row.error, row.seconds = str(exc), round(time.perf_counter() - start, 3)
        return row
    models, row.models_loaded = _models_for(config)  # ModelError / UsageError: the whole batch stops
    try:
        fingerprint = fingerprint_input(item.video)
        _forget_previous_run(item.out_dir)
        result = run_video(item.video, item.out_dir, config, models=models)
        record = {
            "format": RECORD_FORMAT,
            "version": 1,
            "key": resume_key(fingerprint["sha256"], config),
            "input": {"path": str(item.video), **fingerprint},
            "tool_version": __version__,
            "parameters": config.to_dict(),
            "outputs": sorted(result.outputs),
            "summary": {"frames": result.frames, "raw_tracks": result.raw_tracks, "persons": result.persons},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # After tracks.json: a folder with a matching record is a finished folder.
        write_text_atomic(item.out_dir / RECORD_NAME, json.dumps(record, indent=1) + "\n")
        row.status, row.frames, row.raw_tracks, row.persons = "done", result.frames, result.raw_tracks, result.persons
    except ReidMergeError as exc:
        row.error = str(exc)
    except Exception as exc:  # a bug met on one video must not end the batch; the row names it
        log.debug("internal error on %s", item.video, exc_info=True)
        row.error = (
            f"internal error: {exc.__class__.__name__}: {exc} "
            f"(a bug; `reid-merge run --debug {item.video}` shows the traceback)"
        )
    row.seconds = round(time.perf_counter() - start, 3)
    return row


def _forget_previous_run(out_dir: Path) -> None:
    """From here until the new record is written, the folder must not look finished."""
    with contextlib.suppress(IsADirectoryError, NotADirectoryError):  # the run itself reports these
        (out_dir / RECORD_NAME).unlink(missing_ok=True)
    remove_stale_temps(out_dir, [RECORD_NAME])  # what a killed worker left half-written


def _limit_threads(threads: int) -> None:
    import cv2
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


# --- executors ---------------------------------------------------------------------------


def default_jobs(cuda_devices: int, cores: int, memory: int | None = None) -> int:
    """Workers that suit the machine: two per GPU, else one per core; never more than
    `memory` (bytes available) holds at 2 GiB a worker, never fewer than one.

    >>> gib = 1 << 30
    >>> default_jobs(0, 2, 24 * gib), default_jobs(0, 16, 8 * gib), default_jobs(1, 16, 64 * gib)
    (2, 4, 2)
    """
    wanted = min(_WORKERS_PER_GPU * cuda_devices, cores) if cuda_devices > 0 else cores
    if memory is not None:
        wanted = min(wanted, memory // _MEMORY_PER_WORKER)
    return max(1, wanted)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    """Bytes of memory available for new processes (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cuda_devices(config: Config) -> int:
    if config.device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _init_local_worker(parent: int) -> None:
    """Pool worker setup: the driver alone handles Ctrl-C, and the worker dies with it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:  # Linux: killed when the driver dies (even by kill -9) instead of running on
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


OnResult = Callable[[BatchResult], None]
Work = Callable[[BatchItem, Config, "int | None"], BatchResult]


def _run_local(
    todo: list[BatchItem], config: Config, jobs: int, on_result: OnResult, work: Work = process_item
) -> None:
    """Worker processes; a worker that dies (crash, out-of-memory kill) fails its video only.

    When a pool breaks, the videos it was running are retried one at a time in a pool of
    their own, so the video that kills its worker is found and the others still run.
    """
    threads = max(1, _cores() // jobs)
    remaining = todo
    while remaining:
        before = len(remaining)
        suspects, remaining = _pool_pass(remaining, config, jobs, threads, on_result, work)
        if not suspects and len(remaining) == before:
            raise RuntimeError("the worker processes could not be started")
        for item in suspects:
            if jobs == 1 and len(suspects) == 1:
                culprit = [item]
            else:
                culprit, _ = _pool_pass([item], config, 1, threads, on_result, work)
            for failed in culprit:
                on_result(
                    BatchResult(
                        video=failed.name,
                        status="failed",
                        error="the worker process died while processing this video (crash or out of memory)",
                    )
                )


def _pool_pass(
    items: list[BatchItem], config: Config, jobs: int, threads: int, on_result: OnResult, work: Work
) -> tuple[list[BatchItem], list[BatchItem]]:
    """Run `items` on a fresh pool until done or until the pool breaks.

    Returns the videos that were running when it broke and those not yet started.
    """
    queue = deque(items)
    running: dict[Future[BatchResult], BatchItem] = {}
    suspects: list[BatchItem] = []
    broken = False
    context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_local_worker, initargs=(os.getpid(),))
    try:
        while running or (queue and not broken):
            while queue and not broken and len(running) < jobs:
                item = queue.popleft()
                try:
                    running[pool.submit(work, item, config, threads)] = item
                except BrokenProcessPool:  # broke since the last result; the running ones will say
                    queue.appendleft(item)
                    broken = True
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                try:
                    on_result(future.result())
                except BrokenProcessPool:
                    suspects.append(item)
                    broken = True
        pool.shutdown(wait=True)
    except BaseException:
        _terminate(pool)
        raise
    return suspects, list(queue)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what waits and kill what runs (shutdown alone would wait for it)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()


def _run_ray(todo: list[BatchItem], config: Config, jobs: int | None, address: str | None, on_result: OnResult) -> None:
    """One Ray task per video, at most `jobs` at a time (default: as many as the cluster fits).

    Connects to `address` (else ``$RAY_ADDRESS``, else starts a private local instance that
    listens on the loopback interface only). Inputs and outputs must be on a file system
    that every node sees under the same paths, and reid-merge installed on every node.
    """
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target is not None:
        _check_reachable(target)
    try:
        if (target is None or _is_loopback(target)) and "ray" not in sys.modules:
            # With this switch (read when ray is imported) Ray's servers listen on 127.0.0.1
            # only and a loopback address stays one; without it they listen on every
            # interface and Ray rewrites 127.0.0.1 to the machine's address.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray
        from ray.exceptions import RayError, RayTaskError
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'reid-merge[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            token = " (a cluster with token authentication needs RAY_AUTH_MODE=token)"
            hint = "" if os.environ.get("RAY_AUTH_MODE") else token
            raise UsageError(f"cannot connect to Ray at {target}: {exc}{hint}") from None
    try:
        resources = _ray_task_resources(ray.nodes(), config)
        task: Any = ray.remote(process_item).options(
            **resources,
            max_retries=1,  # a dead worker (node lost, killed) is retried once, then the row fails
            runtime_env={"env_vars": {"YOLO_VERBOSE": "False"}},
        )
        queue = deque(todo)
        running: dict[Any, BatchItem] = {}
        limit = jobs or len(todo)
        while queue or running:
            while queue and len(running) < limit:
                item = queue.popleft()
                running[task.remote(item, config, int(resources["num_cpus"]))] = item
            ready, _ = ray.wait(list(running), num_returns=1)
            item = running.pop(ready[0])
            try:
                on_result(ray.get(ready[0]))
            except RayTaskError as exc:
                if isinstance(exc.cause, ReidMergeError):
                    for ref in running:
                        ray.cancel(ref, force=True)
                    raise exc.cause from None
                raise
            except RayError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                on_result(BatchResult(video=item.name, status="failed", error=f"the Ray task died: {first}"))
    finally:
        if started:
            ray.shutdown()


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a plain ``host:port`` Ray address; None for ``auto``, ``ray://...``.

    >>> _host_port("10.0.0.5:6379"), _host_port("auto"), _host_port("ray://head:10001")
    (('10.0.0.5', 6379), None, None)
    """
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _is_loopback(address: str) -> bool:
    parsed = _host_port(address)
    return parsed is not None and (parsed[0] == "localhost" or parsed[0].startswith("127.") or parsed[0] == "::1")


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong address; Ray itself retries for minutes."""
    parsed = _host_port(address)
    if parsed is None:
        return
    try:
        socket.create_connection(parsed, timeout=5).close()
    except OSError as exc:
        raise UsageError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc})") from None


def _ray_task_resources(nodes: list[dict[str, Any]], config: Config) -> dict[str, float]:
    """What each task asks for, as the local workers get: one CPU and 2 GiB of memory, and
    half a GPU when the cluster has GPUs (two videos share one).

    >>> _ray_task_resources([{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}], Config())
    {'num_cpus': 1.0, 'memory': 2147483648.0, 'num_gpus': 0.5}
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    has_gpu = config.device != "cpu" and any(r.get("GPU", 0.0) > 0 for r in alive)
    largest_memory = max((r.get("memory", 0.0) for r in alive), default=0.0)
    memory = float(_MEMORY_PER_WORKER) if not largest_memory else min(float(_MEMORY_PER_WORKER), largest_memory)
    return {"num_cpus": 1.0, "memory": memory, "num_gpus": 1.0 / _WORKERS_PER_GPU if has_gpu else 0.0}


# --- the batch ---------------------------------------------------------------------------


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
        result.out_dir = str(_relative(item.out_dir, out_root.resolve()).as_posix())
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
        used_jobs = min(jobs or default_jobs(_cuda_devices(config), _cores(), _available_memory()), len(todo))
        _run_local(todo, config, used_jobs, finish)
    elif todo:
        _run_ray(todo, config, jobs, ray_address, finish)
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
    from reid_merge.models.embedding import resolve_device
    from reid_merge.models.tracking import check_tracker_config

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
