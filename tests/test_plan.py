"""The merge plan and `reid-merge apply`: corrections rewrite a run without detecting or embedding."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from rich.console import Console

from reid_merge.app.apply import apply_plan
from reid_merge.app.plan import MergeCache, correct_assignment, parse_merge, read_plan
from reid_merge.app.run_folder import MERGE_CACHE, MERGE_PLAN
from reid_merge.core.interpolation import FILLED_SCORE
from reid_merge.errors import InputError, UsageError
from reid_merge.io.tracks_io import read_mot
from tests.builders import tracks_from_rows, walking_track
from tests.synthetic_run import NUM_FRAMES, make_run


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    monkeypatch = pytest.MonkeyPatch()
    try:
        return make_run(tmp_path_factory.mktemp("scene"), monkeypatch, ground_truth=True)
    finally:
        monkeypatch.undo()


@pytest.fixture
def run_dir(pristine_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the run for each test (apply rewrites it); its plan still names the video."""
    copy = tmp_path / "run"
    shutil.copytree(pristine_run, copy)
    return copy


def persons_of(run: Path) -> dict[int, int]:
    """Raw track → person, read back from tracks.txt (not from our own JSON)."""
    doc = json.loads((run / "tracks.json").read_text())
    merged = read_mot(run / "tracks.txt")
    merged = merged[merged.score != FILLED_SCORE]  # boxes gap filling added: no raw track has them
    raw = MergeCache.load(run / MERGE_CACHE).tracks.sorted()
    assert len(merged) == len(raw)
    merged = merged.sorted()
    # tracks.txt is sorted by frame then person; match rows on (frame, box).
    by_box = {(int(f), *np.round(b, 1)): int(p) for f, p, b in zip(merged.frame, merged.track_id, merged.xyxy)}
    mapping: dict[int, int] = {}
    for f, t, b in zip(raw.frame, raw.track_id, raw.xyxy):
        person = by_box[(int(f), *np.round(b, 1))]
        assert mapping.setdefault(int(t), person) == person, f"track {t} split over persons"
    assert mapping == {m["track_id"]: m["person_id"] for m in doc["mapping"]}
    return mapping


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def reid_merge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reid_merge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(Path.home())},
    )


def test_run_writes_plan_cache_and_report_that_agree_with_the_tracks(pristine_run: Path) -> None:
    plan, assignment = read_plan(pristine_run / MERGE_PLAN)
    assert assignment == persons_of(pristine_run) == {1: 1, 2: 2, 3: 1, 4: 3}
    assert Path(plan["video"]).is_absolute() and Path(plan["video"]).is_file()
    assert plan["corrections"] == []
    cache = MergeCache.load(pristine_run / MERGE_CACHE)
    assert cache.track_ids.tolist() == [1, 2, 3, 4]
    assert len(cache.thumbnails) == len(cache.features) == len(cache.crop_track) > 0
    assert cache.cannot_link[0, 1] and not cache.cannot_link[0, 2]  # 1 and 2 share frames; 1 hands over to 3
    # 2 and 4 do not share a frame but 4 appears too far from where 2 was: the motion gate kept
    # them apart, and a manual merge overrides it (test_merge_joins_persons...)
    assert cache.cannot_link[1, 3]
    assert cache.ground_truth is not None
    assert json.loads((pristine_run / "tracks.json").read_text())["evaluation"]["merged"]["idf1"] == 1.0
    assert (pristine_run / "report.html").stat().st_size > 0


