"""`reid-merge batch`: discovery, resume keys, a real batch with a broken input, crashes, Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import pytest

from reid_merge.app import batch
from reid_merge.app.batch import (
    RECORD_NAME,
    BatchItem,
    BatchResult,
    find_inputs,
    fingerprint_input,
    is_complete,
    plan_batch,
    read_record,
    read_summary,
    resume_key,
    run_batch,
)
from reid_merge.app.config import Config
from reid_merge.errors import InputError, ModelError, UsageError
from tests.data_paths import ROOT, SAMPLE_VIDEO

CLIP_FRAMES = 12
SETTINGS = ("--device", "cpu", "--no-video")
CONFIG = Config(device="cpu", write_video=False)


def cut_clip(source: Path, target: Path, start: int, frames: int) -> Path:
    """`frames` frames of `source` from frame `start` (0-based), as H.264 mp4."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream("libx264", rate=25)
        out.width, out.height, out.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuv420p"
        for index, frame in enumerate(src.decode(stream)):
            if index >= start + frames:
                break
            if index >= start:
                image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                for packet in out.encode(image):
                    dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return target


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two short clips of the sample video (people in both)."""
    folder = tmp_path_factory.mktemp("clips")
    return (
        cut_clip(SAMPLE_VIDEO, folder / "street_a.mp4", 0, CLIP_FRAMES),
        cut_clip(SAMPLE_VIDEO, folder / "street_b.mp4", 90, CLIP_FRAMES),
    )


def make_batch_folder(root: Path, clips: tuple[Path, Path]) -> Path:
    """Two good clips, a copy of one in a subfolder, a corrupt file: the issue's folder."""
    root.mkdir(parents=True)
    shutil.copy(clips[0], root / "a.mp4")
    shutil.copy(clips[1], root / "b.mp4")
    (root / "sub").mkdir()
    shutil.copy(clips[0], root / "sub" / "a.mp4")
    (root / "broken.mp4").write_bytes(b"not a video at all\n" * 20)
    return root


def reid_merge(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reid_merge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(Path.home()), **(env or {})},
    )


def rows_by_video(summary_json: Path) -> dict[str, BatchResult]:
    return {row.video: row for row in read_summary(summary_json)}


# --- discovery ---------------------------------------------------------------------------


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_inputs_recurses_and_treats_sequences_as_one_input(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "deep" / "er" / "b.MKV")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden.mp4")
    touch(tmp_path / ".cache" / "c.mp4")
    seq = tmp_path / "seqs" / "TUD"
    touch(seq / "seqinfo.ini", b"[Sequence]\n")
    touch(seq / "img1" / "000001.jpg")
    touch(seq / "TUD.mp4")  # inside a sequence folder: the sequence is the input
    done = tmp_path / "old_run"  # a folder this tool wrote into
    touch(done / "tracks.json", b"{}")
    touch(done / "annotated.mp4")
    out = tmp_path / "runs"
    touch(out / "a" / "annotated.mp4")

    found = find_inputs(tmp_path, exclude=[out])

    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.mp4", "deep/er/b.MKV", "seqs/TUD"]
    assert find_inputs(seq) == [seq]


def test_find_inputs_takes_a_glob(tmp_path: Path) -> None:
    touch(tmp_path / "x" / "a.mp4")
    touch(tmp_path / "x" / "b.avi")
    touch(tmp_path / "y" / "c.mp4")
    found = find_inputs(f"{tmp_path}/**/*.mp4")
    assert [p.name for p in found] == ["a.mp4", "c.mp4"]
    with pytest.raises(InputError, match="matches no file"):
        find_inputs(f"{tmp_path}/*.webm")
    with pytest.raises(InputError, match="no such file"):
        find_inputs(tmp_path / "missing")


def test_plan_mirrors_relative_paths_and_separates_same_stems(tmp_path: Path) -> None:
    src = tmp_path / "videos"
    for name in ("a.mp4", "a.avi", "sub/b.mp4"):
        touch(src / name)
    items = plan_batch(src, tmp_path / "out")
    assert {i.name: i.out_dir.relative_to(tmp_path / "out").as_posix() for i in items} == {
        "a.avi": "a_avi",
        "a.mp4": "a_mp4",
        "sub/b.mp4": "sub/b",
    }
    assert all(i.video.is_absolute() and i.out_dir.is_absolute() for i in items)


# --- resume ------------------------------------------------------------------------------


