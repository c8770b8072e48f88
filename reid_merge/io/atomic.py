"""Write files so that a reader never sees half of one: temp file in the same folder, then rename.

Temporary files are named ``.<name>.<pid>-<random>.tmp<suffix>``: hidden, never the name of
an output, and carrying the writer's process ID, so that a later run can delete what a
killed process left behind (`remove_stale_temps`) without touching the files of a process
still writing to the same folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from reid_merge.errors import InputError

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(?:\.[^.]*)?$")


def temp_path_for(path: Path) -> Path:
    """Create an empty temporary file beside `path` and return its path.

    It gets the permissions of any new file (0666 less the umask), not `tempfile.mkstemp`'s
    0600, because it is renamed into the output. The name keeps the suffix, so writers that
    choose a format by extension (video encoders) still see ``.mp4``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path}: no free temporary name beside it")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class StagedFiles:
    """Files written under temporary names, then renamed into place together by `commit`.

    Until `commit` the folder's previous files are untouched. `marker` is the file whose
    presence says "this set is complete" (tracks.json): `commit` deletes its old version
    before renaming anything and renames the new one last, so a process killed between two
    renames leaves a mix of old and new files without a marker, never with one.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self._staged: dict[Path, Path] = {}  # final path -> temporary path, in order given
        self._finals: list[Path] = []  # every final path asked for, recorded before its temporary exists

    def path(self, final: Path) -> Path:
        """A fresh temporary file that `commit` will rename to `final`."""
        if final in self._staged:
            raise ValueError(f"{final}: staged twice")
        self._finals.append(final)
        self._staged[final] = temp_path_for(final)
        return self._staged[final]

    def commit(self) -> None:
        """Rename every staged file into place, the marker last."""
        self.marker.unlink(missing_ok=True)
        marker_tmp = self._staged.pop(self.marker, None)
        while self._staged:
            final = next(iter(self._staged))
            os.replace(self._staged.pop(final), final)
        if marker_tmp is not None:
            os.replace(marker_tmp, self.marker)

    def discard(self) -> None:
        """Delete every staged file not yet renamed, and every other temporary this process made
        of a staged name: an atomic writer's own temporary of a staged file, or one created just
        as a signal arrived, before its name could be recorded."""
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()
        ours = {(final.parent, final.name) for final in self._finals}
        for folder in {parent for parent, _ in ours}:
            with contextlib.suppress(OSError):  # a folder never created: nothing to delete
                for entry in folder.iterdir():
                    parsed = parse_temp_name(entry.name)
                    if parsed is not None and parsed[1] == os.getpid() and (folder, parsed[0]) in ours:
                        entry.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_files(marker: Path) -> Iterator[StagedFiles]:
    """`StagedFiles` that are committed when the block succeeds and deleted when it fails.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with staged_files(folder / "done.json") as staged:
    ...     _ = staged.path(folder / "a.txt").write_text("a")
    ...     _ = staged.path(folder / "done.json").write_text("{}")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'done.json']
    >>> import shutil; shutil.rmtree(folder)
    """
    staged = StagedFiles(marker)
    try:
        yield staged
        staged.commit()
    except OSError as exc:
        if not _is_write_failure(exc, marker.parent):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        raise InputError(f"{marker.parent}: cannot write the outputs: {exc.strerror}{where}") from exc
    finally:
        staged.discard()


#: Errors that mean "the output folder cannot take these files", wherever they are raised.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _is_write_failure(exc: OSError, folder: Path) -> bool:
    """A full disk or read-only file system, or a permission error on a file in `folder`."""
    if exc.errno in _NO_ROOM:
        return True
    inside = exc.filename is not None and Path(os.fsdecode(exc.filename)).parent == folder
    return exc.errno in (errno.EACCES, errno.EPERM) and inside


def remove_stale_temps(folder: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete our temporary files in `folder` (of `names` only, if given) whose writer has ended.

    A process killed by SIGKILL (or a power cut) cannot clean up after itself; its
    temporaries carry its process ID, so those of a process still running are kept.

    Returns:
        The paths deleted, sorted.
    """
    wanted = None if names is None else set(names)
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in folder.iterdir():
            parsed = parse_temp_name(entry.name)
            if parsed is None or (wanted is not None and parsed[0] not in wanted) or _process_exists(parsed[1]):
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return sorted(removed)


def parse_temp_name(name: str) -> tuple[str, int] | None:
    """``(output name, writer's process ID)`` of one of our temporary names, else None.

    A temporary of a temporary (a writer that is itself atomic, given a staged path) names
    the output it will end up as.

    >>> parse_temp_name(".tracks.json.4242-0a1b2c3d.tmp.json")
    ('tracks.json', 4242)
    >>> parse_temp_name("..annotated.mp4.7-0a1b2c3d.tmp.mp4.7-00000000.tmp.mp4")
    ('annotated.mp4', 7)
    >>> parse_temp_name("tracks.json") is None
    True
    """
    match = _TEMP_NAME.match(name)
    if match is None:
        return None
    inner = parse_temp_name(match["name"])
    return (inner[0] if inner else match["name"]), int(match["pid"])


def _process_exists(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True  # ours, or an ID that would address a process group: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by somebody else
        return True
    return True