def test_split_gives_a_track_its_own_person_and_rewrites_every_output(run_dir: Path) -> None:
    before = snapshot(run_dir)
    result = apply_plan(run_dir, splits=[3])
    assert persons_of(run_dir) == {1: 1, 2: 2, 3: 3, 4: 4}  # renumbered by first appearance
    assert result.persons == 4
    after = snapshot(run_dir)
    for name in ("tracks.txt", "tracks.json", "merge_plan.json", "report.html", "annotated.mp4"):
        assert after[name] != before[name], f"{name} not rewritten"
    assert after[MERGE_CACHE] == before[MERGE_CACHE]  # nothing embedded again
    assert set(after) == set(before), "temporary or extra files left behind"
    with av.open(str(run_dir / "annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == NUM_FRAMES
    plan, _ = read_plan(run_dir / MERGE_PLAN)
    assert plan["corrections"] == [{"split": 3}]
    doc = json.loads((run_dir / "tracks.json").read_text())
    assert doc["summary"]["persons"] == 4 and doc["corrections"] == [{"split": 3}]
    assert doc["summary"]["tracks_joined"] == 0  # every person now one track
    # scored again against the ground truth the run was given (1 and 3 are one true person):
    # the split undoes the right merge, so the merged tracks score what the raw ones do
    scores = doc["evaluation"]
    assert scores["merged"]["num_pred_ids"] == 4
    assert scores["merged"]["idf1"] == pytest.approx(scores["raw"]["idf1"]) and scores["raw"]["idf1"] < 1.0
    assert report_persons(run_dir) == 4


def filled_frames(run: Path) -> dict[int, list[int]]:
    """Person → the frames of their boxes that gap filling added, from tracks.json and tracks.txt."""
    doc = json.loads((run / "tracks.json").read_text())
    in_json = {t["track_id"]: t["filled_frames"] for t in doc["tracks"] if t["filled_frames"]}
    merged = read_mot(run / "tracks.txt")
    filled = merged[merged.score == FILLED_SCORE]
    in_txt = {int(p): filled.frame[filled.track_id == p].tolist() for p in filled.track_ids}
    assert in_json == in_txt and doc["summary"]["boxes_filled"] == sum(map(len, in_json.values()))
    return in_json


def test_apply_fills_the_gaps_of_the_persons_it_makes(run_dir: Path) -> None:
    assert filled_frames(run_dir) == {1: [21, 22]}  # the run joined 1 and 3 and filled between them
    apply_plan(run_dir, splits=[3])
    assert filled_frames(run_dir) == {}
    apply_plan(run_dir, merges=[[1, 3]])
    assert filled_frames(run_dir) == {1: [21, 22]}
    assert "boxes filled" in (run_dir / "report.html").read_text()
    assert json.loads((run_dir / "tracks.json").read_text())["summary"]["gaps_filled"] == "all"


def report_persons(run: Path) -> int:
    return (run / "report.html").read_text().count('class="person"')


def test_merge_joins_persons_and_corrections_accumulate(run_dir: Path) -> None:
    apply_plan(run_dir, splits=[3])
    apply_plan(run_dir, merges=[[2, 4]])
    assert persons_of(run_dir) == {1: 1, 2: 2, 3: 3, 4: 2}
    plan, _ = read_plan(run_dir / MERGE_PLAN)
    assert plan["corrections"] == [{"split": 3}, {"merge": [2, 4]}]
    assert report_persons(run_dir) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--merge", "1,2"), "cannot merge 1,2: tracks 1 and 2 are both in frame 1, so they are two people"),
        (("--merge", "2,1"), "tracks 1 and 2 are both in frame 1"),
        (
            ("--merge", "4,3"),
            "tracks 1 and 2 are both in frame 1, so they are two people (1 is one person with 3; 2 is",
        ),
        (("--merge", "1,99"), "no track 99 in this run"),
        (("--split", "7"), "no track 7 in this run"),
        (("--merge", "3"), "expected two or more different track IDs"),
        (("--merge", "a,b"), "expected track IDs separated by commas"),
    ],
    ids=[
        "co-occurring",
        "co-occurring-reversed",
        "co-occurring-via-person",
        "unknown-merge",
        "unknown-split",
        "one-id",
        "not-numbers",
    ],
)
def test_refused_corrections_exit_2_and_change_nothing(run_dir: Path, args: tuple[str, ...], message: str) -> None:
    if args == ("--merge", "4,3"):
        apply_plan(run_dir, merges=[[2, 4]])  # now 4 is one person with 2, who shares frames with 3
    before = snapshot(run_dir)
    result = reid_merge("apply", run_dir, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(run_dir) == before


def test_edited_plan_regroups_tracks(run_dir: Path, tmp_path: Path) -> None:
    doc = json.loads((run_dir / MERGE_PLAN).read_text())
    for entry in doc["assignment"]:
        entry["person_id"] = {1: 7, 2: 5, 3: 7, 4: 5}[entry["track_id"]]  # any labels; 2 and 4 together
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    result = reid_merge("apply", run_dir, "--plan", edited, "--no-video")
    assert result.returncode == 0, result.stderr
    assert persons_of(run_dir) == {1: 1, 2: 2, 3: 1, 4: 2}
    assert not (run_dir / "annotated.mp4").exists()  # it showed the old assignment
    assert "annotated.mp4 removed" in result.stderr
    assert read_plan(run_dir / MERGE_PLAN)[0]["corrections"] == [{"plan": str(edited)}]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["assignment"][1].update(person_id=1),
            "tracks 1 and 2 are one person there but are both in frame 1",
        ),
        (lambda d: d["assignment"].pop(), "no person for tracks 4"),
        (lambda d: d["assignment"].append({"track_id": 9, "person_id": 1}), "tracks 9 are not tracks of this run"),
        (lambda d: d["assignment"][0].update(person_id="one"), "expected integer 'track_id' and 'person_id'"),
        (lambda d: d.update(format="other"), "not a merge plan"),
        (lambda d: d.update(cache="../elsewhere.npz"), "must be a file name in the run folder"),
    ],
    ids=["co-occurring", "missing-track", "unknown-track", "not-integer", "wrong-format", "cache-path"],
)
def test_bad_edited_plans_are_input_errors(run_dir: Path, tmp_path: Path, edit, message: str) -> None:
    doc = json.loads((run_dir / MERGE_PLAN).read_text())
    edit(doc)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    before = snapshot(run_dir)
    with pytest.raises(InputError, match="edited.json") as caught:
        apply_plan(run_dir, plan_path=edited)
    assert message in str(caught.value)
    assert snapshot(run_dir) == before


