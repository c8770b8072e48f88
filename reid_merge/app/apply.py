"""``reid-merge apply``: correct a run by hand without redoing it.

`apply_plan` starts from the run's merge plan (or an edited one), applies ``--split`` and
``--merge`` on top of it (`reid_merge.app.plan.correct_assignment`), renumbers persons by
first appearance and rewrites tracks, video, report and plan from the run's merge cache:
nothing is detected, tracked or embedded again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reid_merge.app.config import config_from_mapping
from reid_merge.app.pipeline import PersonTracks, counting_frames, doubles_note, person_tracks
from reid_merge.app.plan import MergeCache, check_assignment, correct_assignment, read_plan, renumber
from reid_merge.app.results import Reporter, RunResult
from reid_merge.app.run_folder import (
    ANNOTATED_VIDEO,
    MERGE_PLAN,
    RAW_TRACKS_TXT,
    TRACKS_JSON,
    RunDocument,
    mapping_entries,
    pair_distributions,
    persons_entries,
)
from reid_merge.app.run_writer import AnnotatedVideo, Stopwatch, write_run_folder
from reid_merge.core.assignment import tracks_per_person
from reid_merge.core.backfill import add_backfilled
from reid_merge.core.tracks import TrackSet
from reid_merge.errors import InputError, UsageError
from reid_merge.io.atomic import staged_files
from reid_merge.io.tracks_io import as_written, read_mot, tracks_to_json
from reid_merge.io.video import VideoInfo, probe_video, read_frames


def apply_plan(
    run_dir: Path,
    merges: Sequence[Sequence[int]] = (),
    splits: Sequence[int] = (),
    plan_path: Path | None = None,
    *,
    write_video: bool = True,
    ground_truth: Path | None = None,
    drop_doubles: bool | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Rewrite a run's tracks, video, report and plan from manual corrections (``reid-merge apply``).

    Args:
        run_dir: a folder written by ``reid-merge run`` or ``merge``.
        merges: groups of raw track IDs that are one person (``--merge 3,17``).
        splits: raw track IDs that are persons of their own (``--split 42``).
        plan_path: an edited plan to start from instead of the run's ``merge_plan.json``.
        write_video: re-encode ``annotated.mp4`` (decodes the input video again; no detection).
        ground_truth: score against this MOTChallenge gt.txt instead of the run's cached one.
        drop_doubles: leave out persons boxed twice (True) or keep them (False), from now on;
            None does as the run did.
        reporter: receives progress and notes.

    Returns:
        What was written; its timings are those of this correction.
    """
    from reid_merge.eval.scores import evaluate, read_ground_truth  # imports TrackEval, which only scoring needs

    reporter = reporter or Reporter()
    clock = Stopwatch()
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        reporter.note(message)

    with clock.time("load plan + cache"):
        tracks_json = run_dir / TRACKS_JSON
        if not run_dir.is_dir():
            raise InputError(f"{run_dir}: no such folder (expected the output folder of reid-merge run or merge)")
        if not tracks_json.is_file():
            raise InputError(f"{run_dir}: no {TRACKS_JSON}, so not a finished reid-merge run")
        own_plan = run_dir / MERGE_PLAN
        plan_file = plan_path or own_plan
        if plan_path is None and not own_plan.is_file():
            raise InputError(
                f"{run_dir}: no {MERGE_PLAN} (runs of reid-merge before the merge plan lack it; run again)"
            )
        document = RunDocument.load(tracks_json)
        if drop_doubles is not None:  # recorded, so that later corrections do the same
            document = dataclasses.replace(document, parameters={**document.parameters, "drop_doubles": drop_doubles})
        plan, assignment = read_plan(plan_file)
        cache = MergeCache.load(run_dir / plan["cache"])
        check_assignment(cache.tracks, assignment, str(plan_file))
        for track in splits:
            if track in assignment and sum(p == assignment[track] for p in assignment.values()) == 1:
                note(f"track {track} is already a person of its own")
        mapping = correct_assignment(cache.tracks, assignment, merges, splits)
        boxes = add_backfilled(cache.tracks, mapping, cache.backfilled)  # as the run added them
        mapping = renumber(boxes, mapping)
        corrections = list(plan.get("corrections", []))
        if plan_path is not None:
            corrections.append({"plan": str(plan_path)})
        corrections += [{"split": int(t)} for t in splits] + [{"merge": [int(t) for t in g]} for g in merges]
        written, gaps_filled = rewrite_persons(boxes, mapping, document)
        mapping, merged, filled = written.mapping, written.merged, written.filled
        persons = written.persons
        if written.doubles:
            note(doubles_note(written.doubles))
        gt = read_ground_truth(ground_truth) if ground_truth is not None else cache.ground_truth

    scores = None
    if gt is not None:
        with clock.time("score"):
            raw_scores = (document.evaluation or {}).get("raw") if ground_truth is None else None
            if raw_scores is None:
                raw_path = run_dir / RAW_TRACKS_TXT
                raw_scores = evaluate(read_mot(raw_path) if raw_path.is_file() else cache.tracks, gt).to_dict()
            scores = {"raw": raw_scores, "merged": evaluate(as_written(merged), gt).to_dict()}  # as tracks.txt has it
    elif document.evaluation is not None:
        note("the run's scores described its previous assignment and are left out (--gt scores this one)")

    video_path = Path(plan["video"]).expanduser()
    if not video_path.is_absolute():  # an edited plan's relative path means beside the run's files
        video_path = run_dir / video_path
    video = None
    if write_video and video_path.exists():
        info = probe_video(video_path)
        check_same_video(info, document.video, plan_file)
        video = AnnotatedVideo(counting_frames(read_frames(info), reporter, info.num_frames), info.fps)
    stale_note = ""
    if video is None and (run_dir / ANNOTATED_VIDEO).exists():
        why = "--no-video" if not write_video else f"the input video {video_path} is gone"
        stale_note = f"{ANNOTATED_VIDEO} removed ({why}): it showed the previous assignment"
        notes.append(stale_note)  # said once it is true, after the new outputs are in place
    elif video is None and write_video:
        note(f"no {ANNOTATED_VIDEO}: the input video {video_path} is gone")

    cuts = [(int(split["track_id"]), int(split["new_track_id"])) for split in document.splits]
    joined = sum(n for n in tracks_per_person(mapping, cuts).values() if n > 1)
    document = dataclasses.replace(
        document,
        mapping=mapping_entries(mapping),
        persons=persons_entries(boxes, mapping, written.doubles),
        summary={
            **{k: v for k, v in document.summary.items() if k != "left_alone"},  # the run's reasons
            "persons": persons,
            "tracks_joined": joined,
            "boxes_filled": int(filled.sum()),
            "gaps_filled": gaps_filled,
            "doubles_left_out": len(written.doubles),
        },
        similarity={**document.similarity, **pair_distributions(cache.appearance, cache.track_ids, mapping)},
        corrections=corrections,
        notes=[*document.notes, *notes],
        evaluation=scores,
        tracks=tracks_to_json(merged, filled),
    )
    with staged_files(tracks_json) as staged:
        document, outputs = write_run_folder(
            staged,
            run_dir,
            document,
            boxes,
            mapping,
            merged,
            filled,
            cache,
            clock,
            video=video,
            previous_plan={**plan, "video": str(video_path)},
        )
    if stale_note:
        (run_dir / ANNOTATED_VIDEO).unlink(missing_ok=True)
        reporter.note(stale_note)
    return RunResult(
        run_dir,
        document.frames,
        len(cache.track_ids),
        persons,
        clock.timings,
        notes,
        outputs,
        scores,
        joined,
        {},
        int(filled.sum()),
        doubles_left_out=len(written.doubles),
    )


