"""Bad input gets one clear line and an exit code; nothing is written, nothing is changed.

Every case runs the command as a user does, in a subprocess. The error cases must fail in the
checks that come before any model is loaded, so the table stays fast; the edge cases that are
not errors (nobody detected, one person, tiny and huge frames, a truncated file that still
decodes) run the whole pipeline on a few frames and must produce valid outputs that say so.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from reid_merge.io.tracks_io import read_mot
from tests.builders import plain_frames, sample_frames, write_video
from tests.cli_helpers import cli_env, reid_merge
from tests.data_paths import SAMPLE_VIDEO

SAMPLE = SAMPLE_VIDEO  # 180 frames, 640x360
Setup = Callable[[Path], tuple[list, str]]  # tmp_path -> (command line, what the message must name)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with a hash of its bytes: to prove nothing changed."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            state[os.path.relpath(os.path.join(root, name), folder)] = "folder"
        for name in files:
            path = Path(root, name)
            state[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


# --- builders of bad inputs, each in its test's tmp_path ---


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run_on(make_video: Callable[[Path], Path], *options: str) -> Setup:
    """``reid-merge run`` on a video made in tmp_path; the message must name the video."""

    def setup(tmp: Path) -> tuple[list, str]:
        video = make_video(tmp)
        return ["run", video, *options], str(video)

    return setup


def run_sample(*options: str, names: str) -> Setup:
    """``reid-merge run`` on the sample with bad options; the message must name `names`."""
    return lambda tmp: (["run", SAMPLE, *options], names)


def merge_tracks(text: str, name: str = "tracks.txt") -> Setup:
    """``reid-merge merge`` of a tracks file with content `text` on the sample video."""

    def setup(tmp: Path) -> tuple[list, str]:
        tracks = _write(tmp / name, text)
        return ["merge", tracks, "--video", SAMPLE], str(tracks)

    return setup


def config_file(text: str) -> Setup:
    def setup(tmp: Path) -> tuple[list, str]:
        config = _write(tmp / "settings.yaml", text)
        return ["run", SAMPLE, "--config", config], str(config)

    return setup


def output_to(make_output: Callable[[Path], Path]) -> Setup:
    """``reid-merge run`` on the sample into an output folder that cannot be one."""

    def setup(tmp: Path) -> tuple[list, str]:
        out = make_output(tmp)
        return ["run", SAMPLE, "-o", out], str(out)

    return setup


def truncated_sample(tmp: Path) -> Path:
    # The sample keeps its index (moov) after the frames, as most encoders write it: cut at
    # 40 % the file has no index, so no frame can be located. That is an input error. A file
    # whose index comes first still decodes up to the cut: see the "truncated-faststart"
    # edge case, which is processed.
    data = SAMPLE.read_bytes()
    return _write_bytes(tmp / "cut.mp4", data[: len(data) * 4 // 10])


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def zero_frame_video(tmp: Path) -> Path:
    """A valid AVI with a video stream and no frame (what a recorder stopped at once leaves)."""
    path = tmp / "empty.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240)).release()
    return path


def folder(tmp: Path) -> Path:
    (tmp / "videos").mkdir()
    return tmp / "videos"


def unwritable_folder(tmp: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into a chmod 000 folder anyway; output-parent-is-file covers 'not writable'")
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0)
    return locked / "out"


def sequence_frames_folder(tmp: Path) -> Path:
    """A MOTChallenge sequence; the output asked for is its own img1/ folder of frames."""
    seq = tmp / "SEQ-01"
    (seq / "img1").mkdir(parents=True)
    for frame in (1, 2):
        cv2.imwrite(str(seq / "img1" / f"{frame:06d}.jpg"), np.full((240, 320, 3), 128, np.uint8))
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    ini["Sequence"] = {
        "name": "SEQ-01",
        "imDir": "img1",
        "frameRate": "25",
        "seqLength": "2",
        "imWidth": "320",
        "imHeight": "240",
        "imExt": ".jpg",
    }
    with (seq / "seqinfo.ini").open("w") as handle:
        ini.write(handle)
    return seq


def overwrite_input_tracks(tmp: Path) -> tuple[list, str]:
    """Merging a previous run's tracks.json back into the same folder would overwrite it."""
    out = tmp / "previous"
    doc = {"tracks": [{"track_id": 1, "detections": [[1, 10, 20, 60, 140, 0.9], [2, 12, 20, 62, 140, 0.9]]}]}
    tracks = _write(out / "tracks.json", json.dumps(doc))
    return ["merge", tracks, "--video", SAMPLE, "-o", out, "--no-video"], str(tracks)


def bad_ground_truth(tmp: Path) -> tuple[list, str]:
    gt = _write(tmp / "gt.txt", "1,1,10,20,30\n")
    return ["run", SAMPLE, "--gt", gt], str(gt)


BILLION_LAUGHS = "detector:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  - &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)