def test_missing_video_skips_the_video_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "scene", monkeypatch)
    (tmp_path / "scene" / "scene.mp4").unlink()
    result = apply_plan(run, splits=[3])
    assert any("is gone" in note for note in result.notes)
    assert not (run / "annotated.mp4").exists()
    assert persons_of(run) == {1: 1, 2: 2, 3: 3, 4: 4}


def written_persons(run: Path) -> tuple[dict[int, int], dict[int, int], list[int]]:
    """Track → person and person → the person it doubles, from tracks.json; the persons of tracks.txt."""
    doc = json.loads((run / "tracks.json").read_text())
    mapping = {m["track_id"]: m["person_id"] for m in doc["mapping"]}
    doubles = {p["person_id"]: p["doubles"] for p in doc["persons"] if "doubles" in p}
    assert doc["summary"]["doubles_left_out"] == len(doubles)
    assert doc["summary"]["persons"] == len(set(mapping.values())) - len(doubles)
    return mapping, doubles, read_mot(run / "tracks.txt").track_ids.tolist()


def test_a_person_boxed_twice_is_left_out_and_stays_out_after_corrections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path / "scene", monkeypatch, double=True)  # track 5 lies inside track 2's boxes
    # The double keeps its place in the mapping, numbered after the persons tracks.txt holds.
    assert written_persons(run) == ({1: 1, 2: 2, 3: 1, 4: 3, 5: 4}, {4: 2}, [1, 2, 3])
    doc = json.loads((run / "tracks.json").read_text())
    assert any("4 doubles 2" in note for note in doc["notes"])
    assert "boxed twice" in (run / "report.html").read_text()
    result = apply_plan(run, splits=[3])
    assert written_persons(run) == ({1: 1, 2: 2, 3: 3, 4: 4, 5: 5}, {5: 2}, [1, 2, 3, 4])
    assert (result.persons, result.doubles_left_out) == (4, 1)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(result.table())
    assert re.search(r"persons left out +│ 1 \(boxed twice", console.export_text())
    # Kept on request, and from then on.
    apply_plan(run, merges=[[1, 3]], drop_doubles=False)
    assert written_persons(run) == ({1: 1, 2: 2, 3: 1, 4: 4, 5: 3}, {}, [1, 2, 3, 4])
    apply_plan(run)
    assert written_persons(run)[1] == {}
    done = reid_merge("apply", run, "--drop-doubles", "--no-video")
    assert done.returncode == 0, done.stderr
    assert written_persons(run) == ({1: 1, 2: 2, 3: 1, 4: 3, 5: 4}, {4: 2}, [1, 2, 3])
    # A run from before doubles were left out: apply writes it as that run did, double and all.
    doc = json.loads((run / "tracks.json").read_text())
    del doc["parameters"]["drop_doubles"]
    (run / "tracks.json").write_text(json.dumps(doc))
    apply_plan(run, splits=[3])
    assert written_persons(run) == ({1: 1, 2: 2, 3: 4, 4: 5, 5: 3}, {}, [1, 2, 3, 4, 5])