def rewrite_persons(boxes: TrackSet, mapping: Mapping[int, int], document: RunDocument) -> tuple[PersonTracks, str]:
    """The corrected persons (`mapping` over `boxes`) written as the run wrote its own (its
    tracks.json `parameters`, and which gaps its summary says it filled: `person_tracks`); and
    which gaps that is.

    Runs from before gap filling have no such parameters and stay unfilled; runs from before
    `fill_rule` filled every gap; runs from before `drop_doubles` left no double out.
    """
    params = document.parameters
    keys = (
        "drop_doubles",
        "fill_gaps",
        "fill_max_gap_seconds",
        "fill_method",
        "short_track_score",
        "motion_slack_heights",
        "motion_heights_per_second",
    )
    settings = {"fill_gaps": False, "drop_doubles": False, **{k: params[k] for k in keys if k in params}}
    try:  # the run's own file, but a file: a value edited into nonsense is a bad input, not a crash
        config = config_from_mapping(settings, f"{TRACKS_JSON} parameters")
    except UsageError as exc:
        raise InputError(str(exc)) from None
    rule = document.summary.get("gaps_filled", "all" if config.fill_gaps else "none")  # checked on reading
    return person_tracks(boxes, mapping, config, float(document.video.get("fps") or 25.0), rule), rule


def check_same_video(info: VideoInfo, recorded: Mapping[str, Any], plan_file: Path) -> None:
    """The video a plan names must be the one the run was made from: same frame size, and
    as many frames as the run's video announced or decoded. Boxes drawn on another clip
    would be wrong without a word."""
    size = (recorded.get("width"), recorded.get("height"))
    counts = {n for n in (recorded.get("num_frames"), recorded.get("frames_decoded")) if n is not None}
    if (info.width, info.height) != size or (counts and info.num_frames not in counts):
        raise InputError(
            f"{info.path}: {info.width}x{info.height}, {info.num_frames} frames, but the run was made from a "
            f"{size[0]}x{size[1]} video of {' or '.join(map(str, sorted(counts)))} frames: "
            f"not the run's video (fix 'video' in {plan_file})"
        )
