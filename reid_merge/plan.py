"""The editable merge plan, its cache, and ``reid-merge apply``: correct a run without redoing it.

A run writes, beside its tracks:

- ``merge_plan.json``: the raw track → person assignment (the file a user edits), the
  corrections applied so far, the input video, the name of the cache.
- ``merge_cache.npz``: everything a correction needs that is slow to get again: the
  detections under the track IDs the plan assigns (after any impure-track splits), the
  similarity matrices the clustering used, and per crop its track, frame, feature and a
  64 px JPEG thumbnail (the report's gallery); the ground truth when ``--gt`` was given, so
  that corrections are scored again.
- ``report.html`` (`reid_merge.report`).

`apply_plan` starts from the plan's assignment and applies manual decisions on top of it:
``--split T`` makes track T a person of its own, ``--merge A,B`` puts B's person into A's,
refused when a track of the one person shares a frame with a track of the other (they are
two people). Manual decisions override the clustering (the motion gate included: a user
who says two tracks are one person is believed, unless they are seen at the same time).
Persons are renumbered by first appearance and tracks, video, report and plan rewritten;
nothing is detected, tracked or embedded again. The crop features are cached too, though
`apply` does not use them yet: they are the expensive part of a run, and what re-clustering
with other settings would start from.
"""

from __future__ import annotations

import io
import json
import math
import shlex
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import numpy.typing as npt

from reid_merge.annotate import write_annotated_video
from reid_merge.assignment import person_ids_by_first_appearance
from reid_merge.atomic import StagedFiles, staged_files
from reid_merge.crops import CropSet
from reid_merge.errors import InputError, UsageError, excerpt
from reid_merge.impurity import apply_splits
from reid_merge.report import ReportData, render_report, thumbnail_jpeg
from reid_merge.similarity import describe
from reid_merge.tracks import TrackSet, cooccurrence
from reid_merge.tracks_io import as_written, format_mot, read_json_object, read_mot, tracks_to_json

if TYPE_CHECKING:  # evaluation imports TrackEval, which only scoring needs
    from reid_merge.evaluation import GroundTruth

