"""What a run folder holds: the names of its files and its ``tracks.json`` document.

``run`` and ``merge`` write a run folder, ``apply`` rewrites one (`reid_merge.app.run_writer`
writes it in every case). ``tracks.json`` is written last: its presence says the files beside
it are complete and from the same run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reid_merge import __version__
from reid_merge.app.config import GAPS_FILLED
from reid_merge.core.similarity import describe
from reid_merge.core.tracks import TrackSet
from reid_merge.errors import InputError, excerpt
from reid_merge.io.atomic import remove_stale_temps
from reid_merge.io.tracks_io import JSON_FORMAT, is_json_integer, is_json_number, read_json_object

if TYPE_CHECKING:  # the type only: OpenCV stays off the start-up path of the command line
    from reid_merge.io.video import VideoInfo

TRACKS_JSON = "tracks.json"
TRACKS_TXT = "tracks.txt"
RAW_TRACKS_TXT = "raw_tracks.txt"
ANNOTATED_VIDEO = "annotated.mp4"
REPORT_HTML = "report.html"
MERGE_PLAN = "merge_plan.json"
MERGE_CACHE = "merge_cache.npz"
#: Every file a run folder may hold.
OUTPUT_NAMES = (TRACKS_JSON, TRACKS_TXT, RAW_TRACKS_TXT, ANNOTATED_VIDEO, REPORT_HTML, MERGE_PLAN, MERGE_CACHE)


def output_names(*, write_video: bool, write_raw: bool) -> tuple[str, ...]:
    """The files one run writes: the annotated video and the raw tracks only when asked for."""
    video = (ANNOTATED_VIDEO,) if write_video else ()
    raw = (RAW_TRACKS_TXT,) if write_raw else ()
    return (*video, TRACKS_TXT, *raw, REPORT_HTML, MERGE_PLAN, MERGE_CACHE, TRACKS_JSON)


@dataclass(frozen=True)
class RunDocument:
    """``tracks.json``: the merged tracks and how they came to be (settings, models, scores).

    The open parts are JSON objects as written: `video` (`VideoInfo.to_dict` and
    ``frames_decoded``), `parameters` (`Config.to_dict`), `summary`, `similarity` (the pair
    distributions and the calibration), `evaluation` (raw and merged scores, None when not
    scored). `mapping`, `persons` and `tracks` are the entries `mapping_entries`,
    `persons_entries` and `tracks_to_json` give; `corrections` is None until ``apply``.
    """

    video: dict[str, Any]
    inputs: dict[str, str]
    parameters: dict[str, Any]
    models: dict[str, Any]
    summary: dict[str, Any]
    splits: list[dict[str, Any]]
    mapping: list[dict[str, int]]
    persons: list[dict[str, Any]]
    similarity: dict[str, Any]
    evaluation: dict[str, Any] | None
    notes: list[str]
    tracks: list[dict[str, Any]]
    corrections: list[dict[str, Any]] | None = None
    tool: dict[str, Any] = field(default_factory=lambda: {"name": "reid-merge", "version": __version__})
    format: str = JSON_FORMAT
    version: int = 1

    @property
    def frames(self) -> int:
        """Frames the outputs cover."""
        return int(self.summary.get("frames", 0))

    def with_frames(self, frames: int) -> RunDocument:
        """The document of outputs that cover `frames` frames."""
        return dataclasses.replace(
            self, video={**self.video, "frames_decoded": frames}, summary={**self.summary, "frames": frames}
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order the files have always had."""
        head = {
            "format": self.format,
            "version": self.version,
            "tool": self.tool,
            "video": self.video,
            "inputs": self.inputs,
            "parameters": self.parameters,
            "models": self.models,
            "summary": self.summary,
            "splits": self.splits,
            "mapping": self.mapping,
            "persons": self.persons,
            "similarity": self.similarity,
        }
        evaluation = {"evaluation": self.evaluation} if self.evaluation is not None else {}
        if self.corrections is None:
            return {**head, **evaluation, "notes": self.notes, "tracks": self.tracks}
        # A corrected run: ``apply`` has always put its corrections and scores after the tracks.
        return {**head, "notes": self.notes, "tracks": self.tracks, "corrections": self.corrections, **evaluation}

    @classmethod
    def load(cls, path: Path) -> RunDocument:
        """Read a tracks.json back; it may have been edited by hand, so the parts that are
        read back are checked: one `InputError` naming the file and the part."""
        document = read_json_object(path)
        _check_run_document(document, path)
        return cls(
            video=document.get("video", {}),
            inputs=document.get("inputs", {}),
            parameters=document.get("parameters", {}),
            models=document.get("models", {}),
            summary=document.get("summary", {}),
            splits=document.get("splits", []),
            mapping=document.get("mapping", []),
            persons=document.get("persons", []),
            similarity=document.get("similarity", {}),
            evaluation=document.get("evaluation"),
            notes=document.get("notes", []),
            tracks=document.get("tracks", []),
            corrections=document.get("corrections"),
            tool=document.get("tool", {}),
            format=document.get("format", JSON_FORMAT),
            version=document.get("version", 1),
        )


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