def test_resume_key_follows_input_settings_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = touch(tmp_path / "v.mp4", b"frame data")
    before = fingerprint_input(video)
    key = resume_key(before["sha256"], CONFIG)

    assert resume_key(fingerprint_input(video)["sha256"], CONFIG) == key
    assert resume_key(before["sha256"], replace(CONFIG, threshold=0.5)) != key
    assert resume_key(before["sha256"], replace(CONFIG, write_video=True)) != key
    assert resume_key(before["sha256"], replace(CONFIG, device="auto")) != key
    # The batch size of the embedder does not change the features (tests/test_embedding.py): no rerun.
    assert resume_key(before["sha256"], replace(CONFIG, embed_batch_size=8)) == key
    monkeypatch.setattr(batch.resume, "__version__", "9.9.9")
    assert resume_key(before["sha256"], CONFIG) != key
    monkeypatch.undo()

    os.utime(video, ns=(1, 1))  # touched: the stat digest changes, the bytes do not
    touched = fingerprint_input(video)
    assert touched["stat"] != before["stat"] and touched["sha256"] == before["sha256"]
    video.write_bytes(b"frame dat4")  # same size, new bytes
    assert fingerprint_input(video)["sha256"] != before["sha256"]


def test_unchanged_stat_reuses_the_recorded_hash_without_reading(tmp_path: Path) -> None:
    video = touch(tmp_path / "v.mp4", b"frame data")
    recorded = {**fingerprint_input(video), "sha256": "recorded"}
    assert fingerprint_input(video, recorded)["sha256"] == "recorded"
    os.utime(video, ns=(5, 5))
    assert fingerprint_input(video, recorded)["sha256"] != "recorded"


