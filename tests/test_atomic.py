"""Outputs are all-or-nothing: a reader, or a process killed at any instant, never sees half of them."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reid_merge.io.atomic import parse_temp_name, remove_stale_temps, staged_files, temp_path_for, write_text_atomic
from tests.data_paths import ROOT

OUTPUTS = ("annotated.mp4", "tracks.txt", "raw_tracks.txt", "tracks.json")
LINES = 50_000  # each file of generation g is "g\n" * LINES: big enough that a kill can land mid-write

# Writes complete output sets, generation after generation, the way the pipeline does.
WRITER = f"""
import sys
from pathlib import Path
from reid_merge.io.atomic import staged_files

folder = Path(sys.argv[1])
generation = int(sys.argv[2])
print("ready", flush=True)
while True:
    generation += 1
    with staged_files(folder / "tracks.json") as staged:
        for name in {OUTPUTS!r}:
            staged.path(folder / name).write_text(f"{{generation}}\\n" * {LINES})
"""


def write_generation(folder: Path, generation: int) -> None:
    for name in OUTPUTS:
        (folder / name).write_text(f"{generation}\n" * LINES)


def generation_of(path: Path) -> int:
    """The generation a file holds; fails on a partial or mixed file."""
    lines = path.read_text().splitlines()
    assert len(lines) == LINES and len(set(lines)) == 1, f"{path.name} is partial or mixed"
    return int(lines[0])


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_sigkill_at_any_moment_leaves_a_complete_set_or_no_marker(tmp_path: Path) -> None:
    """kill -9 a writer 25 times at random instants: the folder always holds whole files, and
    when tracks.json is there every file beside it is of its generation."""
    rng = random.Random(8)
    write_generation(tmp_path, 0)
    generation = 0
    seen_new = 0
    for _ in range(25):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(generation * 1000)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        writer.stdout.close()
        signal_at = rng.uniform(0.0, 0.15)
        try:
            writer.wait(timeout=signal_at)
        except subprocess.TimeoutExpired:
            writer.kill()
        assert writer.wait() == -signal.SIGKILL

        generations = {name: generation_of(tmp_path / name) for name in OUTPUTS if (tmp_path / name).exists()}
        if "tracks.json" in generations:
            assert set(generations.values()) == {generations["tracks.json"]}, generations
            assert len(generations) == len(OUTPUTS)
            seen_new += generations["tracks.json"] != generation
            generation = generations["tracks.json"]
        else:
            # Killed between the renames of a commit: no marker, so no complete set claimed.
            write_generation(tmp_path, generation)
        leftovers = [p for p in tmp_path.iterdir() if p.name not in OUTPUTS]
        assert all(parse_temp_name(p.name) for p in leftovers), leftovers  # never an output's name
        assert remove_stale_temps(tmp_path) == sorted(leftovers)
    assert seen_new > 0  # some kills came after a commit: the test saw both outcomes


def test_failed_block_discards_everything_and_keeps_the_previous_files(tmp_path: Path) -> None:
    (tmp_path / "tracks.json").write_text("old")
    with pytest.raises(RuntimeError), staged_files(tmp_path / "tracks.json") as staged:
        staged.path(tmp_path / "tracks.txt").write_text("new")
        staged.path(tmp_path / "tracks.json").write_text("new")
        raise RuntimeError("the run failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracks.json"]
    assert (tmp_path / "tracks.json").read_text() == "old"


def test_keyboard_interrupt_discards_temporaries(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staged_files(tmp_path / "tracks.json") as staged:
        staged.path(tmp_path / "tracks.txt").write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_interrupt_discards_a_writers_temporary_of_a_staged_file(tmp_path: Path) -> None:
    """An atomic writer given a staged path makes its own temporary of it; a signal that lands
    before the writer can delete it must not leave it behind. Somebody else's files stay."""
    other = tmp_path / f".tracks.txt.{dead_pid()}-0a1b2c3d.tmp.txt"  # another writer's: remove_stale_temps' job
    other.write_text("x")
    with pytest.raises(KeyboardInterrupt), staged_files(tmp_path / "tracks.json") as staged:
        inner = temp_path_for(staged.path(tmp_path / "annotated.mp4"))  # as atomic_path makes it
        assert inner.name.startswith("..annotated.mp4.")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [other]


def test_stale_temporaries_of_dead_writers_are_removed_and_others_kept(tmp_path: Path) -> None:
    gone, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".tracks.json.{gone}-0a1b2c3d.tmp.json", tmp_path / f".annotated.mp4.{gone}-00ff00ff.tmp.mp4"]
    kept = [
        tmp_path / f".tracks.txt.{alive}-0a1b2c3d.tmp.txt",  # a writer still running
        tmp_path / f".tracks.txt.{os.getpid()}-0a1b2c3d.tmp.txt",  # this process
        tmp_path / "tracks.json",
        tmp_path / ".tracks.json.notes",  # somebody else's hidden file
        tmp_path / f".tracks.json.{gone}-zzzzzzzz.tmp.json",  # not our pattern
    ]
    for path in stale + kept:
        path.write_text("x")
    assert remove_stale_temps(tmp_path) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    """Not mkstemp's 0600: an annotated video must be readable by whoever may read the folder."""
    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "tracks.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "tracks.txt").stat().st_mode) == 0o644


def test_temporary_names_are_hidden_and_name_their_output(tmp_path: Path) -> None:
    tmp = temp_path_for(tmp_path / "annotated.mp4")
    assert tmp.name.startswith(".") and tmp.suffix == ".mp4" and tmp.name != "annotated.mp4"
    assert parse_temp_name(tmp.name) == ("annotated.mp4", os.getpid())
    nested = temp_path_for(tmp)  # a writer that is atomic itself, handed a staged path
    assert parse_temp_name(nested.name) == ("annotated.mp4", os.getpid())
