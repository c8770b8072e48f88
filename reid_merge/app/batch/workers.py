"""What runs each video of a batch: `process_item` in a worker process that keeps its models,
and the local executor, a pool of such processes that survives a worker's death."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import cv2

from reid_merge.app.batch.inputs import BatchItem
from reid_merge.app.batch.resume import fingerprint_input, forget_record, write_record
from reid_merge.app.batch.summary import BatchResult
from reid_merge.app.config import Config
from reid_merge.app.pipeline import Models, load_models, run_video
from reid_merge.errors import ReidMergeError
from reid_merge.io.video import probe_video

log = logging.getLogger(__name__)

# On the CPU, one single-threaded worker per core: on 2 cores, two TUD videos took 62-64 s
# with 2 workers of 1 thread and 93 s (293 s when other processes competed for the cores)
# with 1 worker of 2 threads; decoding, tracking and crop sampling run on one thread anyway.
# A worker with both models peaked at 1.7 GB resident, hence 2 GiB of memory per worker.
MEMORY_PER_WORKER = 2 << 30
# Workers sharing one GPU: one decodes and tracks on the CPU while the other's network runs.
WORKERS_PER_GPU = 2


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
        forget_record(item.out_dir)
        result = run_video(item.video, item.out_dir, config, models=models)
        # After tracks.json: a folder with a matching record is a finished folder.
        write_record(item.out_dir, item.video, fingerprint, config, result)
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


def _limit_threads(threads: int) -> None:
    import torch  # here: torch stays off the command's start-up path

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def default_jobs(cuda_devices: int, cores: int, memory: int | None = None) -> int:
    """Workers that suit the machine: two per GPU, else one per core; never more than
    `memory` (bytes available) holds at 2 GiB a worker, never fewer than one.

    >>> gib = 1 << 30
    >>> default_jobs(0, 2, 24 * gib), default_jobs(0, 16, 8 * gib), default_jobs(1, 16, 64 * gib)
    (2, 4, 2)
    """
    wanted = min(WORKERS_PER_GPU * cuda_devices, cores) if cuda_devices > 0 else cores
    if memory is not None:
        wanted = min(wanted, memory // MEMORY_PER_WORKER)
    return max(1, wanted)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available for new processes (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cuda_devices(config: Config) -> int:
    if config.device == "cpu":
        return 0
    import torch  # here: torch stays off the command's start-up path

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _init_local_worker(parent: int) -> None:
    """Pool worker setup: the driver alone handles Ctrl-C, and the worker dies with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    with contextlib.suppress(OSError, AttributeError):  # Linux: killed when the driver dies (even by kill -9)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


OnResult = Callable[[BatchResult], None]
Work = Callable[[BatchItem, Config, "int | None"], BatchResult]


def run_local(todo: list[BatchItem], config: Config, jobs: int, on_result: OnResult, work: Work = process_item) -> None:
    """Worker processes; a worker that dies (crash, out-of-memory kill) fails its video only.

    When a pool breaks, the videos it was running are retried one at a time in a pool of
    their own, so the video that kills its worker is found and the others still run.
    """
    threads = max(1, cores() // jobs)
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
