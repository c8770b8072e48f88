"""The editable merge plan and its cache: what ``reid-merge apply`` corrects a run from.

A run writes, beside its tracks:

- ``merge_plan.json``: the raw track → person assignment (the file a user edits), the
  corrections applied so far, the input video, the name of the cache.
- ``merge_cache.npz``: everything a correction needs that is slow to get again: the
  detections under the track IDs the plan assigns (after any impure-track splits), the
  similarity matrices the clustering used, and per crop its track, frame, feature and a
  64 px JPEG thumbnail (the report's gallery); the ground truth when ``--gt`` was given, so
  that corrections are scored again; the boxes backfilled at the tracks' starts, which join
  the persons after the merge as they did in the run.

Manual decisions (`correct_assignment`): ``--split T`` makes track T a person of its own,
``--merge A,B`` puts B's person into A's, refused when a track of the one person shares a
frame with a track of the other (they are two people). Manual decisions override the
clustering (the motion gate included: a user who says two tracks are one person is believed,
unless they are seen at the same time). The crop features are cached too, though `apply`
(`reid_merge.app.apply`) does not use them yet: they are the expensive part of a run, and
what re-clustering with other settings would start from.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reid_merge.app.config import setting_names
from reid_merge.app.run_folder import MERGE_CACHE
from reid_merge.core.assignment import person_ids_by_first_appearance
from reid_merge.core.tracks import TrackSet, cooccurrence
from reid_merge.errors import InputError, UsageError, excerpt
from reid_merge.io.tracks_io import is_json_integer, is_json_number

if TYPE_CHECKING:  # evaluation imports TrackEval, which only scoring needs
    from reid_merge.eval.scores import GroundTruth

PLAN_FORMAT = "reid-merge.merge-plan"
PLAN_VERSION = 1
CACHE_VERSION = 3  # 2: the ground truth with its flags and classes; 3: the backfilled boxes
#: Versions still read: a version 2 cache is a run without backfilled boxes.
READ_CACHE_VERSIONS = (2, CACHE_VERSION)
PLAN_HELP = (
    "Edit 'assignment' to regroup raw tracks: tracks given the same person_id become one person "
    "(any integers; persons are renumbered by first appearance; first_frame/last_frame are for reading only). "
    "Then run: reid-merge apply RUN_DIR --plan THIS_FILE. Tracks that share a frame can never be one person."
)


@dataclass(frozen=True)
class MergeCache:
    """What `apply` needs from a run besides the video (see the module docstring).

    Attributes:
        tracks: detections under the track IDs of the plan.
        track_ids: `(N,)` sorted track IDs, the rows of the matrices.
        similarity: `(N, N)` what the clustering used, ``1 - distance``; NaN for tracks held apart.
        appearance: `(N, N)` appearance similarity alone.
        cannot_link: `(N, N)` pairs the clustering could never join.
        crop_track: `(M,)` track of each crop.
        crop_frame: `(M,)` frame of each crop.
        features: `(M, D)` the embedder's features of each crop.
        thumbnails: M JPEG thumbnails.
        ground_truth: the ground truth the run was scored against, or None.
        backfilled: boxes backfilled at the tracks' starts, under their tracks' IDs (joined to
            the persons after the merge: `core.backfill.add_backfilled`).
    """

    tracks: TrackSet
    track_ids: npt.NDArray[np.int64]
    similarity: npt.NDArray[np.float64]
    appearance: npt.NDArray[np.float64]
    cannot_link: npt.NDArray[np.bool_]
    crop_track: npt.NDArray[np.int64]
    crop_frame: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    thumbnails: list[bytes]
    ground_truth: GroundTruth | None = None
    backfilled: TrackSet = field(default_factory=TrackSet.empty)

    def save(self, path: Path) -> None:
        """Write as a compressed ``.npz`` (no pickles) to `path`."""
        offsets = np.cumsum([0, *(len(t) for t in self.thumbnails)]).astype(np.int64)
        data = np.frombuffer(b"".join(self.thumbnails), dtype=np.uint8)
        gt = self.ground_truth.boxes if self.ground_truth is not None else TrackSet.empty()
        arrays: dict[str, Any] = {
            "version": np.array(CACHE_VERSION),
            **_trackset_arrays("det", self.tracks),
            **_trackset_arrays("bf", self.backfilled),
            "track_ids": self.track_ids,
            "similarity": self.similarity,
            "appearance": self.appearance,
            "cannot_link": self.cannot_link,
            "crop_track": self.crop_track,
            "crop_frame": self.crop_frame,
            "features": self.features.astype(np.float32),
            "thumbnail_data": data,
            "thumbnail_offsets": offsets,
            "has_ground_truth": np.array(self.ground_truth is not None),
            **_trackset_arrays("gt", gt),
            "gt_considered": self.ground_truth.considered if self.ground_truth is not None else np.zeros(0, bool),
            "gt_class": self.ground_truth.class_id if self.ground_truth is not None else np.zeros(0, np.int64),
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> MergeCache:
        """Read a cache written by `save`; an `InputError` names the file when it is not one."""
        try:
            _check_cache_headers(path)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file (the run's merge cache; run again to write it)") from None
        except ValueError as exc:
            raise InputError(f"{path}: malformed merge cache ({str(exc)[:200]})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path}: not a readable merge cache ({exc.__class__.__name__})") from None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path}: not a readable merge cache ({exc.__class__.__name__})") from None
        try:
            if int(arrays["version"]) not in READ_CACHE_VERSIONS:
                raise InputError(f"{path}: merge cache version {int(arrays['version'])}, expected {CACHE_VERSION}")
            offsets = arrays["thumbnail_offsets"]
            data = arrays["thumbnail_data"].tobytes()
            cache = cls(
                tracks=_trackset_from(arrays, "det"),
                track_ids=arrays["track_ids"].astype(np.int64),
                similarity=arrays["similarity"].astype(np.float64),
                appearance=arrays["appearance"].astype(np.float64),
                cannot_link=arrays["cannot_link"].astype(bool),
                crop_track=arrays["crop_track"].astype(np.int64),
                crop_frame=arrays["crop_frame"].astype(np.int64),
                features=arrays["features"].astype(np.float32),
                thumbnails=[data[a:b] for a, b in zip(offsets[:-1], offsets[1:])],
                ground_truth=_ground_truth_from(arrays) if bool(arrays["has_ground_truth"]) else None,
                backfilled=_trackset_from(arrays, "bf") if "bf_frame" in arrays else TrackSet.empty(),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: malformed merge cache ({exc.__class__.__name__}: {exc})") from None
        n = len(cache.track_ids)
        consistent = (
            np.array_equal(cache.track_ids, cache.tracks.track_ids)
            and np.isin(cache.backfilled.track_ids, cache.track_ids).all()
            and all(m.shape == (n, n) for m in (cache.similarity, cache.appearance, cache.cannot_link))
            and len(cache.crop_track) == len(cache.crop_frame) == len(cache.features) == len(cache.thumbnails)
        )
        if not consistent:
            raise InputError(f"{path}: malformed merge cache (arrays of inconsistent sizes)")
        return cache


#: Most bytes the arrays of a merge cache may hold in all: a run of 10 000 raw tracks needs
#: 1.7 GB (three N x N matrices); a file that claims more is refused before anything is read.
MAX_CACHE_BYTES = 4 << 30

#: Which dimensions of the cache's arrays must agree: the letters name the sizes.
_CACHE_SHAPES = {
    "version": "",
    "has_ground_truth": "",
    **{
        f"{prefix}_{name}": dims
        for prefix, rows in (("det", "d"), ("gt", "g"), ("bf", "f"))
        for name, dims in (("frame", rows), ("track_id", rows), ("xyxy", rows + "4"), ("score", rows))
    },
    "gt_considered": "g",
    "gt_class": "g",
    "track_ids": "n",
    "similarity": "nn",
    "appearance": "nn",
    "cannot_link": "nn",
    "crop_track": "m",
    "crop_frame": "m",
    "features": "mD",
    "thumbnail_data": "b",
    "thumbnail_offsets": "o",
}


def _check_cache_headers(path: Path) -> None:
    """Refuse a cache from its arrays' headers alone, before any array is read: `np.load`
    allocates what a header claims, so a small file could otherwise ask for gigabytes.

    Every array must be one the cache holds, with the bytes its header claims, no Python
    objects, and shapes that agree (the N x N matrices are as wide as ``track_ids`` is long).
    """
    sizes: dict[str, int] = {"4": 4}
    total = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            name = member.filename.removesuffix(".npy")
            dims = _CACHE_SHAPES.get(name)
            if dims is None:
                raise ValueError(f"unexpected array {name!r}")
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"{name}: npy format {version}")
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(stream)
                header_bytes = stream.tell()
            claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if dtype.hasobject or claimed != member.file_size - header_bytes:
                raise ValueError(
                    f"array {name!r} claims {shape} {dtype} but holds {member.file_size - header_bytes} bytes"
                )
            if len(shape) != len(dims) or any(sizes.setdefault(dim, size) != size for dim, size in zip(dims, shape)):
                raise ValueError(f"array {name!r} has shape {shape}, which does not fit the other arrays")
            total += claimed
    if total > MAX_CACHE_BYTES:
        raise ValueError(f"its arrays claim {total} bytes in all, more than {MAX_CACHE_BYTES}")
    if sizes.get("o", 1) != sizes.get("m", 0) + 1 or sizes.get("n", 0) > sizes.get("d", 0):
        raise ValueError("its arrays' sizes do not fit one another")


def parse_merge(value: str) -> list[int]:
    """``"3,17"`` → ``[3, 17]``: the tracks of one ``--merge``.

    >>> parse_merge("3, 17")
    [3, 17]
    """
    try:
        ids = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"--merge {value}: expected track IDs separated by commas, e.g. --merge 3,17") from None
    if len(set(ids)) < 2:
        raise UsageError(f"--merge {value}: expected two or more different track IDs, e.g. --merge 3,17")
    return ids


def check_assignment(tracks: TrackSet, assignment: Mapping[int, int], where: str) -> None:
    """An assignment must name every track of `tracks`, no other, and never join two that share a frame."""
    known = set(tracks.track_ids.tolist())
    unknown = sorted(set(assignment) - known)
    if unknown:
        raise InputError(f"{where}: tracks {_ids(unknown)} are not tracks of this run")
    missing = sorted(known - set(assignment))
    if missing:
        raise InputError(f"{where}: no person for tracks {_ids(missing)}")
    ids = tracks.track_ids
    label = np.array([assignment[int(t)] for t in ids])
    clash = np.argwhere(np.triu(cooccurrence(tracks, ids) & (label[:, None] == label[None, :]), k=1))
    if len(clash):
        a, b = (int(ids[k]) for k in clash[0])
        raise InputError(
            f"{where}: tracks {a} and {b} are one person there but are both in frame "
            f"{_shared_frame(tracks, a, b)}, so they are two people"
        )


def correct_assignment(
    tracks: TrackSet,
    assignment: Mapping[int, int],
    merges: Sequence[Sequence[int]] = (),
    splits: Sequence[int] = (),
) -> dict[int, int]:
    """Manual corrections on top of an assignment; person IDs renumbered ``1..P`` by first appearance.

    Splits are applied first, then merges in order, so ``--split 17 --merge 3,17`` moves track
    17 alone into the person of track 3.

    Args:
        tracks: the detections, track IDs as in `assignment`.
        assignment: track ID → person label (any integers; equal labels mean one person).
        merges: groups of track IDs whose persons become one; refused (`UsageError`) when a
            track of one of those persons shares a frame with a track of another.
        splits: track IDs that become persons of their own.

    >>> t = TrackSet.from_arrays([1, 2, 5, 6], [1, 2, 3, 4], np.zeros((4, 4)), [1, 1, 1, 1])
    >>> correct_assignment(t, {1: 1, 2: 1, 3: 2, 4: 2}, merges=[[1, 4]], splits=[3])
    {1: 1, 2: 1, 3: 2, 4: 1}
    """
    known = set(assignment)
    unknown = sorted(({t for group in merges for t in group} | set(splits)) - known)
    if unknown:
        raise UsageError(
            f"no track {_ids(unknown)} in this run (its tracks: {_ids(sorted(known))}; "
            "the IDs are the t-numbers of annotated.mp4 and report.html)"
        )
    labels = {int(t): int(p) for t, p in assignment.items()}
    fresh = max(labels.values(), default=0) + 1
    for track in splits:
        labels[int(track)] = fresh
        fresh += 1
    for group in merges:
        persons = {labels[int(t)] for t in group}
        members = sorted(t for t, p in labels.items() if p in persons)
        sub = tracks[np.isin(tracks.track_id, members)]
        together = np.argwhere(np.triu(cooccurrence(sub, np.array(members, dtype=np.int64)), k=1))
        if len(together):
            a, b = (members[k] for k in together[0])
            with_named = [f"{t} is one person with {_named(t, group, labels)}" for t in (a, b) if t not in group]
            raise UsageError(
                f"cannot merge {','.join(map(str, group))}: tracks {a} and {b} are both in frame "
                f"{_shared_frame(tracks, a, b)}, so they are two people"
                + (f" ({'; '.join(with_named)})" if with_named else "")
            )
        target = labels[int(group[0])]
        for t in members:
            labels[t] = target
    return renumber(tracks, labels)


def renumber(tracks: TrackSet, labels: Mapping[int, int]) -> dict[int, int]:
    """Person IDs ``1..P`` by first appearance for an assignment of arbitrary labels."""
    track_ids = tracks.track_ids
    if len(track_ids) == 0:
        return {}
    # Clusters numbered by their lowest track ID, as the clustering numbers them, so that two
    # persons who appear in the same frame keep the order the run gave them.
    _, first, inverse = np.unique([labels[int(t)] for t in track_ids], return_index=True, return_inverse=True)
    clusters = np.argsort(np.argsort(first))[inverse]
    return person_ids_by_first_appearance(tracks, track_ids, clusters.astype(np.int64))


def _shared_frame(tracks: TrackSet, a: int, b: int) -> int:
    """The first frame where tracks `a` and `b` both have a box (they must share one)."""
    return int(np.intersect1d(tracks.frame[tracks.track_id == a], tracks.frame[tracks.track_id == b])[0])


def _named(track: int, group: Sequence[int], labels: Mapping[int, int]) -> str:
    """The track of `group` that `track` is one person with."""
    return next(str(t) for t in group if labels[int(t)] == labels[track])


def _ids(values: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in values[:20])
    return shown + (f" and {len(values) - 20} more" if len(values) > 20 else "")


def plan_document(
    cache: MergeCache,
    shown: TrackSet,
    mapping: Mapping[int, int],
    video: str,
    corrections: Sequence[dict[str, Any]],
    run_timings: Mapping[str, float],
    decision: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON of ``merge_plan.json``; each track's first and last frame from `shown`, the boxes
    annotated.mp4 draws (its backfilled ones included)."""
    assignment = []
    for track_id in cache.track_ids.tolist():
        frames = shown.frame[shown.track_id == track_id]
        assignment.append(
            {
                "track_id": track_id,
                "person_id": int(mapping[track_id]),
                "first_frame": int(frames.min()),
                "last_frame": int(frames.max()),
            }
        )
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "how_to_edit": PLAN_HELP,
        "video": video,
        "cache": MERGE_CACHE,
        "decision": dict(decision),
        "run_timings": {k: round(float(v), 3) for k, v in run_timings.items()},
        "corrections": list(corrections),
        "assignment": assignment,
    }