def test_run_folder_without_a_plan_is_an_input_error(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / MERGE_PLAN).unlink()
    with pytest.raises(InputError, match="no merge_plan.json"):
        apply_plan(run_dir, splits=[3])
    with pytest.raises(InputError, match="no tracks.json"):
        apply_plan(tmp_path)
    (tmp_path / "run" / MERGE_CACHE).write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable merge cache"):
        MergeCache.load(tmp_path / "run" / MERGE_CACHE)


def test_cache_round_trips(pristine_run: Path, tmp_path: Path) -> None:
    cache = MergeCache.load(pristine_run / MERGE_CACHE)
    cache.save(tmp_path / "copy.npz")
    again = MergeCache.load(tmp_path / "copy.npz")
    np.testing.assert_array_equal(again.features, cache.features)
    np.testing.assert_array_equal(again.similarity, cache.similarity)
    assert again.thumbnails == cache.thumbnails
    assert again.ground_truth is not None and len(again.ground_truth.boxes) == len(cache.ground_truth.boxes)  # type: ignore[union-attr]
    assert len(again.backfilled) == 0  # the run did not backfill


def test_cache_keeps_backfilled_boxes_and_refuses_those_of_unknown_tracks(pristine_run: Path, tmp_path: Path) -> None:
    cache = MergeCache.load(pristine_run / MERGE_CACHE)
    track = int(cache.track_ids[0])
    boxes = tracks_from_rows(walking_track(track, range(1, 4)), score=0.4)
    dataclasses.replace(cache, backfilled=boxes).save(tmp_path / "backfilled.npz")
    again = MergeCache.load(tmp_path / "backfilled.npz")
    np.testing.assert_array_equal(again.backfilled.xyxy, boxes.xyxy)
    np.testing.assert_array_equal(again.backfilled.track_id, boxes.track_id)
    stranger = tracks_from_rows(walking_track(int(cache.track_ids.max()) + 1, range(1, 4)))
    dataclasses.replace(cache, backfilled=stranger).save(tmp_path / "stranger.npz")
    with pytest.raises(InputError, match="inconsistent"):
        MergeCache.load(tmp_path / "stranger.npz")


# The corrections alone, on track sets built from lists.

SCENE = tracks_from_rows(
    walking_track(1, range(1, 11))
    + walking_track(2, range(1, 31), x0=300)
    + walking_track(3, range(15, 25))
    + walking_track(4, range(35, 40))
)


@pytest.mark.parametrize(
    ("assignment", "merges", "splits", "expected"),
    [
        ({1: 1, 2: 2, 3: 1, 4: 3}, [], [], {1: 1, 2: 2, 3: 1, 4: 3}),
        ({1: 1, 2: 2, 3: 1, 4: 3}, [], [3], {1: 1, 2: 2, 3: 3, 4: 4}),
        ({1: 1, 2: 2, 3: 1, 4: 3}, [[4, 2]], [], {1: 1, 2: 2, 3: 1, 4: 2}),
        ({1: 1, 2: 2, 3: 1, 4: 3}, [[4, 3]], [3], {1: 1, 2: 2, 3: 3, 4: 3}),  # move 3 from P1 to 4's person
        ({1: 1, 2: 2, 3: 1, 4: 3}, [[1, 4], [4, 1]], [], {1: 1, 2: 2, 3: 1, 4: 1}),  # idempotent
        ({1: 10, 2: 20, 3: 30, 4: 40}, [[3, 4], [1, 3]], [], {1: 1, 2: 2, 3: 1, 4: 1}),  # chained
        ({1: 1, 2: 2, 3: 3, 4: 4}, [], [1], {1: 1, 2: 2, 3: 3, 4: 4}),  # already alone
    ],
    ids=["none", "split", "merge", "move", "repeated", "chained", "split-alone"],
)
def test_corrections_on_top_of_an_assignment(
    assignment: dict[int, int], merges: list[list[int]], splits: list[int], expected: dict[int, int]
) -> None:
    assert correct_assignment(SCENE, assignment, merges, splits) == expected


