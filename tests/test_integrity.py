"""A run that is interrupted leaves the previous outputs; the same input gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reid_merge.io.atomic import parse_temp_name
from tests.cli_helpers import cli_env, reid_merge
from tests.data_paths import FIRST_RUN_VIDEO

SAMPLE = FIRST_RUN_VIDEO  # the sample run's video: its raw tracks are merged again below


def contents(folder: Path) -> dict[str, str]:
    """Name → sha256 of every file in `folder`."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def start_run(*args: str | Path) -> subprocess.Popen[str]:
    """``reid-merge ARGS`` in the background, with Ctrl-C's default action restored (a shell
    without job control starts background commands with SIGINT ignored)."""
    return subprocess.Popen(
        [sys.executable, "-m", "reid_merge", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(process: subprocess.Popen[str], text: str) -> list[str]:
    """Read stderr until a line holds `text`; returns the lines read."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"the run ended before printing {text!r}:\n{''.join(lines)}")


@pytest.fixture
def previous_outputs(sample_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> Path:
    """A folder that holds the complete outputs of an earlier run."""
    out, result = sample_run
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out"
    shutil.copytree(out, folder)
    return folder


def wait_for_temporary(process: subprocess.Popen[str], folder: Path) -> None:
    """Poll until an output is being written into `folder` (one of our temporaries appears)."""
    while process.poll() is None:
        if any(parse_temp_name(p.name) for p in folder.iterdir()):
            return
        time.sleep(0.005)
    pytest.fail(f"the run ended before writing anything:\n{process.communicate()[1]}")


SIGNALS = [
    pytest.param(signal.SIGINT, 130, "interrupted", id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, "terminated", id="SIGTERM"),
    pytest.param(signal.SIGKILL, -signal.SIGKILL, None, id="SIGKILL"),
]


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["tracking", "writing"])
@pytest.mark.parametrize(("signum", "code", "says"), SIGNALS)
def test_interrupted_run_leaves_the_previous_outputs(
    previous_outputs: Path, phase: str, signum: int, code: int, says: str | None
) -> None:
    """Stop a run into a folder of complete outputs while it tracks (``run``, at a random-ish
    frame) or while it writes (``merge``, as its first temporary file appears)."""
    before = contents(previous_outputs)
    if phase == "tracking":
        process = start_run("run", SAMPLE, "-o", previous_outputs, "--device", "cpu")
        wait_for(process, "re-identification:")  # models loaded: tracking begins
        time.sleep(random.Random(signum).uniform(0.5, 3.0))  # somewhere in the 40 frames (about 15 s)
    else:
        tracks = previous_outputs.parent / "early_tracks.txt"  # the first 30 frames: little to decode
        raw = (previous_outputs / "raw_tracks.txt").read_text().splitlines(keepends=True)
        tracks.write_text("".join(line for line in raw if int(line.split(",")[0]) <= 30))
        process = start_run("merge", tracks, "--video", SAMPLE, "-o", previous_outputs, "--device", "cpu")
        wait_for_temporary(process, previous_outputs)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    if says is not None:
        assert f"{says}: previous outputs left as they were" in stderr
    after = contents(previous_outputs)
    if signum == signal.SIGKILL:
        # Nothing can clean up after kill -9: what it leaves is hidden, named as ours, and
        # deleted by the next run (test_next_run_removes_what_a_killed_run_left).
        after = {name: digest for name, digest in after.items() if parse_temp_name(name) is None}
    assert after == before  # no temporary left, every previous output byte for byte


@pytest.mark.slow
def test_next_run_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    """Temporaries of a process that no longer runs are deleted; those of a live one are kept."""
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = out / f".annotated.mp4.{gone.pid}-0a1b2c3d.tmp.mp4"
    live = out / f".tracks.json.{os.getpid()}-0a1b2c3d.tmp.json"
    for path in (stale, live):
        path.write_bytes(b"half a file")
    tracks = tmp_path / "one_track.txt"
    tracks.write_text("".join(f"{f},1,380,120,100,220,0.9,-1,-1,-1\n" for f in range(20, 26)))

    result = reid_merge("merge", tracks, "--video", SAMPLE, "-o", out, "--no-video", "--device", "cpu")

    assert result.returncode == 0, result.stderr
    assert not stale.exists() and live.exists()
    assert (out / "tracks.json").is_file()


@pytest.mark.slow
def test_same_input_gives_byte_identical_outputs(
    sample_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Two runs with the same settings (the session's sample run and this one) write the same bytes."""
    first, result = sample_run
    assert result.returncode == 0, result.stderr
    sample_digest = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    second = tmp_path / "second"

    result = reid_merge("run", SAMPLE, "-o", second, "--device", "cpu")

    assert result.returncode == 0, result.stderr
    for name in ("tracks.json", "tracks.txt", "raw_tracks.txt"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between two runs"
    assert hashlib.sha256(SAMPLE.read_bytes()).hexdigest() == sample_digest  # the input is never modified
    timing_keys = [key for key in _keys(json.loads((second / "tracks.json").read_text())) if "time" in key.lower()]
    assert timing_keys == [], "tracks.json must not hold wall-clock timings"


def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in (key, *_keys(item))]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    return []
