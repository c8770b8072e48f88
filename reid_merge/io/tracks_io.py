"""Read and write track sets: MOTChallenge txt and the project's own JSON.

MOTChallenge rows are ``frame,id,x,y,w,h,conf,...`` with 1-based frames and top-left x/y.
Both the 2015 layout (10 columns, ``wx,wy,wz`` world coordinates) and the MOT16+ layout
(9 columns, ``class,visibility``) are read; only the first seven columns matter here. Every
reader validates and names file, line and field in its error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from reid_merge.core.tracks import TrackSet
from reid_merge.errors import InputError, excerpt
from reid_merge.io.atomic import write_text_atomic

JSON_FORMAT = "reid-merge.tracks"
MOT_FIELDS = ("frame", "id", "x", "y", "w", "h", "conf")
MAX_INTEGER = 2**53  # frames and IDs: MOT rows are parsed as float64, exact up to here
MAX_COORDINATE = 1e7  # pixels: far beyond any frame, and small enough that x + w > x holds


def read_tracks(path: Path) -> TrackSet:
    """Read tracks from a ``.json`` file (ours) or any other file as MOTChallenge txt."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a tracks file (.txt or .json)")
    if path.suffix.lower() == ".json":
        return read_tracks_json(path)
    return read_mot(path)


def read_mot(path: Path) -> TrackSet:
    """Parse a MOTChallenge txt file (comma- or whitespace-separated).

    A conf that is missing or -1 (the format's "not given") reads as 1: no score is no doubt,
    and the merge's rules for unsure boxes (short unsure tracks, `fill_rule`) must not fire
    on a file that carries no scores.
    """
    values, _ = read_mot_table(path)
    if len(values) == 0:
        return TrackSet.empty()
    conf = np.where(np.isnan(values[:, 6]) | (values[:, 6] == -1), 1.0, values[:, 6])
    tracks = TrackSet.from_arrays(values[:, 0], values[:, 1], xywh_to_xyxy(values[:, 2:6]), conf)
    _check_unique(path, tracks)
    return tracks


def read_mot_table(
    path: Path, fields: tuple[str, ...] = MOT_FIELDS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The validated numeric columns of a MOTChallenge txt file, one row per detection.

    Shared by the tracks and ground-truth readers so that both check every row the same way
    (numbers, finite, 1-based integer frame, integer ID >= 0, positive box size).

    Args:
        path: the file.
        fields: names of the leading columns to parse (they name the field in errors); must
            start with `MOT_FIELDS[:6]`. Later columns are counted but not parsed.

    Returns:
        `(n, len(fields))` values, NaN where a row has fewer fields, and `(n,)` how many
        fields each row has (MOT15 rows have 10, MOT16+ ground truth rows 9).
    """
    rows: list[list[float]] = []
    counts: list[int] = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark, as Windows tools write, is no field
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as text ({exc.__class__.__name__})") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p for p in line.replace(",", " ").split()]
        if len(parts) < 6:
            raise InputError(
                f"{path}:{line_no}: expected at least 6 comma-separated fields "
                f"(frame,id,x,y,w,h[,conf,...]), got {len(parts)}"
            )
        values = []
        for name, raw in zip(fields, parts):
            try:
                value = float(raw)
            except ValueError:
                raise InputError(f"{path}:{line_no}: field '{name}' is not a number: {raw!r}") from None
            if not math.isfinite(value):
                raise InputError(f"{path}:{line_no}: field '{name}' is not finite: {raw!r}")
            values.append(value)
        frame, track_id, x, y, w, h = values[:6]
        _check_detection(f"{path}:{line_no}", frame, track_id, x, y, w, h)
        rows.append(values + [math.nan] * (len(fields) - len(values)))
        counts.append(len(parts))
    return np.array(rows, dtype=np.float64).reshape(-1, len(fields)), np.array(counts, dtype=np.int64)


def xywh_to_xyxy(xywh: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`(n, 4)` top-left corner and size to `(n, 4)` corners.

    >>> xywh_to_xyxy(np.array([[10.0, 20.0, 5.0, 8.0]])).tolist()
    [[10.0, 20.0, 15.0, 28.0]]
    """
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1)


def _check_detection(where: str, frame: float, track_id: float, x: float, y: float, w: float, h: float) -> None:
    if frame != int(frame) or not 1 <= frame <= MAX_INTEGER:
        raise InputError(
            f"{where}: field 'frame' must be an integer >= 1 (frames are 1-based) and <= 2**53, got {frame:g}"
        )
    if track_id != int(track_id) or not 0 <= track_id <= MAX_INTEGER:
        raise InputError(
            f"{where}: field 'id' must be an integer >= 0 and <= 2**53, got {track_id:g}"
            + (" (a detections file, not tracks?)" if track_id == -1 else "")
        )
    if max(abs(x), abs(y), abs(w), abs(h)) > MAX_COORDINATE:
        raise InputError(
            f"{where}: box coordinates must lie within {MAX_COORDINATE:g} pixels, got x={x:g} y={y:g} w={w:g} h={h:g}"
        )
    if not (x + w > x and y + h > y):  # not just w > 0: a size lost to rounding is no size
        raise InputError(f"{where}: box width and height must be positive, got w={w:g} h={h:g}")