def test_merge_of_persons_that_share_a_frame_is_refused_naming_the_tracks() -> None:
    expected = (
        r"cannot merge 1,4: tracks 1 and 2 are both in frame 1, so they are two people \(2 is one person with 4\)"
    )
    with pytest.raises(UsageError, match=expected):
        correct_assignment(SCENE, {1: 1, 2: 2, 3: 1, 4: 2}, merges=[[1, 4]])


def test_parse_merge() -> None:
    assert parse_merge("3,17,20") == [3, 17, 20]
    with pytest.raises(UsageError):
        parse_merge("3,3")


# --- values read back from a run's files are data, never markup or shell -------------------------


def test_values_read_back_from_tracks_json_are_escaped_in_the_report(tmp_path: Path, pristine_run: Path) -> None:
    run = tmp_path / "run $(touch pwned)"
    shutil.copytree(pristine_run, run)
    doc = json.loads((run / "tracks.json").read_text())
    script = "<script>document.title='owned'</script>"
    doc["evaluation"]["raw"]["idf1"] = script
    doc["evaluation"]["raw"]["num_gt_ids"] = script
    doc["notes"] = [*doc.get("notes", []), f"<img src=x onerror=alert(1)>{script}"]
    doc["models"]["reid"]["name"] = script
    (run / "tracks.json").write_text(json.dumps(doc))

    apply_plan(run, splits=[3], write_video=False)

    page = (run / "report.html").read_text()
    assert "document.title='owned'" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;") >= 4
    # The command shown to correct this run is one shell word per argument, whatever the folder's name.
    hint = page.split("To correct the merge: <code>")[1].split("</code>")[0]
    import html
    import shlex

    assert shlex.split(html.unescape(hint))[:3] == ["reid-merge", "apply", str(run)]


