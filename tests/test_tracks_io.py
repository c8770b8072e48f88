from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_merge.core.tracks import TrackSet, cooccurrence
from reid_merge.errors import InputError
from reid_merge.io.tracks_io import (
    JSON_FORMAT,
    as_written,
    format_mot,
    read_mot,
    read_tracks,
    tracks_to_json,
    write_mot,
)
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
    unscored = tmp_path / "c.txt"
    unscored.write_text("1,2,10,20,30,40,-1,-1,-1,-1\n")  # conf not given: no score is no doubt
    for path, conf in ((mot15, 1.0), (mot16, 0.5), (unscored, 1.0)):
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


# --- properties: what the writers write the readers read back; garbage is an InputError ---

COORD = st.integers(-100_000, 1_000_000).map(lambda v: v / 100)  # pixels, on the 0.01 grid files keep
SIZE = st.integers(1, 1_000_000).map(lambda v: v / 100)
SCORE = st.integers(0, 10_000).map(lambda v: v / 10_000)


@st.composite
def track_sets(draw: st.DrawFn) -> TrackSet:
    keys = draw(st.lists(st.tuples(st.integers(1, 10**7), st.integers(0, 10**9)), unique=True, max_size=25))
    n = len(keys)
    corner = np.array(draw(st.lists(st.tuples(COORD, COORD), min_size=n, max_size=n)), dtype=float).reshape(n, 2)
    size = np.array(draw(st.lists(st.tuples(SIZE, SIZE), min_size=n, max_size=n)), dtype=float).reshape(n, 2)
    score = draw(st.lists(SCORE, min_size=n, max_size=n))
    keys_array = np.array(keys, dtype=np.int64).reshape(n, 2)
    return TrackSet.from_arrays(keys_array[:, 0], keys_array[:, 1], np.hstack([corner, corner + size]), score)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tracks_io_properties")


def _assert_same_tracks(back: TrackSet, expected: TrackSet) -> None:
    back, expected = back.sorted(), expected.sorted()
    np.testing.assert_array_equal(back.frame, expected.frame)
    np.testing.assert_array_equal(back.track_id, expected.track_id)
    np.testing.assert_allclose(back.xyxy, expected.xyxy, atol=1e-6)
    np.testing.assert_allclose(back.score, expected.score, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(tracks=track_sets())
def test_property_mot_round_trip(scratch: Path, tracks: TrackSet) -> None:
    path = scratch / "round_trip.txt"
    write_mot(path, tracks)
    _assert_same_tracks(read_tracks(path), tracks)


@settings(max_examples=150, deadline=None)
@given(tracks=track_sets())
def test_property_json_round_trip(scratch: Path, tracks: TrackSet) -> None:
    path = scratch / "round_trip.json"
    path.write_text(json.dumps({"format": JSON_FORMAT, "tracks": tracks_to_json(tracks)}))
    _assert_same_tracks(read_tracks(path), tracks)


def _read_or_input_error(path: Path) -> None:
    """The only acceptable outcomes: a valid track set, or an InputError that names the file."""
    try:
        tracks = read_tracks(path)
    except InputError as exc:
        assert str(path) in str(exc)
        return
    assert len(tracks.duplicate_rows()) == 0
    assert (tracks.frame >= 1).all() and (tracks.track_id >= 0).all()
    assert np.isfinite(tracks.xyxy).all() and (tracks.xyxy[:, 2:] > tracks.xyxy[:, :2]).all()


EXTREMES = st.sampled_from(["0", "-1", "1e30", "-1e30", "1e400", "nan", "inf", "-inf", "9007199254740993"])
TOKENS = st.one_of(
    EXTREMES,
    st.sampled_from(["abc", "", "#", "0x10", "1_0", "١"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=5),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([10**30, 10**400, -1, 0, 2**63, 2**53 + 1, 1e30, -1e30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
)


def _mutate(draw: st.DrawFn, row: list, garbage: st.SearchStrategy) -> list:
    """`row` with up to two fields replaced by `garbage`: mostly valid input gets past the
    first checks, which pure noise never does."""
    row = list(row)
    for _ in range(draw(st.integers(0, 2))):
        row[draw(st.integers(0, len(row) - 1))] = draw(garbage)
    return row


@st.composite
def mot_like_lines(draw: st.DrawFn) -> list[list[str]]:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(st.integers(1, 20)), draw(st.integers(0, 5)), 10, 20, draw(st.integers(1, 50)), 40, 0.9]
        row += [-1] * draw(st.integers(0, 3))
        lines.append([str(v) for v in _mutate(draw, row[: draw(st.integers(5, len(row)))], TOKENS)])
    return lines


@st.composite
def json_like_docs(draw: st.DrawFn) -> dict:
    tracks: list = []
    for _ in range(draw(st.integers(0, 3))):
        detections = []
        for _ in range(draw(st.integers(0, 3))):
            x, y = draw(st.integers(0, 500)), draw(st.integers(0, 500))
            box = [draw(st.integers(1, 20)), x, y, x + draw(st.integers(1, 50)), y + draw(st.integers(1, 50)), 0.5]
            detections.append(_mutate(draw, box, JSON_SCALARS))
        tracks.append({"track_id": draw(st.one_of(st.integers(0, 5), JSON_SCALARS)), "detections": detections})
    return {"tracks": tracks + draw(st.lists(JSON_VALUES, max_size=1))}


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".txt", ".json"]))
def test_property_random_bytes_are_read_or_rejected(scratch: Path, data: bytes, suffix: str) -> None:
    path = scratch / f"garbage{suffix}"
    path.write_bytes(data)
    _read_or_input_error(path)


