"""Which inputs a batch has and where each one's outputs go: video files and MOTChallenge
sequence folders under a folder or matching a glob, one output folder each."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reid_merge.app.batch.resume import RECORD_NAME
from reid_merge.app.run_folder import TRACKS_JSON
from reid_merge.errors import InputError
from reid_merge.io.video import VIDEO_SUFFIXES

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and where its outputs go (absolute paths, so any worker finds them)."""

    video: Path
    out_dir: Path
    name: str  # the input's path relative to the batch root, as the summary shows it


def is_sequence(folder: Path) -> bool:
    """A MOTChallenge sequence folder: it holds seqinfo.ini."""
    return (folder / "seqinfo.ini").is_file()


def _is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _is_output_folder(folder: Path) -> bool:
    """A folder this tool wrote into (its videos are outputs, not inputs)."""
    return (folder / RECORD_NAME).is_file() or (folder / TRACKS_JSON).is_file()


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
    relative = [relative_path(path.resolve(), base) for path in inputs]
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


def relative_path(path: Path, base: Path) -> Path:
    try:
        return path.relative_to(base)
    except ValueError:  # a glob may reach outside its base (``../x/*.mp4``): the whole path, made relative
        return Path(*path.parts[1:])