def test_sequence_fingerprint_covers_its_frames(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    touch(seq / "seqinfo.ini", b"[Sequence]\nimDir=img1\n")
    frame = touch(seq / "img1" / "000001.jpg", b"jpeg")
    touch(seq / "gt" / "gt.txt", b"1,1,0,0,1,1,1,1,1\n")
    before = fingerprint_input(seq)["sha256"]
    (seq / "gt" / "gt.txt").write_bytes(b"changed ground truth does not change the outputs")
    assert fingerprint_input(seq)["sha256"] == before
    frame.write_bytes(b"JPEG")
    assert fingerprint_input(seq)["sha256"] != before


def test_complete_needs_matching_key_and_every_listed_output(tmp_path: Path) -> None:
    record = {"format": "reid-merge-batch-record", "key": "k", "outputs": ["tracks.json", "tracks.txt"]}
    (tmp_path / RECORD_NAME).write_text(json.dumps(record))
    assert not is_complete(tmp_path, "k", read_record(tmp_path))  # outputs missing
    touch(tmp_path / "tracks.json")
    touch(tmp_path / "tracks.txt")
    assert is_complete(tmp_path, "k", read_record(tmp_path))
    assert not is_complete(tmp_path, "other settings", read_record(tmp_path))
    (tmp_path / RECORD_NAME).write_text("{ half-written")
    assert read_record(tmp_path) is None


def test_mistakes_are_usage_and_input_errors(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.mp4")
    with pytest.raises(UsageError, match="jobs"):
        run_batch(tmp_path / "in", tmp_path / "out", CONFIG, jobs=0)
    with pytest.raises(UsageError, match="executor"):
        run_batch(tmp_path / "in", tmp_path / "out", CONFIG, executor="dask")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        run_batch(tmp_path / "empty", tmp_path / "out", CONFIG)
    # `batch in -o in`: every video is under the output root, so none is an input; say why.
    for out in (tmp_path / "in", tmp_path):
        with pytest.raises(InputError, match=r"in: is inside the output root .*write the outputs elsewhere"):
            run_batch(tmp_path / "in", out, CONFIG)


# --- workers -----------------------------------------------------------------------------


def fake_work(item: BatchItem, config: Config, threads: int | None) -> BatchResult:
    """Stands in for process_item in worker processes: dies on 'crash', else succeeds."""
    if item.name.startswith("crash"):
        os._exit(9)  # as an out-of-memory kill would
    time.sleep(0.2)
    return BatchResult(video=item.name, status="done", worker=str(os.getpid()))


def test_a_worker_that_dies_fails_its_video_only(tmp_path: Path) -> None:
    items = [BatchItem(tmp_path / n, tmp_path / "out" / n, n) for n in ("ok1", "crash", "ok2", "ok3")]
    results: list[BatchResult] = []
    batch.workers.run_local(items, CONFIG, 2, results.append, work=fake_work)
    status = {r.video: r.status for r in results}
    assert status == {"ok1": "done", "crash": "failed", "ok2": "done", "ok3": "done"}
    assert "worker process died" in next(r.error for r in results if r.video == "crash")


@pytest.mark.slow
def test_reused_detector_tracks_like_a_fresh_one(clips: tuple[Path, Path]) -> None:
    """Batch workers keep one YOLO object for many videos: the tracker must start afresh."""
    from reid_merge.io.video import probe_video, read_frames
    from reid_merge.models.tracking import check_tracker_config, load_detector, track_frames

    tracker = check_tracker_config("bytetrack")

    def rows(model, info, clip: Path) -> list[tuple]:
        stream = track_frames(model, read_frames(probe_video(clip)), info, tracker=tracker, device="cpu")
        tracks = [t.tracks for t in stream]
        return [(int(f), int(t), *map(float, b)) for d in tracks for f, t, b in zip(d.frame, d.track_id, d.xyxy)]

    model, info = load_detector("offline")
    rows(model, info, clips[0])
    reused = rows(model, info, clips[1])
    fresh_model, _ = load_detector("offline")
    assert reused and reused == rows(fresh_model, info, clips[1])
    assert min(t for _, t, *_ in reused) == 1  # IDs restart for each video


@pytest.mark.slow
def test_models_that_cannot_load_stop_the_batch(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    shutil.copy(clips[0], tmp_path / "a.mp4")
    config = replace(CONFIG, reid_model="osnet_x1_0", reid_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ModelError, match="missing.pth"):
        run_batch(tmp_path, tmp_path / "out", config, jobs=1)


# --- the batch, local ------------------------------------------------------------


def first_run_rows(first: subprocess.CompletedProcess[str], out: Path) -> dict[str, BatchResult]:
    """The rows of a first batch over `make_batch_folder`, checked: three videos done, the
    broken one failed, the models loaded once per worker and not once per video."""
    assert first.returncode == 5, first.stderr
    rows = rows_by_video(out / "summary.json")
    assert {v: r.status for v, r in rows.items()} == {
        "a.mp4": "done",
        "b.mp4": "done",
        "broken.mp4": "failed",
        "sub/a.mp4": "done",
    }
    assert "cannot be decoded as a video" in rows["broken.mp4"].error
    loads: dict[str, int] = {}
    for row in rows.values():
        if row.worker:  # the broken input failed in the driver, before any worker
            loads[row.worker] = loads.get(row.worker, 0) + row.models_loaded
    assert set(loads.values()) == {1}, loads
    return rows


@pytest.mark.slow
def test_batch_runs_resumes_and_redoes_what_a_kill_left(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    videos = make_batch_folder(tmp_path / "videos", clips)
    out = tmp_path / "out"

    first = reid_merge("batch", videos, "-o", out, *SETTINGS)

    rows = first_run_rows(first, out)
    assert rows["a.mp4"].frames == CLIP_FRAMES and rows["a.mp4"].raw_tracks >= rows["a.mp4"].persons >= 1
    assert (rows["a.mp4"].frames, rows["a.mp4"].persons) == (rows["sub/a.mp4"].frames, rows["sub/a.mp4"].persons)
    for name in ("a", "b", "sub/a"):
        assert {"tracks.json", "tracks.txt", "raw_tracks.txt", RECORD_NAME} <= {p.name for p in (out / name).iterdir()}
    assert not (out / "broken").exists()
    assert rows["broken.mp4"].worker == ""  # probed in the driver: no worker started for it
    csv_text = (out / "summary.csv").read_text()
    assert csv_text.splitlines()[0].startswith("video,frames,raw_tracks,persons,seconds,status,error")
    assert "broken.mp4" in csv_text and "failed" in csv_text
    assert "1 failed" in first.stderr

    second = reid_merge("batch", videos, "-o", out, *SETTINGS)

    assert second.returncode == 5, second.stderr
    rows = rows_by_video(out / "summary.json")
    assert [rows[v].status for v in ("a.mp4", "b.mp4", "sub/a.mp4", "broken.mp4")] == ["skipped"] * 3 + ["failed"]
    assert not any(r.models_loaded for r in rows.values())  # nothing to do: no model loaded
    assert json.loads((out / "summary.json").read_text())["seconds"] < 20

    # What a kill -9 can leave: outputs without a record (killed after tracks.json), a
    # record from other settings, a record whose listed output is gone. All are redone;
    # the finished folder is not.
    (out / "a" / RECORD_NAME).unlink()
    record = json.loads((out / "b" / RECORD_NAME).read_text())
    (out / "b" / RECORD_NAME).write_text(json.dumps({**record, "key": "from other settings"}))
    (out / "sub" / "a" / "tracks.txt").unlink()
    third = run_batch(videos, out, CONFIG, jobs=1)
    assert [r.status for r in third.results] == ["done", "done", "failed", "done"]
    assert (out / "sub" / "a" / "tracks.txt").is_file()
    assert all(is_complete(out / n, read_record(out / n)["key"], read_record(out / n)) for n in ("a", "b", "sub/a"))


# --- the batch, Ray --------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_address() -> str:
    """A Ray instance on this machine, listening on 127.0.0.1 only, shut down afterwards."""
    if "ray" not in sys.modules:
        # read when ray is imported: servers bind to 127.0.0.1 (see batch.ray_tasks.run_ray)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def listening_addresses() -> set[str]:
    """Addresses on which this process's children (the Ray instance) accept connections."""
    import psutil

    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    sockets = psutil.net_connections(kind="inet")
    found = {c.laddr.ip for c in sockets if c.status == psutil.CONN_LISTEN and c.pid in ours}
    assert found, "no listening socket of the Ray instance found"
    return found


@pytest.mark.slow
def test_ray_batch_on_a_local_instance(tmp_path: Path, clips: tuple[Path, Path], ray_address: str) -> None:
    assert ray_address.startswith("127.0.0.1:")
    assert listening_addresses() <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    videos = make_batch_folder(tmp_path / "videos", clips)
    out = tmp_path / "out"

    # A client of a cluster with token authentication (Ray's default) says so, as Ray's docs ask.
    auth = {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    first = reid_merge(
        "batch", videos, "-o", out, "--executor", "ray", "--ray-address", ray_address, *SETTINGS, env=auth
    )

    first_run_rows(first, out)  # models loaded once per Ray worker process
    assert json.loads((out / "summary.json").read_text())["executor"] == "ray"

    # RAY_ADDRESS works as well as the flag; finished videos are skipped, an unfinished one
    # (its record gone, as after a kill) is redone on the cluster
    (out / "b" / RECORD_NAME).unlink()
    env = {**auth, "RAY_ADDRESS": ray_address}
    second = reid_merge("batch", videos, "-o", out, "--executor", "ray", *SETTINGS, env=env)

    assert second.returncode == 5, second.stderr
    rows = rows_by_video(out / "summary.json")
    statuses = [rows[v].status for v in ("a.mp4", "b.mp4", "sub/a.mp4", "broken.mp4")]
    assert statuses == ["skipped", "done", "skipped", "failed"]
    assert rows["b.mp4"].worker and (out / "b" / RECORD_NAME).is_file()


def test_unreachable_ray_address_fails_fast(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    shutil.copy(clips[0], touch(tmp_path / "in" / "a.mp4"))
    started = time.perf_counter()
    with pytest.raises(UsageError, match="cannot reach a Ray cluster"):
        run_batch(tmp_path / "in", tmp_path / "out", CONFIG, executor="ray", ray_address="127.0.0.1:1")
    assert time.perf_counter() - started < 10


def test_batch_help_names_its_options() -> None:
    result = reid_merge("batch", "--help")
    assert result.returncode == 0
    for option in ("--output", "--jobs", "--resume", "--no-resume", "--executor", "--ray-address", "--no-video"):
        assert option in result.stdout, option


@pytest.mark.parametrize("command", ["run", "merge", "batch"])
def test_every_merging_command_takes_the_same_merge_options(command: str) -> None:
    result = reid_merge(command, "--help")
    assert result.returncode == 0
    merge_options = ("--threshold", "--persons", "--aggregation", "--criterion", "--dispersion-weight")
    fill_options = ("--fill-gaps", "--no-fill-gaps", "--max-gap")
    other_options = ("--split-impure", "--crops", "--reid-model", "--reid-weights", "--config")
    for option in (*merge_options, *fill_options, *other_options):
        assert option in result.stdout, f"{command} lacks {option}"
