from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reid_merge.errors import InputError
from reid_merge.tracks import TrackSet, cooccurrence
from reid_merge.tracks_io import format_mot, read_mot, read_tracks, tracks_to_json
from tests.builders import tracks_from_rows, walking_track
from tests.data_paths import SHARED_DATA


@pytest.fixture
def two_tracks() -> TrackSet:
    return tracks_from_rows(walking_track(3, range(1, 6)) + walking_track(7, range(4, 9), x0=300.0))


def test_mot_round_trip(tmp_path: Path, two_tracks: TrackSet) -> None:
    path = tmp_path / "t.txt"
    path.write_text(format_mot(two_tracks))
    back = read_mot(path)
    expected = two_tracks.sorted()
    np.testing.assert_array_equal(back.frame, expected.frame)
    np.testing.assert_array_equal(back.track_id, expected.track_id)
    np.testing.assert_allclose(back.xyxy, expected.xyxy, atol=0.01)
    np.testing.assert_allclose(back.score, expected.score, atol=1e-4)
    assert path.read_text().splitlines()[0].count(",") == 9  # MOT15 10 columns


def test_json_round_trip(tmp_path: Path, two_tracks: TrackSet) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"tracks": tracks_to_json(two_tracks)}))
    back = read_tracks(path)
    np.testing.assert_array_equal(back.sorted().track_id, two_tracks.sorted().track_id)
    np.testing.assert_allclose(back.sorted().xyxy, two_tracks.sorted().xyxy, atol=0.01)


def test_reads_both_mot_layouts(tmp_path: Path) -> None:
    mot15 = tmp_path / "a.txt"
    mot15.write_text("1,2,10,20,30,40,1,-1,-1,-1\n")
    mot16 = tmp_path / "b.txt"
    mot16.write_text("1,2,10,20,30,40,0.5,1,0.8\n")
    for path, conf in ((mot15, 1.0), (mot16, 0.5)):
        t = read_mot(path)
        assert t.xyxy.tolist() == [[10, 20, 40, 60]] and t.score.tolist() == [conf]


@pytest.mark.skipif(not (SHARED_DATA / "TUD-Campus").is_dir(), reason="shared data not present")
def test_reads_real_ground_truth() -> None:
    t = read_mot(SHARED_DATA / "TUD-Campus" / "gt" / "gt.txt")
    assert len(t) == 359 and len(t.track_ids) == 8 and t.frame.min() == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3\n", ":1: expected at least 6"),
        ("1,2,10,20,abc,40\n", "field 'w' is not a number"),
        ("0,2,10,20,30,40\n", "frames are 1-based"),
        ("1,2,10,20,-3,40\n", "width and height must be positive"),
        ("1,-1,10,20,30,40\n", "detections file"),
        ("1,2,10,20,30,40\n1,2,11,20,30,40\n", "two boxes in frame 1"),
        ("1,2,10,20,nan,40\n", "not finite"),
    ],
    ids=["short-line", "non-numeric", "frame-zero", "negative-size", "det-file", "duplicate", "nan"],
)
def test_mot_errors_name_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_tracks(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "doc",
    [
        "[]",
        '{"tracks": [{"track_id": "a", "detections": []}]}',
        '{"tracks": [{"track_id": 1, "detections": [[1, 0, 0, 10]]}]}',
        '{"tracks": [{"track_id": 1, "detections": [[1, 10, 0, 0, 10, 1]]}]}',
        "{not json",
    ],
    ids=["not-object", "bad-id", "short-detection", "inverted-box", "syntax"],
)
def test_json_errors(tmp_path: Path, doc: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(doc)
    with pytest.raises(InputError, match="bad.json"):
        read_tracks(path)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_tracks(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a folder"):
        read_tracks(tmp_path)


def test_trackset_validates_shapes() -> None:
    with pytest.raises(ValueError, match="expected length 2, got 1"):
        TrackSet(np.array([1, 2]), np.array([1]), np.zeros((2, 4)), np.ones(2))
    with pytest.raises(ValueError, match=r"xyxy: expected shape \(2, 4\)"):
        TrackSet(np.array([1, 2]), np.array([1, 1]), np.zeros((2, 3)), np.ones(2))


def test_relabel_returns_new_set(two_tracks: TrackSet) -> None:
    merged = two_tracks.relabel({3: 1, 7: 1})
    assert set(merged.track_id.tolist()) == {1}
    assert set(two_tracks.track_id.tolist()) == {3, 7}


def test_cooccurrence_marks_tracks_sharing_a_frame(two_tracks: TrackSet) -> None:
    later = tracks_from_rows(walking_track(9, range(20, 25)))
    both = TrackSet.from_arrays(
        np.concatenate([two_tracks.frame, later.frame]),
        np.concatenate([two_tracks.track_id, later.track_id]),
        np.concatenate([two_tracks.xyxy, later.xyxy]),
        np.concatenate([two_tracks.score, later.score]),
    )
    together = cooccurrence(both, both.track_ids)
    assert together.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
