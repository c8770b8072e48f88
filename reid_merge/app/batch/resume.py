"""Whether a batch can skip a video: the resume record in its output folder and its key.

After a video's outputs are written, its folder gets a record, ``.reid-merge-input.json``,
holding the resume key: sha256 over the input's sha256, every setting of the run that can
change its outputs (`Config.subset("shapes_results")`: all but `embed_batch_size`) and the
tool's version. A folder is complete when the record's key equals the key of this run and
every output it lists, tracks.json included, is on disk. A worker deletes the record before
it starts on a folder and writes the new one (atomically) only after the pipeline has
written tracks.json, so a run killed at any point leaves no folder that looks complete.

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
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from reid_merge import __version__
from reid_merge.app.config import Config
from reid_merge.app.results import RunResult
from reid_merge.app.run_folder import TRACKS_JSON
from reid_merge.errors import InputError
from reid_merge.io.atomic import remove_stale_temps, write_text_atomic

RECORD_NAME = ".reid-merge-input.json"
RECORD_FORMAT = "reid-merge-batch-record"

_CHUNK = 1 << 20


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
    if not isinstance(outputs, list) or TRACKS_JSON not in outputs:
        return False
    return all(isinstance(name, str) and (out_dir / name).is_file() for name in outputs)


def write_record(out_dir: Path, video: Path, fingerprint: dict[str, str], config: Config, result: RunResult) -> None:
    """Mark `out_dir` finished for this input and these settings; call after tracks.json is written."""
    record = {
        "format": RECORD_FORMAT,
        "version": 1,
        "key": resume_key(fingerprint["sha256"], config),
        "input": {"path": str(video), **fingerprint},
        "tool_version": __version__,
        "parameters": config.to_dict(),
        "outputs": sorted(result.outputs),
        "summary": {"frames": result.frames, "raw_tracks": result.raw_tracks, "persons": result.persons},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomic(out_dir / RECORD_NAME, json.dumps(record, indent=1) + "\n")


def forget_record(out_dir: Path) -> None:
    """From here until the new record is written, the folder must not look finished."""
    with contextlib.suppress(IsADirectoryError, NotADirectoryError):  # the run itself reports these
        (out_dir / RECORD_NAME).unlink(missing_ok=True)
    remove_stale_temps(out_dir, [RECORD_NAME])  # what a killed worker left half-written