def _cache_with(source: Path, target: Path, name: str, npy: bytes) -> Path:
    """A copy of the cache `source` whose array `name` is replaced by the raw `.npy` bytes `npy`."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for member in old.infolist():
            new.writestr(member.filename, npy if member.filename == f"{name}.npy" else old.read(member))
    return target


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make_npy", "message"),
    [
        # A header that claims 3.2 GB over 64 bytes: np.load would allocate what it claims.
        (lambda: _npy_header((20000, 20000)) + bytes(64), "claims (20000, 20000) float64 but holds 64 bytes"),
        # An honest 72 MB array that does not fit the run's 4 tracks: refused before it is read.
        (lambda: _npy_header((3000, 3000)) + bytes(3000 * 3000 * 8), "has shape (3000, 3000), which does not fit"),
        (lambda: _npy_header((4,), "|O") + bytes(32), "claims (4,) object"),
    ],
    ids=["lying-header", "too-large-for-the-run", "objects"],
)
def test_cache_arrays_are_size_checked_from_their_headers(
    pristine_run: Path, tmp_path: Path, make_npy: Callable[[], bytes], message: str
) -> None:
    import tracemalloc

    bad = _cache_with(pristine_run / MERGE_CACHE, tmp_path / MERGE_CACHE, "similarity", make_npy())
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="malformed merge cache") as caught:
            MergeCache.load(bad)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message in str(caught.value) and str(bad) in str(caught.value)
    assert peak < 20_000_000, f"{peak} bytes allocated while refusing the cache"


# --- apply with a plan or run folder that was edited, moved or cannot be written -----------------


def _edit_plan(run: Path, target: Path, **changes: object) -> Path:
    doc = json.loads((run / MERGE_PLAN).read_text())
    doc.update(changes)
    target.write_text(json.dumps(doc))
    return target


def test_plan_naming_another_video_is_refused(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.mp4"
    with av.open(str(other), "w") as container:  # another clip: 32x32, 3 frames
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    edited = _edit_plan(run_dir, tmp_path / "edited.json", video=str(other))
    before = snapshot(run_dir)
    with pytest.raises(InputError, match=r"other\.mp4: 32x32, 3 frames, but the run was made from a \d+x\d+ video"):
        apply_plan(run_dir, plan_path=edited)
    assert snapshot(run_dir) == before


def test_relative_video_in_a_plan_is_beside_the_run(
    run_dir: Path, pristine_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(json.loads((pristine_run / MERGE_PLAN).read_text())["video"], run_dir / "clip.mp4")
    edited = _edit_plan(run_dir, tmp_path / "edited.json", video="clip.mp4")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the run folder: the path must not be taken from here
    old_video = (run_dir / "annotated.mp4").read_bytes()
    result = apply_plan(run_dir, splits=[3], plan_path=edited)
    assert not any("gone" in note or "removed" in note for note in result.notes), result.notes
    assert (run_dir / "annotated.mp4").read_bytes() != old_video  # rewritten, not deleted
    assert read_plan(run_dir / MERGE_PLAN)[0]["video"] == str(run_dir / "clip.mp4")


@pytest.mark.parametrize(
    ("where", "edit", "message"),
    [
        ("plan", lambda d: d.update(corrections=[{"merge": 5}]), 'corrections[0]: expected {"merge": [track IDs]}'),
        ("plan", lambda d: d.update(run_timings={"track": "slow"}), "expected 'run_timings' to map stages to seconds"),
        ("tracks", lambda d: d["parameters"].update(threshold="abc"), "parameters.threshold: expected a number"),
        ("tracks", lambda d: d.update(notes="one note"), "expected 'notes' to be a JSON list"),
        ("tracks", lambda d: d.update(evaluation="high"), "expected 'evaluation' to be a JSON dict"),
        ("tracks", lambda d: d["summary"].update(frames=1.5), "summary.frames: expected an integer"),
        ("tracks", lambda d: d.update(splits=[{"track_id": 1, "frame": 9}]), "expected 'splits' to be a list of"),
        (
            "tracks",
            lambda d: d["summary"].update(gaps_filled="most"),
            "summary.gaps_filled: expected one of none, all, sure",
        ),
    ],
    ids=[
        "merge-not-a-list",
        "timings-not-numbers",
        "threshold-not-a-number",
        "notes",
        "evaluation",
        "frames",
        "splits",
        "gaps-filled",
    ],
)
def test_malformed_optional_fields_are_input_errors(run_dir: Path, where: str, edit, message: str) -> None:
    name = MERGE_PLAN if where == "plan" else "tracks.json"
    doc = json.loads((run_dir / name).read_text())
    edit(doc)
    (run_dir / name).write_text(json.dumps(doc))
    before = snapshot(run_dir)
    result = reid_merge("apply", run_dir, "--split", "3", "--no-video")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().startswith(f"error: {run_dir / name}: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # no "annotated.mp4 removed" before the error
    assert snapshot(run_dir) == before


def test_full_disk_while_writing_is_an_input_error_naming_the_folder(run_dir: Path) -> None:
    """A file-size limit makes the writes fail as a full disk does (EFBIG rather than ENOSPC)."""
    import resource
    import signal

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

    before = snapshot(run_dir)
    result = subprocess.run(
        [sys.executable, "-m", "reid_merge", "apply", str(run_dir), "--split", "3", "--no-video"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(Path.home())},
        preexec_fn=small_files,
    )
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"error: {run_dir}: cannot write the outputs: File too large"), line
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(run_dir) == before


def test_plan_with_a_byte_order_mark_reads_and_huge_numbers_are_input_errors(run_dir: Path, tmp_path: Path) -> None:
    text = (run_dir / MERGE_PLAN).read_text()
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_plan(bom)[1] == read_plan(run_dir / MERGE_PLAN)[1]
    huge = tmp_path / "huge.json"
    huge.write_text(text.replace('"track_id": 1,', '"track_id": ' + "1" * 5000 + ",", 1))
    with pytest.raises(InputError, match=r"huge\.json: not valid JSON \(Exceeds the limit"):
        read_plan(huge)
