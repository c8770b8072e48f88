"""The Ray executor: one Ray task per video on a cluster (or a private local instance)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from typing import Any

from reid_merge.app.batch.inputs import BatchItem
from reid_merge.app.batch.summary import BatchResult
from reid_merge.app.batch.workers import MEMORY_PER_WORKER, WORKERS_PER_GPU, OnResult, process_item
from reid_merge.app.config import Config
from reid_merge.errors import ReidMergeError, UsageError


def run_ray(todo: list[BatchItem], config: Config, jobs: int | None, address: str | None, on_result: OnResult) -> None:
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
        import ray  # here: optional (the ray extra), and off the start-up path
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
    memory = float(MEMORY_PER_WORKER) if not largest_memory else min(float(MEMORY_PER_WORKER), largest_memory)
    return {"num_cpus": 1.0, "memory": memory, "num_gpus": 1.0 / WORKERS_PER_GPU if has_gpu else 0.0}
