"""The one writer of a run folder: tracks, video, cache, plan and report, committed together.

``run`` and ``merge`` write a new run folder; ``apply`` rewrites one from its corrected
assignment (keeping the run's cache). Every file is staged under a temporary name and renamed
into place with the others, ``tracks.json`` last (`reid_merge.io.atomic.staged_files`).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reid_merge.app.plan import MergeCache, _decision, dump_plan, plan_document
from reid_merge.app.report import ReportData, render_report
from reid_merge.app.run_folder import (
    ANNOTATED_VIDEO,
    MERGE_CACHE,
    MERGE_PLAN,
    RAW_TRACKS_TXT,
    REPORT_HTML,
    TRACKS_JSON,
    TRACKS_TXT,
    RunDocument,
)
from reid_merge.core.tracks import TrackSet
from reid_merge.io.annotate import write_annotated_video
from reid_merge.io.atomic import StagedFiles
from reid_merge.io.tracks_io import dump_json, format_mot


@dataclass
class Stopwatch:
    """Seconds per stage, summed over the times a stage ran (the report shows them)."""

    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class AnnotatedVideo:
    """What ``annotated.mp4`` is drawn on: `(frame, bgr)` pairs, 1-based, in order, and their rate."""

    frames: Iterable[tuple[int, np.ndarray]]
    fps: float


def write_run_folder(
    staged: StagedFiles,
    folder: Path,
    document: RunDocument,
    tracks: TrackSet,
    mapping: dict[int, int],
    persons: TrackSet,
    filled: npt.NDArray[np.bool_],
    cache: MergeCache | Callable[[], MergeCache],
    clock: Stopwatch,
    *,
    raw: TrackSet | None = None,
    video: AnnotatedVideo | None = None,
    previous_plan: Mapping[str, Any] | None = None,
) -> tuple[RunDocument, dict[str, Path]]:
    """Stage every file of a run folder; the caller's `staged_files` block commits them together.

    Args:
        staged: where the files are staged (its marker is the folder's tracks.json).
        folder: the run folder.
        document: tracks.json; its frame count is raised to the frames the video held, if more.
        tracks: the detections under the track IDs of `mapping` (after impure-track splits), the
            backfilled boxes the persons took among them: what the video draws, and the frames the
            plan and the report give each track.
        mapping: track ID → person ID.
        persons: the merged tracks, gaps filled, written to tracks.txt.
        filled: `(n,)` True for the boxes of `persons` that gap filling added.
        cache: the run's merge cache, kept as it is (``apply``), or for a new run how to build
            it: built and saved while the report is written, the stage it belongs to.
        clock: times the stages ``write video``, ``write tracks`` and ``write report``; a new
            run's plan and report show its timings so far.
        raw: the tracker's tracks, written to raw_tracks.txt (``run`` only).
        video: the frames to draw annotated.mp4 on; None draws none.
        previous_plan: the plan ``apply`` started from (its video, decision and run timings
            carry over, with `document`'s corrections); None for a new run.

    Returns:
        The document written and the path of each file, by name.
    """
    outputs: dict[str, Path] = {}
    if video is not None:
        with clock.time("write video"):
            outputs[ANNOTATED_VIDEO] = folder / ANNOTATED_VIDEO
            path = staged.path(outputs[ANNOTATED_VIDEO])
            drawn = np.isin(tracks.relabel(mapping).track_id, persons.track_ids)  # the persons of tracks.txt
            written = write_annotated_video(
                video.frames, tracks[drawn], mapping, path, video.fps, filled=persons[filled]
            )
        if written > document.frames:
            document = document.with_frames(written)
    with clock.time("write tracks"):
        outputs[TRACKS_TXT] = folder / TRACKS_TXT
        staged.path(outputs[TRACKS_TXT]).write_text(format_mot(persons), encoding="utf-8")
        if raw is not None:
            outputs[RAW_TRACKS_TXT] = folder / RAW_TRACKS_TXT
            staged.path(outputs[RAW_TRACKS_TXT]).write_text(format_mot(raw), encoding="utf-8")
        outputs[TRACKS_JSON] = folder / TRACKS_JSON
        # Renamed into place last (StagedFiles' marker): a tracks.json on disk means the
        # other outputs beside it are complete and from the same run.
        staged.path(outputs[TRACKS_JSON]).write_text(dump_json(document.to_dict()), encoding="utf-8")
    with clock.time("write report"):
        if not isinstance(cache, MergeCache):
            cache = cache()
            outputs[MERGE_CACHE] = folder / MERGE_CACHE
            cache.save(staged.path(outputs[MERGE_CACHE]))
        corrections = document.corrections or []
        if previous_plan is None:
            run_timings: Mapping[str, float] = clock.timings
            video_path = str(Path(document.video["path"]).resolve())
            decision = _decision(document.to_dict())
        else:
            run_timings = previous_plan.get("run_timings", {})
            video_path, decision = previous_plan["video"], previous_plan.get("decision", {})
        plan = plan_document(cache, tracks, mapping, video_path, corrections, run_timings, decision)
        outputs[MERGE_PLAN] = folder / MERGE_PLAN
        staged.path(outputs[MERGE_PLAN]).write_text(dump_plan(plan), encoding="utf-8")
        data = report_data(cache, tracks, mapping, document, run_timings, corrections, folder)
        outputs[REPORT_HTML] = folder / REPORT_HTML
        staged.path(outputs[REPORT_HTML]).write_text(render_report(data), encoding="utf-8")
    return document, outputs


def report_data(
    cache: MergeCache,
    shown: TrackSet,
    mapping: Mapping[int, int],
    document: RunDocument,
    run_timings: Mapping[str, float],
    corrections: Sequence[dict[str, Any]],
    run_dir: Path,
) -> ReportData:
    """What the report shows, from the cache, the assignment and the tracks.json document; the
    tracks' timelines from `shown`, the boxes annotated.mp4 draws."""
    ids = cache.track_ids
    per_track_crops: dict[int, list[tuple[int, bytes]]] = {int(t): [] for t in ids}
    for order in np.argsort(cache.crop_frame, kind="stable"):
        per_track_crops[int(cache.crop_track[order])].append((int(cache.crop_frame[order]), cache.thumbnails[order]))
    params, summary, video, similarity = document.parameters, document.summary, document.video, document.similarity
    doubles = {entry["person_id"]: entry["doubles"] for entry in document.persons if "doubles" in entry}
    threshold = _number(similarity.get("threshold_distance", params.get("threshold")), -1.0)
    calibration = similarity.get("calibration") or {}
    if params.get("persons"):
        note = f"not used: --persons {params['persons']} chose the number of persons"
    elif params.get("criterion") == "dbc":
        note = "applies to the dispersion-penalised distance"
    else:  # runs recorded before the criterion was a setting used average linkage
        note = f"{params.get('criterion') or 'average'} linkage"
    facts = [
        ("video", str(video.get("path", ""))),
        ("frames", str(summary.get("frames", ""))),
        ("raw tracks", str(summary.get("raw_tracks", len(ids)))),
        ("persons", str(len(set(mapping.values())) - len(doubles))),
        (
            "crops taken",
            f"{len(cache.crop_track)} (the merge compares up to {params.get('crops_per_track', '?')} per track"
            + ("; a few more beside encounters judge the cuts)" if params.get("split_impure", True) else ")"),
        ),
        ("tracks without crops", str(similarity.get("tracks_without_crops", ""))),
        (
            "tracks left alone, too few crops",
            f"{similarity.get('tracks_too_few_crops', '')} (fewer than {params.get('min_crops_to_merge', '?')})",
        ),
        ("aggregation", str(params.get("aggregation", ""))),
        ("threshold", _threshold_fact(threshold, params, calibration)),
        ("stitched by motion", _stitching_fact(calibration)),
    ]
    if document.splits:
        facts.append(("impure tracks split", _cuts_fact(document.splits, calibration)))
    if "tracks_joined" in summary:
        facts.append(("tracks joined into persons", str(summary["tracks_joined"])))
    if "boxes_filled" in summary:
        gap = f"gaps up to {params.get('fill_max_gap_seconds')} s" if params.get("fill_gaps") else "filling off"
        if summary.get("gaps_filled") == "sure":
            gap += f"; only between boxes scoring {params.get('short_track_score')} or more, none onto another track's"
        facts.append(("boxes filled (no detection; dashed in annotated.mp4)", f"{summary['boxes_filled']} ({gap})"))
    if doubles:
        facts.append(
            (
                "persons left out, boxed twice (each box lies over a longer person's)",
                "; ".join(f"{p} doubles {q}" for p, q in sorted(doubles.items())),
            )
        )
    if "boxes_backfilled" in summary:
        reach = f"up to {params.get('backfill_seconds')} s before each track, scoring {params.get('backfill_score')}+"
        facts.append(("boxes backfilled (detected, not yet tracked)", f"{summary['boxes_backfilled']} ({reach})"))
    models = {
        role: f"{info.get('name', '?')} ({info.get('source', '')}), sha256 {str(info.get('sha256', ''))[:12]}"
        for role, info in document.models.items()
        if isinstance(info, dict)
    }
    return ReportData(
        title=Path(str(video.get("path", "run"))).name,
        track_ids=ids,
        person_ids=np.array([mapping[int(t)] for t in ids], dtype=np.int64),
        track_frames=[np.sort(shown.frame[shown.track_id == t]) for t in ids],
        thumbnails=[per_track_crops[int(t)] for t in ids],
        similarity=cache.similarity,
        cannot_link=cache.cannot_link,
        threshold=threshold,
        threshold_note=note,
        num_frames=int(summary.get("frames") or video.get("num_frames") or 0),
        facts=facts,
        timings=dict(run_timings),
        models=models,
        scores=document.evaluation,
        notes=list(document.notes),
        corrections=[_describe_correction(c) for c in corrections],
        apply_hint=f"reid-merge apply {shlex.quote(str(run_dir))} --merge A,B --split C",
        cuts=[
            (cut["track_id"], cut["new_track_id"], cut["frame"])
            for cut in document.splits
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
    beyond = calibration.get("chains_beyond_the_handover") or 0  # absent from runs before it was recorded
    ruled_out = f"; {beyond} pair{'' if beyond == 1 else 's'} of chains ruled out by the hand-over" if beyond else ""
    return (
        f"{threshold:.3f} (distance; similarity {1 - threshold:.3f}), learnt from this video: pairs that share a "
        f"frame score {centre:.2f} ± {spread:.2f} "
        f"({different.get('pairs', '?')} pairs); estimated wrong joins at most "
        f"{100 * _number(calibration.get('false_merge_rate'), float('nan')):g}%{ruled_out}, {criterion}"
    )


def _cuts_fact(splits: list[dict], calibration: Mapping[str, Any]) -> str:
    """How many cuts stand, the tentative ones told apart (runs before them recorded none)."""
    tentative = [cut for cut in splits if cut.get("tentative")]
    standing = int(calibration.get("tentative_cuts_standing") or 0)
    firm = len(splits) - len(tentative)
    if not tentative:
        return str(firm)
    return (
        f"{firm + standing} ({standing} of {len(tentative)} tentative cuts stand: the merge gave the later part to "
        f"somebody else; the other {len(tentative) - standing} stay with their track)"
    )


def _stitching_fact(calibration: Mapping[str, Any]) -> str:
    handover = calibration.get("handover") or {}
    if not handover:
        return "not recorded"
    ambiguous = calibration.get("ambiguous_links") or 0  # absent from runs before it was recorded
    unmade = f" ({ambiguous} more left unmade: another way of linking was nearly as likely)" if ambiguous else ""
    odds = calibration.get("stitch_odds")  # absent from runs before it was a setting
    unchecked = calibration.get("unchecked_stitch_odds")  # absent from runs before it was a setting
    where_unchecked = (
        f" ({_number(unchecked, float('nan')):g} where a side has too few crops for appearance to check it)"
        if unchecked is not None and unchecked != odds
        else ""
    )
    each = (
        f"; each at least {_number(odds, float('nan')):g} times likelier than any other way of linking{where_unchecked}"
        if odds
        else ""
    )
    links = calibration.get("stitched_links", "?")
    appearance = {
        "learnt": "; appearance counted for and against (how one person scores learnt from motion's links)",
        "for only": "; appearance counted only for a link (too few links to learn how one person scores)",
        None: "; appearance not counted",
    }.get(calibration.get("appearance_in_stitching", "unrecorded"), "")  # absent from runs before it was recorded
    return (
        f"{links} link{'' if links == 1 else 's'}{unmade}{each}{appearance}; one person's hand-over stays within "
        f"{_number(handover.get('position_slack_heights'), float('nan')):.2f} + "
        f"{_number(handover.get('position_heights_per_second'), float('nan')):.2f} x gap (s) box heights "
        f"(95%, from {handover.get('samples', '?')} cuts of this video's own tracks"
        f"{'; too few, a default was used' if not handover.get('samples') else ''}), "
        f"crowding {_number((calibration.get('clutter_per_square_height') or {}).get('median'), float('nan')):.3f} "
        "people per square height (median where tracks end)"
    )