def read_plan(path: Path) -> tuple[dict[str, Any], dict[int, int]]:
    """A merge plan's document and its assignment (track ID → person label), validated."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: editors on Windows add a BOM
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits, nesting too deep
        raise InputError(f"{path}: not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise InputError(f'{path}: not a merge plan (expected "format": "{PLAN_FORMAT}")')
    if doc.get("version") != PLAN_VERSION:
        raise InputError(f"{path}: merge plan version {doc.get('version')!r}, expected {PLAN_VERSION}")
    entries = doc.get("assignment")
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected an 'assignment' list")
    assignment: dict[int, int] = {}
    for k, entry in enumerate(entries):
        track_id, person_id = (entry.get(key) if isinstance(entry, dict) else None for key in ("track_id", "person_id"))
        if not (is_json_integer(track_id) and is_json_integer(person_id)):
            raise InputError(f"{path}: assignment[{k}]: expected integer 'track_id' and 'person_id', got {entry!r}")
        if track_id in assignment:
            raise InputError(f"{path}: assignment[{k}]: track {track_id} is listed twice")
        assignment[track_id] = person_id
    corrections = doc.get("corrections", [])
    if not isinstance(corrections, list):
        raise InputError(f"{path}: expected 'corrections' to be a list of objects")
    for k, correction in enumerate(corrections):
        if not _is_correction(correction):
            raise InputError(
                f'{path}: corrections[{k}]: expected {{"merge": [track IDs]}}, {{"split": track ID}} or '
                f'{{"plan": file}}, got {excerpt(correction)}'
            )
    timings = doc.get("run_timings", {})
    if not isinstance(timings, dict) or not all(is_json_number(v) for v in timings.values()):
        raise InputError(f"{path}: expected 'run_timings' to map stages to seconds, got {excerpt(timings)}")
    if not isinstance(doc.get("decision", {}), dict):
        raise InputError(f"{path}: expected 'decision' to be an object")
    for key in ("video", "cache"):
        if not isinstance(doc.get(key), str):
            raise InputError(f"{path}: expected a string '{key}'")
    if Path(doc["cache"]).name != doc["cache"]:
        raise InputError(f"{path}: 'cache' must be a file name in the run folder, got {doc['cache']!r}")
    return doc, assignment


def _is_correction(correction: Any) -> bool:
    """One entry of a plan's ``corrections``, as `apply_plan` writes them."""
    if not isinstance(correction, dict) or len(correction) != 1:
        return False
    (kind, value), *_ = correction.items()
    if kind == "merge":
        return isinstance(value, list) and all(is_json_integer(t) for t in value)
    return (kind == "split" and is_json_integer(value)) or (kind == "plan" and isinstance(value, str))