def _check_run_document(document: Mapping[str, Any], path: Path) -> None:
    """Refuse a tracks.json whose parts that `apply` reads back have the wrong type (it may
    have been edited by hand): one `InputError` naming the file and the part, before any write.
    """
    for key, kind in _DOCUMENT_PARTS.items():
        if key in document and not isinstance(document[key], kind):
            raise InputError(f"{path}: expected '{key}' to be a JSON {kind.__name__}, got {excerpt(document[key])}")
    params = document.get("parameters", {})
    threshold, persons = params.get("threshold"), params.get("persons")
    if threshold is not None and not (is_json_number(threshold) and 0 <= threshold <= 2):
        raise InputError(f"{path}: parameters.threshold: expected a number in [0, 2] or null, got {excerpt(threshold)}")
    if persons is not None and not is_json_integer(persons):
        raise InputError(f"{path}: parameters.persons: expected an integer or null, got {excerpt(persons)}")
    frames = document.get("summary", {}).get("frames", 0)
    if not (is_json_integer(frames) and frames >= 0):
        raise InputError(f"{path}: summary.frames: expected an integer >= 0, got {excerpt(frames)}")
    gaps_filled = document.get("summary", {}).get("gaps_filled", "all")
    if gaps_filled not in GAPS_FILLED:
        raise InputError(
            f"{path}: summary.gaps_filled: expected one of {', '.join(GAPS_FILLED)}, got {excerpt(gaps_filled)}"
        )
    if not all(isinstance(note, str) for note in document.get("notes", [])):
        raise InputError(f"{path}: expected 'notes' to be a list of strings")
    cut_keys = ("track_id", "new_track_id", "frame")
    if not all(
        isinstance(cut, dict) and all(is_json_integer(cut.get(k)) for k in cut_keys)
        for cut in document.get("splits", [])
    ):
        raise InputError(f"{path}: expected 'splits' to be a list of objects with integer {', '.join(cut_keys)}")
    evaluation = document.get("evaluation", {})
    if not all(isinstance(scores, dict) for scores in evaluation.values()):
        raise InputError(f"{path}: expected 'evaluation' to map raw/merged to objects of scores")


def mapping_entries(mapping: Mapping[int, int]) -> list[dict[str, int]]:
    """The ``mapping`` list of tracks.json: raw track → person, by track ID."""
    return [{"track_id": t, "person_id": p} for t, p in sorted(mapping.items())]


def persons_entries(
    tracks: TrackSet, mapping: Mapping[int, int], doubles: Mapping[int, int] | None = None
) -> list[dict[str, Any]]:
    """The ``persons`` list of tracks.json: each person's raw tracks, first and last frame, box
    count, and for a person left out of the tracks as a double (`doubles`), the person it doubles."""
    doubles = doubles or {}
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
                **({"doubles": doubles[person]} if person in doubles else {}),
            }
        )
    return entries


def pair_distributions(
    appearance: npt.NDArray[np.float64], track_ids: npt.NDArray[np.int64], mapping: Mapping[int, int]
) -> dict[str, Any]:
    """tracks.json's similarity distributions (all, merged, not merged pairs) for an assignment.

    `appearance` is the `(N, N)` similarity of the tracks `track_ids`, `mapping` their persons.
    """
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


def check_output_dir(
    out_dir: Path, info: VideoInfo, inputs: Sequence[Path] = (), writes: Sequence[str] = OUTPUT_NAMES
) -> None:
    """The output folder must be writable and may not be the input's folder of frames; no
    output (`writes`) may overwrite one of the `inputs`.

    The folder is not created here (writing the first output does that), so a run that fails
    before its outputs leaves nothing behind. Temporary files that killed runs left in it are
    deleted.
    """
    source = Path(info.path).resolve()
    target = out_dir.resolve()
    if info.kind == "sequence":
        frames_dir = source / "img1"
        if target in (source, frames_dir) or frames_dir in target.parents:
            raise InputError(f"{out_dir}: the output folder may not be the input sequence's own folder of frames")
    for name in writes:
        for path in inputs:
            if _same_file(out_dir / name, path):
                raise InputError(f"{out_dir}: writing {name} there would overwrite the input {path}")
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"{out_dir}: exists and is not a folder")
        folder = out_dir.absolute()
        while not folder.exists():  # the nearest existing folder is where it will be created
            folder = folder.parent
        if not folder.is_dir():
            raise InputError(f"{out_dir}: cannot be created, {folder} is a file")
        with tempfile.TemporaryFile(dir=folder):  # unnamed where the OS allows: leaves nothing
            pass
    except OSError as exc:
        raise InputError(f"{out_dir}: the output folder is not writable ({exc.strerror})") from None
    remove_stale_temps(out_dir)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either one missing
        return False