def _check_unique(path: Path, tracks: TrackSet) -> None:
    dup = tracks.duplicate_rows()
    if len(dup):
        i = int(dup[0])
        raise InputError(
            f"{path}: track {tracks.track_id[i]} has two boxes in frame {tracks.frame[i]} "
            f"({len(dup)} duplicate (frame, id) rows)"
        )


def format_mot(tracks: TrackSet) -> str:
    """MOTChallenge 2015 layout, 10 columns, rows sorted by frame then ID."""
    t = tracks.sorted()
    lines = []
    for f, i, (x1, y1, x2, y2), s in zip(t.frame, t.track_id, t.xyxy, t.score):
        lines.append(f"{f},{i},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1")
    return "\n".join(lines) + ("\n" if lines else "")


def as_written(tracks: TrackSet) -> TrackSet:
    """The tracks as `format_mot` writes them and `read_mot` reads them back (boxes to 0.01 px,
    rows sorted): what a score of the written file sees, to the last bit."""
    rows = [line.split(",") for line in format_mot(tracks).splitlines()]
    values = np.array(rows, dtype=np.float64).reshape(-1, 10)
    return TrackSet.from_arrays(values[:, 0], values[:, 1], xywh_to_xyxy(values[:, 2:6]), values[:, 6])


def write_mot(path: Path, tracks: TrackSet) -> None:
    write_text_atomic(path, format_mot(tracks))


def tracks_to_json(tracks: TrackSet, filled: npt.NDArray[np.bool_] | None = None) -> list[dict[str, Any]]:
    """Tracks as JSON-ready entries ``{"track_id", "detections": [[frame, x1, y1, x2, y2, score]]}``.

    With `filled` (`(n,)` True for boxes that gap filling added), each entry also lists
    ``"filled_frames"``: the frames of its boxes that no detector found.
    """
    order = np.lexsort((tracks.track_id, tracks.frame))
    t = tracks[order]
    is_filled = filled[order] if filled is not None else None
    entries = []
    for track_id in t.track_ids:
        rows = t.track_id == track_id
        sel = t[rows]
        detections = [
            [int(f), *(round(float(v), 2) for v in box), round(float(s), 4)]
            for f, box, s in zip(sel.frame, sel.xyxy, sel.score)
        ]
        entry: dict[str, Any] = {"track_id": int(track_id), "detections": detections}
        if is_filled is not None:
            entry["filled_frames"] = sel.frame[is_filled[rows]].tolist()
        entries.append(entry)
    return entries


def read_tracks_json(path: Path) -> TrackSet:
    """Read the ``tracks`` list of a reid-merge JSON document."""
    return tracks_from_json(read_json_object(path), str(path))


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object; any problem is an `InputError` naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise InputError(f"{path}: not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    return doc


def dump_json(document: Any) -> str:
    """A JSON document as every JSON file of a run folder is written: indented by one, keys in
    their order, a final newline (the merge plan adds its own layout, `plan.dump_plan`)."""
    return json.dumps(document, indent=1) + "\n"


def is_json_integer(value: Any) -> TypeGuard[int]:
    """An integer read from JSON (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_json_number(value: Any) -> bool:
    """A finite number read from JSON."""
    return (isinstance(value, float) and math.isfinite(value)) or is_json_integer(value)


def tracks_from_json(doc: Any, where: str) -> TrackSet:
    if not isinstance(doc, dict) or not isinstance(doc.get("tracks"), list):
        raise InputError(f"{where}: expected a JSON object with a 'tracks' list")
    frames: list[int] = []
    ids: list[int] = []
    boxes: list[list[float]] = []
    scores: list[float] = []
    for k, entry in enumerate(doc["tracks"]):
        at = f"{where}: tracks[{k}]"
        if not isinstance(entry, dict) or "track_id" not in entry or "detections" not in entry:
            raise InputError(f"{at}: expected an object with 'track_id' and 'detections'")
        track_id = entry["track_id"]
        if not isinstance(track_id, int) or isinstance(track_id, bool) or not 0 <= track_id <= MAX_INTEGER:
            raise InputError(f"{at}.track_id: expected an integer >= 0 and <= 2**53, got {excerpt(track_id)}")
        if not isinstance(entry["detections"], list):
            raise InputError(f"{at}.detections: expected a list")
        for j, det in enumerate(entry["detections"]):
            where_det = f"{at}.detections[{j}]"
            if not isinstance(det, list) or len(det) != 6 or not all(_is_finite_number(v) for v in det):
                raise InputError(f"{where_det}: expected [frame, x1, y1, x2, y2, score] numbers, got {excerpt(det)}")
            f, x1, y1, x2, y2, s = det
            _check_detection(where_det, f, track_id, x1, y1, x2 - x1, y2 - y1)
            frames.append(int(f))
            ids.append(track_id)
            boxes.append([x1, y1, x2, y2])
            scores.append(s)
    tracks = TrackSet.from_arrays(frames, ids, np.array(boxes).reshape(-1, 4), scores)
    _check_unique(Path(where), tracks)
    return tracks


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False