def _decision(document: Mapping[str, Any]) -> dict[str, Any]:
    params = document.get("parameters", {})
    return {k: params.get(k) for k in setting_names("in_plan")}


def _trackset_arrays(prefix: str, tracks: TrackSet) -> dict[str, np.ndarray]:
    return {f"{prefix}_{name}": getattr(tracks, name) for name in ("frame", "track_id", "xyxy", "score")}


def _trackset_from(arrays: Mapping[str, np.ndarray], prefix: str) -> TrackSet:
    return TrackSet.from_arrays(*(arrays[f"{prefix}_{name}"] for name in ("frame", "track_id", "xyxy", "score")))


def _ground_truth_from(arrays: Mapping[str, np.ndarray]) -> GroundTruth:
    from reid_merge.eval.scores import GroundTruth  # TrackEval: only for runs scored against ground truth

    boxes = _trackset_from(arrays, "gt")
    considered, class_id = arrays["gt_considered"].astype(bool), arrays["gt_class"].astype(np.int64)
    if not len(considered) == len(class_id) == len(boxes):
        raise ValueError("ground-truth arrays of different lengths")
    return GroundTruth(boxes, considered, class_id)


def dump_plan(plan: Mapping[str, Any]) -> str:
    """A plan as JSON with one line per assignment entry and per correction, easy to edit by hand.

    >>> print(dump_plan({"format": "f", "corrections": [], "assignment": [{"track_id": 1, "person_id": 1}]}))
    {
     "format": "f",
     "corrections": [],
     "assignment": [
      {"track_id": 1, "person_id": 1}
     ]
    }
    <BLANKLINE>
    """
    lists = [key for key in ("corrections", "assignment") if key in plan]
    text = json.dumps({**plan, **{key: f"__{key}__" for key in lists}}, indent=1)
    for key in lists:
        rows = ",\n  ".join(json.dumps(entry) for entry in plan[key])
        text = text.replace(json.dumps(f"__{key}__"), f"[\n  {rows}\n ]" if rows else "[]")
    return text + "\n"