ERRORS = [
    # video inputs
    pytest.param(run_on(lambda t: t / "missing.mp4"), 3, "no such file", id="missing-video"),
    pytest.param(run_on(folder), 3, "folder without seqinfo.ini", id="video-is-a-folder"),
    pytest.param(run_on(lambda t: _write(t / "notes.mp4", "not a video\n")), 3, "cannot be decoded", id="text-as-mp4"),
    pytest.param(run_on(truncated_sample), 3, "cannot be decoded", id="truncated-mp4"),
    pytest.param(run_on(zero_frame_video), 3, "no decodable frames", id="zero-frame-video"),
    pytest.param(bad_ground_truth, 3, "expected at least 6", id="malformed-ground-truth"),
    # output folder
    pytest.param(output_to(lambda t: _write(t / "taken", "a file")), 3, "not a folder", id="output-is-a-file"),
    pytest.param(output_to(lambda t: _write(t / "file", "x") / "out"), 3, "is a file", id="output-parent-is-a-file"),
    pytest.param(output_to(unwritable_folder), 3, "not writable", id="output-unwritable"),
    pytest.param(
        lambda t: (["run", sequence_frames_folder(t), "-o", t / "SEQ-01" / "img1"], str(t / "SEQ-01" / "img1")),
        3,
        "folder of frames",
        id="output-is-the-input-frames",
    ),
    pytest.param(overwrite_input_tracks, 3, "would overwrite the input", id="output-overwrites-input-tracks"),
    # tracks files for `merge`
    pytest.param(merge_tracks("1,2,3\n"), 3, ":1: expected at least 6", id="tracks-malformed-line"),
    pytest.param(merge_tracks("1,1,10,20,-30,40\n"), 3, "must be positive", id="tracks-negative-box"),
    pytest.param(merge_tracks("1,1,10,20,wide,40\n"), 3, "field 'w' is not a number", id="tracks-non-numeric"),
    pytest.param(merge_tracks("1,1,10,20,30,40\n181,1,10,20,30,40\n"), 3, "beyond the video's 180", id="tracks-beyond"),
    pytest.param(
        merge_tracks("1,1,10,20,30,40\n1,1,12,20,30,40\n"), 3, "has two boxes in frame 1", id="tracks-duplicate-rows"
    ),
    pytest.param(merge_tracks("{ not json", "tracks.json"), 3, "not valid JSON", id="tracks-json-garbage"),
    pytest.param(
        merge_tracks('{"tracks": [{"track_id": ' + "9" * 5000 + "}]}", "tracks.json"),
        3,
        "not valid JSON (Exceeds the limit",
        id="tracks-json-5000-digits",
    ),
    pytest.param(
        lambda t: (["merge", folder(t), "--video", SAMPLE], str(t / "videos")),
        3,
        "is a folder",
        id="tracks-is-a-folder",
    ),
    # configuration files
    pytest.param(config_file("thresold: 0.5\n"), 2, "unknown setting 'thresold'", id="config-unknown-key"),
    pytest.param(config_file("crops_per_track: many\n"), 2, "expects int", id="config-wrong-type"),
    pytest.param(config_file("threshold: [0.5\n"), 2, "not a readable YAML", id="config-not-yaml"),
    pytest.param(
        lambda t: (["run", SAMPLE, "--config", folder(t)], str(t / "videos")), 2, "is a folder", id="config-dir"
    ),
    # nine levels of nine aliases: 9**9 strings if expanded, and the message would print them all
    pytest.param(config_file(BILLION_LAUGHS), 2, "line 3: YAML aliases (*name) are not accepted", id="config-aliases"),
    pytest.param(config_file("dispersion_weight: .inf\n"), 2, "expected a finite number", id="config-inf"),
    pytest.param(config_file("threshold: .nan\n"), 2, "threshold: expected in [0, 2]", id="config-nan"),
    pytest.param(config_file("image_size: 32000\n"), 2, "up to 4096, got 32000", id="config-image-size-huge"),
    pytest.param(
        config_file(f"detector: [{'x, ' * 50_000}]\n"), 2, "expects str, got ['x', 'x'", id="config-huge-value-excerpt"
    ),
    # contradictory or out-of-range options
    pytest.param(run_sample("--persons", "0", names="persons"), 2, ">= 1", id="persons-zero"),
    pytest.param(run_sample("--crops", "0", names="crops"), 2, ">= 1", id="crops-zero"),
    pytest.param(run_sample("--threshold", "3", names="threshold"), 2, "in [0, 2]", id="threshold-above-2"),
    pytest.param(run_sample("--threshold=-0.5", names="threshold"), 2, "in [0, 2]", id="threshold-negative"),
    pytest.param(run_sample("--threshold", "nan", names="threshold"), 2, "in [0, 2]", id="threshold-nan"),
    pytest.param(run_sample("--tracker", "nope", names="nope"), 2, "expected bytetrack", id="unknown-tracker"),
    pytest.param(
        run_sample("--device", "cuda:7", names="cuda:7"),
        2,
        "CUDA",
        id="absent-cuda-device",
        marks=pytest.mark.skipif("_has_cuda()", reason="a CUDA device 7 may exist here"),
    ),
]