@settings(max_examples=1000, deadline=None)
@given(lines=mot_like_lines(), separator=st.sampled_from([",", " ", ", "]))
def test_property_mot_like_garbage_is_read_or_rejected(scratch: Path, lines: list[list[str]], separator: str) -> None:
    path = scratch / "garbage.txt"
    path.write_text("\n".join(separator.join(tokens) for tokens in lines), encoding="utf-8", errors="surrogatepass")
    _read_or_input_error(path)


@settings(max_examples=1000, deadline=None)
@given(doc=json_like_docs() | JSON_VALUES)
def test_property_json_garbage_is_read_or_rejected(scratch: Path, doc: object) -> None:
    path = scratch / "garbage.json"
    path.write_text(json.dumps(doc), encoding="utf-8", errors="surrogatepass")
    _read_or_input_error(path)


def test_deeply_nested_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="deep.json"):
        read_tracks(path)


def test_as_written_is_what_a_written_file_reads_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 500, (40, 2))
    tracks = TrackSet.from_arrays(
        np.arange(40) // 7 + 1,
        (np.arange(40) * 3) % 7,
        np.concatenate([xy, xy + rng.uniform(5, 80, (40, 2))], axis=1),
        rng.random(40),
    )
    write_mot(tmp_path / "t.txt", tracks)
    expected, got = read_mot(tmp_path / "t.txt"), as_written(tracks)
    for name in ("frame", "track_id", "xyxy", "score"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert not np.array_equal(got.xyxy, tracks.sorted().xyxy)  # rounded to 0.01 px


def test_byte_order_mark_is_not_part_of_the_first_field(tmp_path: Path) -> None:
    """Windows tools write UTF-8 with a BOM; it must not make frame 1 'not a number'."""
    txt = tmp_path / "tracks.txt"
    txt.write_bytes("\ufeff1,1,10,20,30,40,0.9\n2,1,12,20,30,40,0.9\n".encode())
    assert read_tracks(txt).frame.tolist() == [1, 2]
    doc = tmp_path / "tracks.json"
    doc.write_bytes(("\ufeff" + '{"tracks": [{"track_id": 3, "detections": [[1, 1, 2, 11, 22, 0.5]]}]}').encode())
    assert read_tracks(doc).track_id.tolist() == [3]
