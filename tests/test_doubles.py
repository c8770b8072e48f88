"""Persons boxed twice: which are taken for a double of another, and which are kept."""

from __future__ import annotations

from reid_merge.core.doubles import find_doubles
from tests.builders import tracks_from_rows, walking_track


def shrunk(rows: list[tuple], track_id: int, frames: range, inset: float = 3.0) -> list[tuple]:
    """A second box inside each box of `rows` in `frames`, under `track_id`: part of the same person."""
    return [
        (f, track_id, x1 + inset, y1 + inset, x2 - inset, y2 - inset) for f, _, x1, y1, x2, y2 in rows if f in frames
    ]


def test_a_person_each_of_whose_boxes_lies_over_a_longer_ones_is_its_double() -> None:
    walker = walking_track(1, range(1, 41))
    persons = tracks_from_rows(walker + shrunk(walker, 2, range(10, 20)) + walking_track(3, range(1, 41), x0=400))
    assert find_doubles(persons) == {2: 1}


def test_one_frame_apart_keeps_a_person_as_someone_of_their_own() -> None:
    """Somebody walking out from behind another overlaps them less as they come out."""
    walker = walking_track(1, range(1, 41))
    behind = shrunk(walker, 2, range(10, 20))
    out = [(20, 2, x1 + 20.0, y1, x2 + 20.0, y2) for _, _, x1, y1, x2, y2 in walking_track(2, range(20, 21))]
    assert find_doubles(tracks_from_rows(walker + behind + out)) == {}


def test_a_person_covered_by_two_others_in_turn_is_kept() -> None:
    """Every box covered, but never all by one person: no one person was boxed twice."""
    first, second = walking_track(1, range(1, 21)), walking_track(3, range(21, 41))
    between = shrunk(first, 2, range(15, 21)) + shrunk(second, 2, range(21, 26))
    assert find_doubles(tracks_from_rows(first + second + between)) == {}


def test_the_shorter_of_two_is_the_double_and_of_its_equals_the_higher_id() -> None:
    walker = walking_track(4, range(1, 11))
    assert find_doubles(tracks_from_rows(walker + shrunk(walker, 7, range(1, 11)))) == {7: 4}
    assert find_doubles(tracks_from_rows(walker + shrunk(walker, 2, range(1, 11)))) == {4: 2}
    assert find_doubles(tracks_from_rows(walker[:5] + shrunk(walker, 2, range(1, 11)))) == {4: 2}


def test_a_double_of_two_people_doubles_the_longer() -> None:
    long, short = walking_track(1, range(1, 41)), walking_track(3, range(5, 15))  # short: long's own double
    double = shrunk(long, 2, range(8, 12))  # lies over both
    assert find_doubles(tracks_from_rows(long + short + double)) == {2: 1, 3: 1}


def test_boxes_overlapping_less_than_the_trackers_match_are_two_people() -> None:
    walker = walking_track(1, range(1, 21))
    beside = [(f, 2, x1 + 16.0, y1, x2 + 16.0, y2) for f, _, x1, y1, x2, y2 in walker[:10]]  # IoU 24/56
    assert find_doubles(tracks_from_rows(walker + beside)) == {}