PLAN_NAME = "merge_plan.json"
CACHE_NAME = "merge_cache.npz"
REPORT_NAME = "report.html"
REVIEW_NAMES = (REPORT_NAME, PLAN_NAME, CACHE_NAME)
PLAN_FORMAT = "reid-merge.merge-plan"
PLAN_VERSION = 1
CACHE_VERSION = 2  # 2: the ground truth with its flags and classes
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

    def save(self, path: Path) -> None:
        """Write as a compressed ``.npz`` (no pickles) to `path`."""
        offsets = np.cumsum([0, *(len(t) for t in self.thumbnails)]).astype(np.int64)
        data = np.frombuffer(b"".join(self.thumbnails), dtype=np.uint8)
        gt = self.ground_truth.boxes if self.ground_truth is not None else TrackSet.empty()
        arrays: dict[str, Any] = {
            "version": np.array(CACHE_VERSION),
            **_trackset_arrays("det", self.tracks),
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
            if int(arrays["version"]) != CACHE_VERSION:
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
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: malformed merge cache ({exc.__class__.__name__}: {exc})") from None
        n = len(cache.track_ids)
        consistent = (
            np.array_equal(cache.track_ids, cache.tracks.track_ids)
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
        for prefix, rows in (("det", "d"), ("gt", "g"))
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


def build_cache(
    outcome: Any, crops: CropSet, features: npt.NDArray[np.floating], ground_truth: GroundTruth | None
) -> MergeCache:
    """The cache of one merge decision (`pipeline.MergeOutcome`) and the crops it compared."""
    _, crop_track = apply_splits(outcome.tracks, crops.track_id, crops.frame, outcome.splits)
    n = len(outcome.track_ids)
    if outcome.distance is not None and outcome.cannot_link is not None:
        similarity, cannot_link = 1.0 - outcome.distance, outcome.cannot_link
    else:  # an outcome built without the clustering's inputs: appearance and shared frames
        similarity, cannot_link = outcome.similarity, cooccurrence(outcome.tracks, outcome.track_ids)
    return MergeCache(
        tracks=outcome.tracks,
        track_ids=np.asarray(outcome.track_ids, dtype=np.int64),
        similarity=np.asarray(similarity, dtype=np.float64).reshape(n, n),
        appearance=np.asarray(outcome.similarity, dtype=np.float64).reshape(n, n),
        cannot_link=np.asarray(cannot_link, dtype=bool).reshape(n, n),
        crop_track=crop_track.astype(np.int64),
        crop_frame=crops.frame.astype(np.int64),
        features=np.asarray(features, dtype=np.float32),
        thumbnails=[thumbnail_jpeg(crop) for crop in crops.crops],
        ground_truth=ground_truth,
    )


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


def persons_entries(tracks: TrackSet, mapping: Mapping[int, int]) -> list[dict[str, Any]]:
    """The ``persons`` list of tracks.json: each person's raw tracks, first and last frame, box count."""
    by_person: dict[int, list[int]] = {}
    for track_id, person in sorted(mapping.items()):
        by_person.setdefault(person, []).append(track_id)
    entries = []
    for person in sorted(by_person):
        frames = tracks.frame[np.isin(tracks.track_id, by_person[person])]
        entries.append(
            {
                "person_id": person,
                "track_ids": by_person[person],
                "first_frame": int(frames.min()),
                "last_frame": int(frames.max()),
                "detections": int(len(frames)),
            }
        )
    return entries


def plan_document(
    cache: MergeCache,
    mapping: Mapping[int, int],
    video: str,
    corrections: Sequence[dict[str, Any]],
    run_timings: Mapping[str, float],
    decision: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON of ``merge_plan.json``."""
    assignment = []
    for track_id in cache.track_ids.tolist():
        frames = cache.tracks.frame[cache.tracks.track_id == track_id]
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
        "cache": CACHE_NAME,
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
        if not (_is_int(track_id) and _is_int(person_id)):
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
    if not isinstance(timings, dict) or not all(_is_number(v) for v in timings.values()):
        raise InputError(f"{path}: expected 'run_timings' to map stages to seconds, got {excerpt(timings)}")
    if not isinstance(doc.get("decision", {}), dict):
        raise InputError(f"{path}: expected 'decision' to be an object")
    for key in ("video", "cache"):
        if not isinstance(doc.get(key), str):
            raise InputError(f"{path}: expected a string '{key}'")
    if Path(doc["cache"]).name != doc["cache"]:
        raise InputError(f"{path}: 'cache' must be a file name in the run folder, got {doc['cache']!r}")
    return doc, assignment


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, float) and math.isfinite(value)) or _is_int(value)


def _is_correction(correction: Any) -> bool:
    """One entry of a plan's ``corrections``, as `apply_plan` writes them."""
    if not isinstance(correction, dict) or len(correction) != 1:
        return False
    (kind, value), *_ = correction.items()
    if kind == "merge":
        return isinstance(value, list) and all(_is_int(t) for t in value)
    return (kind == "split" and _is_int(value)) or (kind == "plan" and isinstance(value, str))


#: The parts of tracks.json that `apply` reads back, and the JSON type each must have.
_DOCUMENT_PARTS = {
    "video": dict,
    "summary": dict,
    "parameters": dict,
    "similarity": dict,
    "models": dict,
    "evaluation": dict,
    "notes": list,
    "splits": list,
}


def check_run_document(document: Mapping[str, Any], path: Path) -> None:
    """Refuse a tracks.json whose parts that `apply` reads back have the wrong type (it may
    have been edited by hand): one `InputError` naming the file and the part, before any write.
    """
    for key, kind in _DOCUMENT_PARTS.items():
        if key in document and not isinstance(document[key], kind):
            raise InputError(f"{path}: expected '{key}' to be a JSON {kind.__name__}, got {excerpt(document[key])}")
    params = document.get("parameters", {})
    threshold, persons = params.get("threshold"), params.get("persons")
    if threshold is not None and not (_is_number(threshold) and 0 <= threshold <= 2):
        raise InputError(f"{path}: parameters.threshold: expected a number in [0, 2] or null, got {excerpt(threshold)}")
    if persons is not None and not _is_int(persons):
        raise InputError(f"{path}: parameters.persons: expected an integer or null, got {excerpt(persons)}")
    frames = document.get("summary", {}).get("frames", 0)
    if not (_is_int(frames) and frames >= 0):
        raise InputError(f"{path}: summary.frames: expected an integer >= 0, got {excerpt(frames)}")
    if not all(isinstance(note, str) for note in document.get("notes", [])):
        raise InputError(f"{path}: expected 'notes' to be a list of strings")
    cut_keys = ("track_id", "new_track_id", "frame")
    if not all(
        isinstance(cut, dict) and all(_is_int(cut.get(k)) for k in cut_keys) for cut in document.get("splits", [])
    ):
        raise InputError(f"{path}: expected 'splits' to be a list of objects with integer {', '.join(cut_keys)}")
    evaluation = document.get("evaluation", {})
    if not all(isinstance(scores, dict) for scores in evaluation.values()):
        raise InputError(f"{path}: expected 'evaluation' to map raw/merged to objects of scores")


def report_data(
    cache: MergeCache,
    mapping: Mapping[int, int],
    document: Mapping[str, Any],
    run_timings: Mapping[str, float],
    corrections: Sequence[dict[str, Any]],
    run_dir: Path,
) -> ReportData:
    """What the report shows, from the cache, the assignment and the tracks.json document."""
    ids = cache.track_ids
    per_track_crops: dict[int, list[tuple[int, bytes]]] = {int(t): [] for t in ids}
    for order in np.argsort(cache.crop_frame, kind="stable"):
        per_track_crops[int(cache.crop_track[order])].append((int(cache.crop_frame[order]), cache.thumbnails[order]))
    params = document.get("parameters", {})
    summary = document.get("summary", {})
    video = document.get("video", {})
    similarity = document.get("similarity", {})
    threshold = _number(similarity.get("threshold_distance", params.get("threshold")), -1.0)
    calibration = similarity.get("calibration") or {}
    if params.get("persons"):
        note = f"not used: --persons {params['persons']} chose the number of persons"
    elif params.get("criterion") == "dbc":
        note = "applies to the dispersion-penalised distance"
    else:
        note = "average linkage"
    facts = [
        ("video", str(video.get("path", ""))),
        ("frames", str(summary.get("frames", ""))),
        ("raw tracks", str(summary.get("raw_tracks", len(ids)))),
        ("persons", str(len(set(mapping.values())))),
        ("crops compared", f"{len(cache.crop_track)} (up to {params.get('crops_per_track', '?')} per track)"),
        ("tracks without crops", str(document.get("similarity", {}).get("tracks_without_crops", ""))),
        (
            "tracks left alone, too few crops",
            f"{document.get('similarity', {}).get('tracks_too_few_crops', '')} "
            f"(fewer than {params.get('min_crops_to_merge', '?')})",
        ),
        ("aggregation", str(params.get("aggregation", ""))),
        ("threshold", _threshold_fact(threshold, params, calibration)),
        ("stitched by motion", _stitching_fact(calibration)),
    ]
    if document.get("splits"):
        facts.append(("impure tracks split", str(len(document["splits"]))))
    if "tracks_joined" in summary:
        facts.append(("tracks joined into persons", str(summary["tracks_joined"])))
    if "boxes_filled" in summary:
        gap = f"gaps up to {params.get('fill_max_gap_seconds')} s" if params.get("fill_gaps") else "filling off"
        facts.append(("boxes filled (no detection; dashed in annotated.mp4)", f"{summary['boxes_filled']} ({gap})"))
    models = {
        role: f"{info.get('name', '?')} ({info.get('source', '')}), sha256 {str(info.get('sha256', ''))[:12]}"
        for role, info in document.get("models", {}).items()
        if isinstance(info, dict)
    }
    return ReportData(
        title=Path(str(video.get("path", "run"))).name,
        track_ids=ids,
        person_ids=np.array([mapping[int(t)] for t in ids], dtype=np.int64),
        track_frames=[np.sort(cache.tracks.frame[cache.tracks.track_id == t]) for t in ids],
        thumbnails=[per_track_crops[int(t)] for t in ids],
        similarity=cache.similarity,
        cannot_link=cache.cannot_link,
        threshold=threshold,
        threshold_note=note,
        num_frames=int(summary.get("frames") or video.get("num_frames") or 0),
        facts=facts,
        timings=dict(run_timings),
        models=models,
        scores=document.get("evaluation"),
        notes=list(document.get("notes", [])),
        corrections=[_describe_correction(c) for c in corrections],
        apply_hint=f"reid-merge apply {shlex.quote(str(run_dir))} --merge A,B --split C",
        cuts=[
            (cut["track_id"], cut["new_track_id"], cut["frame"])
            for cut in document.get("splits", [])
            if {cut["track_id"], cut["new_track_id"]} <= set(per_track_crops)
        ],
    )


def _describe_correction(correction: Mapping[str, Any]) -> str:
    if "merge" in correction:
        return f"--merge {','.join(map(str, correction['merge']))}: one person"
    if "split" in correction:
        return f"--split {correction['split']}: a person of its own"
    if "plan" in correction:
        return f"--plan {correction['plan']}: assignment edited by hand"
    return json.dumps(correction)


def pair_distributions(
    appearance: npt.NDArray[np.float64], track_ids: npt.NDArray[np.int64], mapping: Mapping[int, int]
) -> dict[str, Any]:
    """tracks.json's similarity distributions (all, merged, not merged pairs) for an assignment."""
    n = len(track_ids)
    rows, cols = np.triu_indices(n, k=1)
    values = appearance[rows, cols]
    person = np.array([mapping[int(t)] for t in track_ids], dtype=np.int64)
    same = person[rows] == person[cols]
    return {
        "all_pairs": describe(values),
        "merged_pairs": describe(values[same]),
        "not_merged_pairs": describe(values[~same]),
    }


def write_review(
    staged: StagedFiles,
    out_dir: Path,
    document: Mapping[str, Any],
    outcome: Any,
    crops: CropSet,
    features: npt.NDArray[np.floating],
    ground_truth: GroundTruth | None,
    timings: Mapping[str, float],
) -> dict[str, Path]:
    """Stage ``merge_cache.npz``, ``merge_plan.json`` and ``report.html`` of a finished merge.

    Args:
        staged: where the pipeline stages its outputs (renamed into place with tracks.json).
        out_dir: the run folder.
        document: the run's tracks.json document.
        outcome: the merge decision (`pipeline.MergeOutcome`).
        crops: the crops compared.
        features: `(M, D)` their features as the embedder gave them.
        ground_truth: the ground truth the run was scored against, if any.
        timings: seconds per stage so far.
    """
    cache = build_cache(outcome, crops, features, ground_truth)
    outputs = {name: out_dir / name for name in (CACHE_NAME, PLAN_NAME, REPORT_NAME)}
    cache.save(staged.path(outputs[CACHE_NAME]))
    video = str(Path(document["video"]["path"]).resolve())
    plan = plan_document(cache, outcome.mapping, video, [], timings, _decision(document))
    staged.path(outputs[PLAN_NAME]).write_text(dump_plan(plan), encoding="utf-8")
    data = report_data(cache, outcome.mapping, document, timings, [], out_dir)
    staged.path(outputs[REPORT_NAME]).write_text(render_report(data), encoding="utf-8")
    return outputs


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _threshold_fact(threshold: float, params: Mapping[str, Any], calibration: Mapping[str, Any]) -> str:
    """How far appearance alone had to go, and where that came from."""
    criterion = f"criterion {params.get('criterion', '')}"
    if threshold < 0:
        return f"no join by appearance alone was decisive in this video ({criterion})"
    if calibration.get("threshold_from") != "calibration":
        return f"{threshold:g} (distance, set by hand), {criterion}"
    different = calibration.get("chains_different_people") or {}
    centre, spread = (_number(different.get(key), float("nan")) for key in ("centre", "spread"))
    return (
        f"{threshold:.3f} (distance; similarity {1 - threshold:.3f}), learnt from this video: pairs that share a "
        f"frame score {centre:.2f} ± {spread:.2f} "
        f"({different.get('pairs', '?')} pairs); estimated wrong joins at most "
        f"{100 * _number(calibration.get('false_merge_rate'), float('nan')):g}%, {criterion}"
    )


def _stitching_fact(calibration: Mapping[str, Any]) -> str:
    handover = calibration.get("handover") or {}
    if not handover:
        return "not recorded"
    return (
        f"{calibration.get('stitched_links', '?')} links; one person's hand-over stays within "
        f"{_number(handover.get('position_slack_heights'), float('nan')):.2f} + "
        f"{_number(handover.get('position_heights_per_second'), float('nan')):.2f} x gap (s) box heights "
        f"(95%, from {handover.get('samples', '?')} cuts of this video's own tracks"
        f"{'; too few, a default was used' if not handover.get('samples') else ''}), "
        f"crowding {_number((calibration.get('clutter_per_square_height') or {}).get('median'), float('nan')):.3f} "
        "people per square height (median where tracks end)"
    )


def _decision(document: Mapping[str, Any]) -> dict[str, Any]:
    params = document.get("parameters", {})
    keys = ("aggregation", "threshold", "false_merge_rate", "stitch_max_gap_seconds", "persons", "criterion")
    return {k: params.get(k) for k in keys}


def apply_plan(
    run_dir: Path,
    merges: Sequence[Sequence[int]] = (),
    splits: Sequence[int] = (),
    plan_path: Path | None = None,
    *,
    write_video: bool = True,
    ground_truth: Path | None = None,
    reporter: Any = None,
) -> Any:
    """Rewrite a run's tracks, video, report and plan from manual corrections (``reid-merge apply``).

    Args:
        run_dir: a folder written by ``reid-merge run`` or ``merge``.
        merges: groups of raw track IDs that are one person (``--merge 3,17``).
        splits: raw track IDs that are persons of their own (``--split 42``).
        plan_path: an edited plan to start from instead of the run's ``merge_plan.json``.
        write_video: re-encode ``annotated.mp4`` (decodes the input video again; no detection).
        ground_truth: score against this MOTChallenge gt.txt instead of the run's cached one.
        reporter: a `pipeline.Reporter` for progress and notes.

    Returns:
        A `pipeline.RunResult`; its timings are those of this correction.
    """
    from reid_merge.evaluation import evaluate, read_ground_truth
    from reid_merge.pipeline import Reporter, RunResult, counting_frames
    from reid_merge.video import probe_video, read_frames

    reporter = reporter or Reporter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        reporter.note(message)

    start = time.perf_counter()
    tracks_json = run_dir / "tracks.json"
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such folder (expected the output folder of reid-merge run or merge)")
    if not tracks_json.is_file():
        raise InputError(f"{run_dir}: no tracks.json, so not a finished reid-merge run")
    own_plan = run_dir / PLAN_NAME
    plan_file = plan_path or own_plan
    if plan_path is None and not own_plan.is_file():
        raise InputError(f"{run_dir}: no {PLAN_NAME} (runs of reid-merge before the merge plan lack it; run again)")
    document = read_json_object(tracks_json)
    check_run_document(document, tracks_json)
    plan, assignment = read_plan(plan_file)
    cache = MergeCache.load(run_dir / plan["cache"])
    check_assignment(cache.tracks, assignment, str(plan_file))
    for track in splits:
        if track in assignment and sum(p == assignment[track] for p in assignment.values()) == 1:
            note(f"track {track} is already a person of its own")
    mapping = correct_assignment(cache.tracks, assignment, merges, splits)
    corrections = list(plan.get("corrections", []))
    if plan_path is not None:
        corrections.append({"plan": str(plan_path)})
    corrections += [{"split": int(t)} for t in splits] + [{"merge": [int(t) for t in g]} for g in merges]
    merged, filled = refill(cache.tracks.relabel(mapping), document)
    persons = len(set(mapping.values()))
    timings["load plan + cache"] = time.perf_counter() - start

    section = time.perf_counter()
    gt = read_ground_truth(ground_truth) if ground_truth is not None else cache.ground_truth
    scores = None
    if gt is not None:
        raw_scores = document.get("evaluation", {}).get("raw") if ground_truth is None else None
        if raw_scores is None:
            raw_path = run_dir / "raw_tracks.txt"
            raw_scores = evaluate(read_mot(raw_path) if raw_path.is_file() else cache.tracks, gt).to_dict()
        scores = {"raw": raw_scores, "merged": evaluate(as_written(merged), gt).to_dict()}  # as tracks.txt holds it
    elif "evaluation" in document:
        note("the run's scores described its previous assignment and are left out (--gt scores this one)")
    if scores is not None:
        timings["score"] = time.perf_counter() - section

    outputs: dict[str, Path] = {}
    frames = int(document.get("summary", {}).get("frames", 0))
    video_path = Path(plan["video"]).expanduser()
    if not video_path.is_absolute():  # an edited plan's relative path means beside the run's files
        video_path = run_dir / video_path
    info = None
    if write_video and video_path.exists():
        info = probe_video(video_path)
        check_same_video(info, document.get("video", {}), plan_file)
    stale_note = ""
    with staged_files(tracks_json) as staged:
        if info is not None:
            section = time.perf_counter()
            reporter.start("video", info.num_frames)
            outputs["annotated.mp4"] = run_dir / "annotated.mp4"
            write_annotated_video(
                counting_frames(read_frames(info), reporter),
                cache.tracks,
                mapping,
                staged.path(outputs["annotated.mp4"]),
                info.fps,
                filled=merged[filled],
            )
            reporter.finish("video")
            timings["write video"] = time.perf_counter() - section
        elif (run_dir / "annotated.mp4").exists():
            why = "--no-video" if not write_video else f"the input video {video_path} is gone"
            stale_note = f"annotated.mp4 removed ({why}): it showed the previous assignment"
            notes.append(stale_note)  # said once it is true, after the new outputs are in place
        elif write_video:
            note(f"no annotated.mp4: the input video {video_path} is gone")

        section = time.perf_counter()
        document = dict(document)
        document["mapping"] = [{"track_id": t, "person_id": p} for t, p in sorted(mapping.items())]
        document["persons"] = persons_entries(cache.tracks, mapping)
        person_sizes = np.bincount(np.array(list(mapping.values()), dtype=np.int64))
        joined = int(sum(int(person_sizes[p]) > 1 for p in mapping.values()))
        document["summary"] = {
            **{k: v for k, v in document.get("summary", {}).items() if k != "left_alone"},  # the run's reasons
            "persons": persons,
            "tracks_joined": joined,
            "boxes_filled": int(filled.sum()),
        }
        document["similarity"] = {
            **document.get("similarity", {}),
            **pair_distributions(cache.appearance, cache.track_ids, mapping),
        }
        document["corrections"] = corrections
        document["notes"] = [*document.get("notes", []), *notes]
        document.pop("evaluation", None)
        if scores is not None:
            document["evaluation"] = scores
        document["tracks"] = tracks_to_json(merged, filled)
        outputs["tracks.txt"] = run_dir / "tracks.txt"
        staged.path(outputs["tracks.txt"]).write_text(format_mot(merged), encoding="utf-8")
        run_timings = plan.get("run_timings", {})
        new_plan = plan_document(cache, mapping, str(video_path), corrections, run_timings, plan.get("decision", {}))
        outputs[PLAN_NAME] = run_dir / PLAN_NAME
        staged.path(outputs[PLAN_NAME]).write_text(dump_plan(new_plan), encoding="utf-8")
        data = report_data(cache, mapping, document, run_timings, corrections, run_dir)
        outputs[REPORT_NAME] = run_dir / REPORT_NAME
        staged.path(outputs[REPORT_NAME]).write_text(render_report(data), encoding="utf-8")
        outputs["tracks.json"] = tracks_json
        staged.path(tracks_json).write_text(_dump(document), encoding="utf-8")
        timings["write tracks + report"] = time.perf_counter() - section
    if stale_note:
        (run_dir / "annotated.mp4").unlink(missing_ok=True)
        reporter.note(stale_note)
    return RunResult(
        run_dir, frames, len(cache.track_ids), persons, timings, notes, outputs, scores, joined, {}, int(filled.sum())
    )


def refill(persons: TrackSet, document: Mapping[str, Any]) -> tuple[TrackSet, npt.NDArray[np.bool_]]:
    """Gap filling as the run did it (its tracks.json `parameters`), on corrected persons.

    Runs from before gap filling have no such parameters and stay unfilled.
    """
    from reid_merge.config import config_from_mapping
    from reid_merge.pipeline import fill_person_gaps

    params = document.get("parameters", {})
    keys = ("fill_gaps", "fill_max_gap_seconds", "fill_method", "motion_slack_heights", "motion_heights_per_second")
    settings = {"fill_gaps": False, **{k: params[k] for k in keys if k in params}}
    try:  # the run's own file, but a file: a value edited into nonsense is a bad input, not a crash
        config = config_from_mapping(settings, "tracks.json parameters")
    except UsageError as exc:
        raise InputError(str(exc)) from None
    return fill_person_gaps(persons, config, float(document.get("video", {}).get("fps") or 25.0))


def check_same_video(info: Any, recorded: Mapping[str, Any], plan_file: Path) -> None:
    """The video a plan names must be the one the run was made from: same frame size, and
    as many frames as the run's video announced or decoded. Boxes drawn on another clip
    would be wrong without a word."""
    size = (recorded.get("width"), recorded.get("height"))
    counts = {recorded.get("num_frames"), recorded.get("frames_decoded")} - {None}
    if (info.width, info.height) != size or (counts and info.num_frames not in counts):
        raise InputError(
            f"{info.path}: {info.width}x{info.height}, {info.num_frames} frames, but the run was made from a "
            f"{size[0]}x{size[1]} video of {' or '.join(map(str, sorted(counts)))} frames: "
            f"not the run's video (fix 'video' in {plan_file})"
        )


def _trackset_arrays(prefix: str, tracks: TrackSet) -> dict[str, np.ndarray]:
    return {f"{prefix}_{name}": getattr(tracks, name) for name in ("frame", "track_id", "xyxy", "score")}


def _trackset_from(arrays: Mapping[str, np.ndarray], prefix: str) -> TrackSet:
    return TrackSet.from_arrays(*(arrays[f"{prefix}_{name}"] for name in ("frame", "track_id", "xyxy", "score")))


def _ground_truth_from(arrays: Mapping[str, np.ndarray]) -> GroundTruth:
    from reid_merge.evaluation import GroundTruth

    boxes = _trackset_from(arrays, "gt")
    considered, class_id = arrays["gt_considered"].astype(bool), arrays["gt_class"].astype(np.int64)
    if not len(considered) == len(class_id) == len(boxes):
        raise ValueError("ground-truth arrays of different lengths")
    return GroundTruth(boxes, considered, class_id)


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"


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