@pytest.mark.parametrize(("setup", "code", "problem"), ERRORS)
def test_bad_input_gets_one_line_an_exit_code_and_no_output(
    setup: Setup, code: int, problem: str, tmp_path: Path
) -> None:
    args, names = setup(tmp_path)
    if "-o" not in args:
        args += ["-o", tmp_path / "out"]
    before = snapshot(tmp_path)

    result = reid_merge(*args, columns=60)  # narrow: a message must not be wrapped onto two lines

    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: ") and names in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    # Nothing created (not even the output folder), nothing changed, no temporary left.
    assert snapshot(tmp_path) == before


def test_debug_adds_the_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    result = reid_merge("run", tmp_path / "missing.mp4", "--debug")
    assert result.returncode == 3
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("error: ")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- edge cases that are not errors: valid outputs, and the run says what it found ---


def run_measuring_memory(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the command; also return its peak resident memory in bytes (Linux: ru_maxrss in KiB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        command = [sys.executable, "-m", "reid_merge", *map(str, args)]
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=cli_env())
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    return result, usage.ru_maxrss * 1024  # Linux reports it in KiB


def video_frames(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video, decoded."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), stream.width, stream.height


@dataclass(frozen=True)
class Edge:
    make_video: Callable[[Path], Path]
    options: tuple[str, ...]
    note: str  # what the run must say about it
    persons: int
    video_size: tuple[int, int] | None = None  # annotated.mp4 (width, height), when written


def truncated_faststart(tmp: Path) -> Path:
    # Index first ("faststart"): cut at 60 %, the first frames still decode. Processing them
    # and saying how many of the announced frames there were is more use than refusing: a
    # recording cut short by a crash is still worth tracking, and tracks.json records both
    # counts. (The usual layout, index last, cannot be decoded at all: an error above.)
    full = write_video(tmp / "full.mp4", sample_frames(SAMPLE, 1, 12), fps=30, faststart=True)
    data = full.read_bytes()
    full.unlink()
    return _write_bytes(tmp / "cut-faststart.mp4", data[: len(data) * 6 // 10])


EDGES = [
    pytest.param(
        Edge(
            lambda t: write_video(t / "grey.mp4", plain_frames(320, 240, 3)), (), "nobody was detected", 0, (320, 240)
        ),
        id="nobody-detected",
    ),
    pytest.param(
        # A man cycling away from the camera, alone in a 240 px wide strip of the sample.
        Edge(
            lambda t: write_video(t / "one.mp4", sample_frames(SAMPLE, 76, 95, slice(360, 600)), fps=30),
            ("--no-video",),
            "one track: nothing to merge",
            1,
        ),
        id="one-person",
    ),
    pytest.param(
        Edge(lambda t: write_video(t / "tiny.mp4", plain_frames(32, 32, 3)), (), "nobody was detected", 0, (32, 32)),
        id="32x32",
    ),
    pytest.param(
        # The detector letterboxes to 640 and one frame is decoded at a time; the annotated
        # video is scaled to fit 4K, which bounds the encoder's memory.
        Edge(
            lambda t: write_video(t / "huge.mp4", plain_frames(8000, 6000, 2)),
            (),
            "nobody was detected",
            0,
            (2880, 2160),
        ),
        id="8000x6000",
    ),
    pytest.param(
        Edge(truncated_faststart, ("--no-video",), "decoding stopped after", 1),
        id="truncated-faststart",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("edge", EDGES)
def test_edge_cases_give_valid_outputs_and_say_so(edge: Edge, tmp_path: Path) -> None:
    video = edge.make_video(tmp_path)
    out = tmp_path / "out"

    result, peak_memory = run_measuring_memory("run", video, "-o", out, "--device", "cpu", *edge.options)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads((out / "tracks.json").read_text())
    assert any(edge.note in note for note in doc["notes"]) and edge.note in result.stderr
    assert doc["summary"]["persons"] == edge.persons == len(doc["persons"])
    merged = read_mot(out / "tracks.txt")
    assert len(set(merged.track_id.tolist())) == edge.persons
    if edge.persons == 0:
        assert (out / "tracks.txt").read_text() == "" and doc["tracks"] == []
    if edge.video_size is not None:
        assert video_frames(out / "annotated.mp4") == (doc["video"]["frames_decoded"], *edge.video_size)
    assert not list(out.glob(".*")), "temporary files left behind"
    assert peak_memory < 4 * 2**30, f"peak memory {peak_memory / 2**30:.1f} GiB"


def test_truncated_faststart_records_both_frame_counts(tmp_path: Path) -> None:
    """The cut file announces 12 frames and decodes fewer: the probe must not hide that."""
    from reid_merge.io.video import probe_video, read_frames

    info = probe_video(truncated_faststart(tmp_path))
    decoded = sum(1 for _ in read_frames(info))
    assert info.num_frames == 12 and 0 < decoded < 12
