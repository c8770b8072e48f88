"""The whole job, stage by stage: frames → tracks → crops → embeddings → persons → files.

This module only wires the stages together, times them and reports progress; each stage
lives in its own module. Models are loaded before the long decode so a missing weight file
fails in a second, not after the video has been tracked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reid_merge.app.config import Config
from reid_merge.app.plan import MergeCache, renumber
from reid_merge.app.report import thumbnail_jpeg
from reid_merge.app.results import Reporter, RunResult
from reid_merge.app.run_folder import (
    TRACKS_JSON,
    RunDocument,
    check_output_dir,
    mapping_entries,
    output_names,
    pair_distributions,
    persons_entries,
)
from reid_merge.app.run_writer import AnnotatedVideo, Stopwatch, write_run_folder
from reid_merge.core.adaptation import fit_within_track_whitening
from reid_merge.core.assignment import person_ids_by_first_appearance, tracks_per_person
from reid_merge.core.backfill import add_backfilled, backfill_starts
from reid_merge.core.calibration import (
    appearance_log_likelihood_ratio,
    decisive_similarity,
    different_person_model,
    same_person_model,
    unlearnt_appearance_log_likelihood_ratio,
)
from reid_merge.core.clustering import MAX_DISTANCE, any_between, cluster_tracks
from reid_merge.core.crops import CropSampler, CropSet
from reid_merge.core.crossings import crossings, cut_at_crossings
from reid_merge.core.doubles import find_doubles
from reid_merge.core.impurity import Split, apply_splits, find_impure_tracks, split_apart, undo_unclaimed_cuts
from reid_merge.core.interpolation import fill_gaps, starts_unsure
from reid_merge.core.motion import handover, reachable, track_ends
from reid_merge.core.similarity import track_similarity
from reid_merge.core.stitching import (
    beyond_the_handover,
    chains,
    clutter_density,
    crosses_the_edge,
    handover_model,
    link_weights,
    stitch,
    stitch_error,
)
from reid_merge.core.tracks import TrackSet, cooccurrence
from reid_merge.errors import InputError
from reid_merge.io.atomic import StagedFiles, staged_files
from reid_merge.io.tracks_io import as_written, read_tracks, tracks_to_json
from reid_merge.io.video import VideoInfo, probe_video, read_frames

if TYPE_CHECKING:  # evaluation imports TrackEval, which only scoring needs
    from reid_merge.eval.scores import GroundTruth

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """What every stage of one run shares: where it reads and writes, how it reports."""

    info: VideoInfo
    out_dir: Path
    config: Config
    reporter: Reporter
    clock: Stopwatch = field(default_factory=Stopwatch)
    notes: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    ground_truth: GroundTruth | None = None
    device: str = "cpu"

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.reporter.note(message)


@dataclass(frozen=True)
class MergeOutcome:
    """The merge decision for one set of raw tracks.

    `tracks` are the raw tracks after splitting impure ones (the raw tracks themselves when
    nothing was split); `track_ids`, `mapping` and `similarity` refer to them. `similarity` is
    appearance alone; `distance` and `cannot_link` are what the clustering was given
    (1 - appearance, NaN for tracks whose crops are too few to compare; shared frames, the two
    sides of a cut and hand-overs faster than a walk), None where the outcome was built without
    them. `threshold` is the distance at which chains of stitched tracks were joined (-1: none
    could be joined with confidence), and `calibration` what the video taught: the hand-over
    bounds, the crowding, how people score.
    """

    tracks: TrackSet
    track_ids: np.ndarray
    mapping: dict[int, int]
    similarity: np.ndarray
    tracks_without_crops: int
    adapted: bool
    splits: list[Split]
    distance: np.ndarray | None = None
    cannot_link: np.ndarray | None = None
    tracks_too_few_crops: int = 0
    threshold: float = -1.0
    calibration: dict[str, Any] = field(default_factory=dict)
    held_apart: np.ndarray | None = None  # (N,) why appearance may not join each track; "" where it may


#: Why a track was left alone, for the summary: held apart before clustering, or not close enough.
SHORT_AND_UNSURE = "short and unsure (likely a false detection)"
NO_USABLE_CROP = "no usable crop"
TOO_FEW_CROPS = "too few usable crops"
NOT_CLOSE_ENOUGH = "no other track close enough"
#: The reasons a track is held apart before clustering, the one that decides first.
HELD_APART = (SHORT_AND_UNSURE, NO_USABLE_CROP, TOO_FEW_CROPS)


@dataclass(frozen=True)
class Models:
    """The loaded detector and re-identification model, so that several videos can share them."""

    detector: Any
    detector_info: Any
    embedder: Any
    reid_info: Any


def load_models(config: Config) -> Models:
    """Load the detector and the embedder that `config` names, on its device."""
    from reid_merge.models.embedding import load_embedder, resolve_device  # torch: off the start-up path
    from reid_merge.models.tracking import load_detector  # ultralytics: off the start-up path

    device = resolve_device(config.device)
    detector, detector_info = load_detector(config.detector)
    embedder, reid_info = load_embedder(
        config.reid_model, _optional_path(config.reid_weights), str(device), config.embed_batch_size
    )
    return Models(detector, detector_info, embedder, reid_info)


def run_video(
    video: Path,
    out_dir: Path,
    config: Config,
    reporter: Reporter | None = None,
    ground_truth: Path | None = None,
    models: Models | None = None,
) -> RunResult:
    """Track people in `video`, merge fragmented tracks, write every output into `out_dir`.

    With `ground_truth` (a MOTChallenge gt.txt), the raw and merged tracks are scored too.
    `models` from `load_models(config)` are used as they are (a batch loads them once per
    worker); without them the models are loaded here. The tracker's state is per call.
    """
    from reid_merge.models.tracking import check_tracker_config  # ultralytics: off the start-up path

    writes = output_names(write_video=config.write_video, write_raw=True)
    run = _start(video, out_dir, config, reporter, ground_truth, writes)
    tracker = check_tracker_config(config.tracker)
    with run.clock.time("load models"):
        models = models or load_models(config)
    detector, detector_info = models.detector, models.detector_info
    embedder, reid_info = models.embedder, models.reid_info
    run.models = {"detector": detector_info.to_dict(), "reid": reid_info.to_dict()}
    run.note(f"detector: {detector_info.name} ({detector_info.source})")
    run.note(f"re-identification: {reid_info.source}")
    with run.clock.time("detect + track"):
        tracks, untracked, crops, frames = track_and_sample(
            run.info, detector, detector_info, tracker, run.device, config, run.reporter, run.clock
        )
        backfilled = backfill(tracks, untracked, run.info.fps, config)
    run.clock.timings["detect + track"] -= run.clock.timings.get("sample crops", 0.0)  # its own stage
    if frames < run.info.num_frames:
        run.note(
            f"{video}: decoding stopped after {frames} of the {run.info.num_frames} frames the file announces "
            "(truncated or damaged?); the outputs cover the frames decoded"
        )
    with staged_files(out_dir / TRACKS_JSON) as staged:
        return _merge_and_write(run, tracks, crops, embedder, frames, staged, backfilled=backfilled)


def _start(
    video: Path,
    out_dir: Path,
    config: Config,
    reporter: Reporter | None,
    ground_truth: Path | None,
    writes: tuple[str, ...],
    tracks_path: Path | None = None,
) -> _Run:
    """Check the inputs, the device and the output folder before anything slow happens.

    Nothing is created or written here (only temporaries that killed runs left in the output
    folder are deleted): a run that fails before its outputs are written leaves no trace.
    """
    info = probe_video(video)
    gt = None
    if ground_truth is not None:
        from reid_merge.eval.scores import read_ground_truth  # TrackEval: only when scoring

        gt = read_ground_truth(ground_truth)
    inputs = [Path(info.path), *(p for p in (tracks_path, ground_truth) if p is not None)]
    check_output_dir(out_dir, info, inputs, writes)
    from reid_merge.models.embedding import resolve_device  # imports torch: after the quicker checks

    device = resolve_device(config.device)
    return _Run(info, out_dir, config, reporter or Reporter(), ground_truth=gt, device=str(device))


def track_and_sample(
    info: VideoInfo,
    detector: Any,
    detector_info: Any,
    tracker: str,
    device: str,
    config: Config,
    reporter: Reporter,
    clock: Stopwatch,
) -> tuple[TrackSet, TrackSet, CropSet, int]:
    """One decode of the video: track every frame and sample crops from it as we go.

    Returns the tracks, the boxes no track took (for `backfill`), the crops sampled from the
    tracks' boxes and the number of frames decoded.
    """
    from reid_merge.models.tracking import track_frames  # ultralytics: off the start-up path

    sampler = crop_sampler(config)
    per_frame: list[TrackSet] = []
    untracked: list[TrackSet] = []
    frames = 0
    reporter.start("track", info.num_frames)
    stream = track_frames(
        detector,
        read_frames(info),
        detector_info,
        tracker=tracker,
        confidence=config.detection_confidence,
        image_size=config.image_size,
        device=device,
    )
    for tracked in stream:
        with clock.time("sample crops"):
            sampler.update(tracked.image, tracked.tracks)
        if len(tracked.tracks):
            per_frame.append(tracked.tracks)
        if len(tracked.untracked):
            untracked.append(tracked.untracked)
        frames += 1
        reporter.advance("track")
    reporter.finish("track")
    return TrackSet.concat(per_frame), TrackSet.concat(untracked), sampler.finish(), frames


def backfill(tracks: TrackSet, untracked: TrackSet, fps: float, config: Config) -> TrackSet:
    """The boxes of the tracks' first moments, backfilled as `config` says (`core.backfill`),
    under their tracks' IDs; none when it is off.

    They give no crops (crops are sampled from the boxes as tracked, while the frames go by)
    and the merge does not see them: they join its persons after it (`core.backfill.add_backfilled`).
    """
    return backfill_starts(tracks, untracked, fps, config.backfill_seconds, config.backfill_score)


def merge_tracks_file(
    tracks_path: Path,
    video: Path,
    out_dir: Path,
    config: Config,
    reporter: Reporter | None = None,
    ground_truth: Path | None = None,
) -> RunResult:
    """Merge tracks that any tracker produced for `video`; the outputs of `run_video` less raw_tracks.txt."""
    raw = read_tracks(tracks_path)
    writes = output_names(write_video=config.write_video, write_raw=False)
    run = _start(video, out_dir, config, reporter, ground_truth, writes, tracks_path=tracks_path)
    run.inputs = {"tracks": str(tracks_path)}
    if len(raw) and raw.frame.max() > run.info.num_frames:
        raise InputError(
            f"{tracks_path}: frame {int(raw.frame.max())} is beyond the video's {run.info.num_frames} frames "
            f"({video}); tracks and video do not belong together"
        )
    from reid_merge.models.embedding import load_embedder  # torch: off the start-up path

    with run.clock.time("load models"):
        embedder, reid_info = load_embedder(
            config.reid_model, _optional_path(config.reid_weights), run.device, config.embed_batch_size
        )
    run.models = {"reid": reid_info.to_dict()}
    run.note(f"re-identification: {reid_info.source}")
    with run.clock.time("sample crops"):
        crops, frames = sample_crops(run.info, raw, config, run.reporter)
    last_frame = int(raw.frame.max()) if len(raw) else 0
    if frames < last_frame:
        raise InputError(f"{tracks_path}: tracks reach frame {last_frame} but {video} decodes only {frames} frames")
    with staged_files(out_dir / TRACKS_JSON) as staged:
        return _merge_and_write(run, raw, crops, embedder, run.info.num_frames, staged, backfilled=None)


def crop_sampler(config: Config) -> CropSampler:
    """The sampler `config` asks for; the crops beside encounters only when tracks may be cut."""
    return CropSampler(
        config.crops_per_track,
        config.min_crop_height,
        config.crop_max_covered,
        beside_encounters=config.split_impure,
    )


def sample_crops(info: VideoInfo, tracks: TrackSet, config: Config, reporter: Reporter) -> tuple[CropSet, int]:
    """Decode the video up to the tracks' last frame and sample crops of every track.

    Returns the crops and the last frame decoded.
    """
    sampler = crop_sampler(config)
    order = np.argsort(tracks.frame, kind="stable")
    sorted_frames = tracks.frame[order]
    last_frame = int(sorted_frames[-1]) if len(tracks) else 0
    decoded = 0
    reporter.start("decode", last_frame)
    for frame, image in read_frames(info):
        if frame > last_frame:
            break
        lo, hi = np.searchsorted(sorted_frames, [frame, frame + 1])
        sampler.update(image, tracks[order[lo:hi]])
        decoded = frame
        reporter.advance("decode")
    reporter.finish("decode")
    return sampler.finish(), decoded


def decide_merge(
    raw: TrackSet,
    crops: CropSet,
    features: np.ndarray,
    config: Config,
    fps: float,
    frame_size: tuple[int, int] | None = None,
) -> MergeOutcome:
    """Cut tracks the tracker swapped between two people (`split_impure`) → stitch fragments end
    to start by motion, appearance adding its evidence → join the chains where appearance alone
    is decisive → person IDs.

    Every cut-off is learnt from this video: the hand-over bounds from cuts of its own tracks,
    the crowding from its own frames, how different people score from tracks that share a frame.
    """
    tracks, crop_track, splits, carry_on = raw, crops.track_id, [], None
    if config.split_impure:
        # Motion judges every place two tracks met, against how the video's own tracks carry on
        # where nothing was lost, each of the two tracks at the odds asked of a link that motion
        # alone carries; appearance then judges the parts, where crops allow.
        carry_on = handover_model(raw, fps, 0.0)
        splits = cut_at_crossings(raw, crossings(raw, fps, carry_on, 2.0 * np.log(config.unchecked_stitch_odds)))
        tracks, crop_track = apply_splits(raw, crops.track_id, crops.frame, splits)
        adapt = (config.adapt_dims, config.adapt_regularization) if config.adapt else None
        by_appearance = find_impure_tracks(
            tracks, features, crop_track, crops.frame, config.false_merge_rate, adapt, config.tentative_cut_rate
        )
        tracks, crop_track = apply_splits(tracks, crop_track, crops.frame, by_appearance)
        splits += by_appearance
    # The crops taken beside encounters judged the cuts; the merge compares the spread ones.
    crop_track, features = crop_track[crops.spread], features[crops.spread]
    track_ids = tracks.track_ids
    owner = np.searchsorted(track_ids, crop_track)
    whitening = (
        fit_within_track_whitening(features, owner, config.adapt_dims, config.adapt_regularization)
        if config.adapt
        else None
    )
    if whitening is not None:
        features = whitening.project(features)
    similarity = track_similarity(features, owner, len(track_ids), config.aggregation)  # type: ignore[arg-type]
    shared_frame = cooccurrence(tracks, track_ids)
    apart = split_apart(splits, track_ids)  # the two sides of a cut (not a tentative one): two people
    # Tracks that stay alone rather than being glued onto a person: a short track of low
    # confidence (most likely a detector false positive); a part of a cut track that appearance
    # cannot check, since one of its ends lies where the tracker's motion already took one
    # person for another (OSNet, MOT16-09/img1: a right cut's part of one crop was stitched onto
    # somebody else entering at the same edge); and, for appearance, a track with too few
    # usable crops (one crop is one view: same-vs-different ROC-AUC 0.84 on oracle fragments,
    # 0.91-0.98 from four), which motion may still stitch.
    crop_counts = np.bincount(owner, minlength=len(track_ids))
    too_few_crops = (crop_counts > 0) & (crop_counts < config.min_crops_to_merge)
    unsure = likely_false_positives(tracks, track_ids, config.short_track_detections, config.short_track_score)
    doubtful = unsure | (apart.any(axis=1) & (crop_counts < config.min_crops_to_merge))
    held_apart = np.select([unsure, crop_counts == 0, too_few_crops], list(HELD_APART), default="")  # in that order
    one_view = too_few_crops[:, None] | too_few_crops[None, :]
    appearance = np.where(one_view, np.nan, similarity)

    ends = track_ends(tracks, track_ids)
    # A link is read at the boxes and on the lines through them, the bounds at the boxes alone:
    # learnt on the better of the two readings too, they loosened at 1.5 s and carried a wrong
    # link at the edge of the odds over them (TUD-Campus cut in halves, tests/test_cli.py:
    # identity 6's second half continued by identity 8).
    error, gap = stitch_error(ends, fps, on_the_line=True)
    model = handover_model(tracks, fps, config.stitch_max_gap_seconds)
    clutter = clutter_density(tracks, track_ids)
    different = different_person_model(appearance, shared_frame)
    allowed = ~shared_frame & ~apart & ~doubtful[:, None] & ~doubtful[None, :]
    if frame_size is not None:  # who walks out of the picture was not lost by the tracker
        allowed &= ~crosses_the_edge(tracks, ends, track_ids, frame_size)
    unchecked_margin = np.log(config.unchecked_stitch_odds)
    motion = (ends, error, gap, model, clutter, config.stitch_max_gap_seconds, allowed)
    # How one person scores across a gap is learnt from the links motion alone would make at the
    # square root of the ratio asked of motion alone (enough of them, mostly right); the final
    # links need the full ratio from motion and appearance together.
    links = stitch(link_weights(*motion), unchecked_margin / 2.0)
    same = same_person_model(appearance, links.pairs, different.spread / 2) if different else None
    # A track seen in fewer crops than min_crops_to_merge is not joined by appearance, but one
    # view may still speak for a stitch (`similarity`, unmasked; NaN only without crops); never
    # against, since one crop scores more widely than the pairs the models were fitted on
    # (against, too, cost TUD-Stadtmitte's true links).
    evidence = None  # appearance says nothing where one person scores no higher than two
    if same is not None and different is not None and same.centre > different.centre:
        evidence = appearance_log_likelihood_ratio(similarity, same, different)
        evidence = np.where(one_view, np.maximum(evidence, 0.0), evidence)
    elif same is None and different is not None:  # too few links to learn from: only for, never against
        evidence = unlearnt_appearance_log_likelihood_ratio(similarity, different)
    # A link appearance can check (crops enough on both sides to compare) needs stitch_odds from
    # motion and appearance together; one it cannot check rests on motion and needs more
    # (TUD-Campus cut in halves: a man seen only behind others, continued 1.5 s later by
    # another stepping out from behind them where his walk leads, docs/quality.md).
    compared = crop_counts >= config.min_crops_to_merge
    checked = compared[:, None] & compared[None, :] & (evidence is not None)
    margin = np.full(checked.shape, unchecked_margin)
    margin[checked] = np.log(config.stitch_odds)
    links = stitch(link_weights(*motion, evidence), margin)
    chain = chains(links.successor)

    # Chains that never share a frame and could reach each other are joined by appearance alone.
    num_chains = int(chain.max()) + 1 if len(chain) else 0
    usable = ~(too_few_crops | doubtful)[owner]
    chain_similarity = track_similarity(
        features[usable],
        chain[owner][usable],
        num_chains,
        config.aggregation,  # type: ignore[arg-type]
    )
    chain_shared_frame = any_between(shared_frame, chain, num_chains)
    cannot_link = chain_shared_frame | any_between(apart, chain, num_chains)
    never = shared_frame | apart  # track pairs that can never be one person by appearance
    beyond = 0
    if config.motion_gate:
        anyhow = handover(ends, fps)[0]  # whether anybody could have got there at all: stopping included
        never |= ~reachable(anyhow, gap, config.motion_slack_heights, config.motion_heights_per_second)
        np.fill_diagonal(never, False)
        cannot_link |= any_between(never, chain, num_chains)
        # Where motion can still tell, the chains' facing ends must also fit this video's
        # hand-over: that rules out more pairs, and the join's family of candidates shrinks.
        too_far = beyond_the_handover(ends, anyhow, gap, model, chain, config.stitch_max_gap_seconds)
        beyond = int(np.triu(too_far & ~cannot_link, k=1).sum())
        cannot_link |= too_far
    np.fill_diagonal(cannot_link, False)
    chain_doubtful = np.zeros(num_chains, dtype=bool)
    chain_doubtful[chain[doubtful]] = True  # doubtful tracks are never stitched: chains of their own
    chain_different = different_person_model(chain_similarity, chain_shared_frame)
    threshold = config.threshold
    if threshold is None:
        candidates = ~cannot_link & np.triu(np.ones_like(cannot_link), k=1)
        candidates &= ~chain_doubtful[:, None] & ~chain_doubtful[None, :]
        cut = (
            decisive_similarity(chain_similarity[candidates], chain_different, config.false_merge_rate)
            if chain_different is not None
            else float("inf")
        )
        threshold = float(np.clip(1.0 - cut, 0.0, MAX_DISTANCE)) if np.isfinite(cut) else -1.0
    distance = 1.0 - chain_similarity
    distance[chain_doubtful, :] = np.nan
    distance[:, chain_doubtful] = np.nan
    chain_labels = cluster_tracks(
        distance,
        cannot_link,
        threshold,
        config.persons,
        criterion=config.criterion,  # type: ignore[arg-type]
        dispersion_weight=config.dispersion_weight,
    )
    labels = chain_labels[chain]
    undone: list[Split] = []
    if config.persons is None:  # a count given decides how many persons there are
        labels, undone = undo_unclaimed_cuts(splits, track_ids, labels, shared_frame)
    mapping = person_ids_by_first_appearance(tracks, track_ids, labels)
    calibration = {
        "false_merge_rate": config.false_merge_rate,
        "stitch_odds": config.stitch_odds,
        "unchecked_stitch_odds": config.unchecked_stitch_odds,
        "handover": model.to_dict(),
        "carry_on": carry_on.to_dict() if carry_on is not None else None,
        "cut_by_motion": sum(split.by == "motion" for split in splits),
        "tentative_cuts": sum(split.tentative for split in splits),
        "tentative_cuts_undone": len(undone),
        "tentative_cuts_standing": sum(
            split.tentative and mapping[split.track_id] != mapping[split.new_track_id] for split in splits
        ),
        "clutter_per_square_height": {
            "median": float(np.median(clutter)) if len(clutter) else 0.0,
            "max": float(clutter.max()) if len(clutter) else 0.0,
        },
        "stitched_links": len(links.pairs),
        "ambiguous_links": links.ambiguous,
        "different_people": different.to_dict() if different else None,
        "same_person_across_a_gap": same.to_dict() if same else None,
        "appearance_in_stitching": None if evidence is None else ("learnt" if same is not None else "for only"),
        "chains": num_chains,
        "chains_beyond_the_handover": beyond,
        "chains_different_people": chain_different.to_dict() if chain_different else None,
        "join_similarity": None if threshold < 0 else 1.0 - threshold,
        "threshold_from": "calibration" if config.threshold is None else "setting",
    }
    return MergeOutcome(
        tracks,
        track_ids,
        mapping,
        similarity,
        int(np.sum(crop_counts == 0)),
        whitening is not None,
        splits,
        1.0 - appearance,
        never,
        int(too_few_crops.sum()),
        threshold,
        calibration,
        held_apart,
    )


def likely_false_positives(
    tracks: TrackSet, track_ids: np.ndarray, max_detections: int, max_mean_score: float
) -> np.ndarray:
    """`(N,)` True for tracks with fewer than `max_detections` boxes and a mean score below `max_mean_score`.

    >>> t = TrackSet.from_arrays([1, 2, 1, 1], [1, 1, 2, 3], np.zeros((4, 4)), [0.3, 0.3, 0.9, 0.2])
    >>> likely_false_positives(t, np.array([1, 2, 3]), 2, 0.5).tolist()
    [False, False, True]
    """
    index = np.searchsorted(track_ids, tracks.track_id)
    counts = np.bincount(index, minlength=len(track_ids))
    mean_score = np.bincount(index, weights=tracks.score, minlength=len(track_ids)) / np.maximum(counts, 1)
    return (counts < max_detections) & (mean_score < max_mean_score)


def similarity_report(outcome: MergeOutcome, config: Config) -> dict[str, Any]:
    """Distribution of pairwise track similarities, split by whether the pair was merged."""
    return {
        "aggregation": config.aggregation,
        "threshold_distance": outcome.threshold,
        "calibration": outcome.calibration,
        **pair_distributions(outcome.similarity, outcome.track_ids, outcome.mapping),
        "tracks_without_crops": outcome.tracks_without_crops,
        "tracks_too_few_crops": outcome.tracks_too_few_crops,
        "adapted_to_video": outcome.adapted,
    }


def _merge_and_write(
    run: _Run,
    tracks: TrackSet,
    crops: CropSet,
    embedder: Any,
    frames: int,
    staged: StagedFiles,
    *,
    backfilled: TrackSet | None,
) -> RunResult:
    """Decide the merge of `tracks` and write every output to `staged` (the caller commits them together).

    `backfilled`: for `run`, the boxes `backfill` gave the tracks (maybe none), added to the
    persons after the merge; raw_tracks.txt holds the tracks with them. None for `merge`, which
    writes no raw tracks.
    """
    write_raw = backfilled is not None
    backfilled = backfilled if backfilled is not None else TrackSet.empty()
    raw = TrackSet.concat([tracks, backfilled]).sorted() if len(backfilled) else tracks
    config, clock, reporter = run.config, run.clock, run.reporter
    with clock.time("embed"):
        features = _embed(embedder, crops, config.embed_batch_size * 4, reporter)
    with clock.time("similarity + cluster"):
        outcome = decide_merge(tracks, crops, features, config, run.info.fps, (run.info.width, run.info.height))
    gaps_filled = gap_fill_rule(tracks, config)
    boxes = add_backfilled(outcome.tracks, outcome.mapping, backfilled)  # of the persons, by raw track
    if len(backfilled):  # persons numbered by first appearance, first moments included
        outcome = dataclasses.replace(outcome, mapping=renumber(boxes, outcome.mapping))
    written = person_tracks(boxes, outcome.mapping, config, run.info.fps, gaps_filled)
    outcome = dataclasses.replace(outcome, mapping=written.mapping)
    merged, filled = written.merged, written.filled
    persons = written.persons
    changes = merge_changes(outcome)
    for split in outcome.splits:
        if outcome.mapping[split.track_id] == outcome.mapping[split.new_track_id]:
            run.note(
                f"track {split.track_id} may hold two people from frame {split.frame} on (by {split.by}, tentative): "
                f"the merge kept that part, track {split.new_track_id}, with it"
            )
            continue
        how = f"{split.by}, tentative" if split.tentative else split.by
        run.note(
            f"track {split.track_id} holds two people (by {how}): from frame {split.frame} on it is track "
            f"{split.new_track_id}"
        )
    if written.doubles:
        run.note(doubles_note(written.doubles))
    if len(raw) == 0:
        run.note("nobody was detected: the outputs hold no tracks")
    elif len(outcome.track_ids) == 1:
        run.note("one track: nothing to merge")

    # The files are scored, as `reid-merge eval` would score them: boxes to 0.01 px as written
    # (`merge` does not write its input: the raw tracks are scored as read).
    scored_raw = as_written(raw) if write_raw else raw
    scores = _score(scored_raw, as_written(merged), run.ground_truth) if run.ground_truth is not None else None
    document = RunDocument(
        video={**run.info.to_dict(), "frames_decoded": frames},
        inputs=run.inputs,
        parameters=config.to_dict(),
        models=run.models,
        summary={
            "frames": frames,
            "raw_tracks": len(raw.track_ids),
            "persons": persons,
            **changes,
            "boxes_filled": int(filled.sum()),
            "gaps_filled": gaps_filled,
            "doubles_left_out": len(written.doubles),
            **({"boxes_backfilled": len(backfilled)} if write_raw else {}),
        },
        splits=[dataclasses.asdict(split) for split in outcome.splits],
        mapping=mapping_entries(outcome.mapping),
        persons=persons_entries(boxes, outcome.mapping, written.doubles),
        similarity=similarity_report(outcome, config),
        evaluation=scores,
        notes=run.notes,
        tracks=tracks_to_json(merged, filled),
    )
    video = None
    if config.write_video:
        video = AnnotatedVideo(counting_frames(read_frames(run.info), reporter, frames), run.info.fps)
    document, outputs = write_run_folder(
        staged,
        run.out_dir,
        document,
        boxes,
        outcome.mapping,
        merged,
        filled,
        lambda: merge_cache(outcome, crops, features, run.ground_truth, backfilled),
        clock,
        raw=raw if write_raw else None,
        video=video,
    )
    return RunResult(
        run.out_dir,
        document.frames,
        len(raw.track_ids),
        persons,
        dict(clock.timings),
        run.notes,
        outputs,
        scores,
        changes["tracks_joined"],
        changes["left_alone"],
        int(filled.sum()),
        len(backfilled) if write_raw else None,
        len(written.doubles),
    )


def merge_cache(
    outcome: MergeOutcome,
    crops: CropSet,
    features: np.ndarray,
    ground_truth: GroundTruth | None,
    backfilled: TrackSet,
) -> MergeCache:
    """The merge cache of one merge decision, the crops it compared and the boxes backfilled
    after it (what ``apply`` corrects from)."""
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
        backfilled=backfilled,
    )


@dataclass(frozen=True)
class PersonTracks:
    """The persons as a run writes them.

    Attributes:
        mapping: raw track → person; the persons of `merged` numbered ``1..K`` by first
            appearance, those left out after them.
        merged: the persons' boxes, gaps filled, the doubles left out (tracks.txt).
        filled: `(n,)` True for the boxes of `merged` that gap filling added.
        doubles: each person left out → the person it doubles (`find_doubles`).
    """

    mapping: dict[int, int]
    merged: TrackSet
    filled: np.ndarray
    doubles: dict[int, int]

    @property
    def persons(self) -> int:
        """Persons written (the doubles left out)."""
        return len(set(self.mapping.values())) - len(self.doubles)


def person_tracks(boxes: TrackSet, mapping: Mapping[int, int], config: Config, fps: float, rule: str) -> PersonTracks:
    """The persons of `mapping` over `boxes` (raw track IDs), gaps filled as `config` and `rule`
    (`gap_fill_rule`) say and, with `config.drop_doubles`, the persons that double another left
    out (`find_doubles`, after filling: the boxes written are what doubles). Those left out keep
    their place in the mapping, numbered after the rest, so that tracks.txt's IDs stay ``1..K``."""
    persons = boxes.relabel(mapping)
    merged, filled = fill_person_gaps(persons, config, fps, rule)
    doubles = find_doubles(merged) if config.drop_doubles else {}
    if not doubles:
        return PersonTracks(dict(mapping), merged, filled, {})
    left_out = np.isin(persons.track_id, list(doubles))
    same = {int(p): int(p) for p in persons.track_ids}
    number = renumber(persons[~left_out], same)
    number |= {p: len(number) + n for p, n in renumber(persons[left_out], same).items()}
    keep = ~np.isin(merged.track_id, list(doubles))
    return PersonTracks(
        {int(t): number[p] for t, p in mapping.items()},
        merged[keep].relabel(number),
        filled[keep],
        {number[p]: number[q] for p, q in doubles.items()},
    )


def doubles_note(doubles: Mapping[int, int]) -> str:
    """The run's note on the persons left out as doubles."""
    which = ", ".join(f"{p} doubles {q}" for p, q in sorted(doubles.items()))
    return (
        f"{len(doubles)} person(s) left out of the tracks and video, each of whose boxes lies over a box of one "
        f"longer person (the same person boxed twice): {which}"
    )


def fill_person_gaps(persons: TrackSet, config: Config, fps: float, rule: str) -> tuple[TrackSet, np.ndarray]:
    """The merged tracks with their gaps filled as `config` and `rule` (`gap_fill_rule`) say,
    and `(n,)` True for filled boxes."""
    max_gap_frames = round(config.fill_max_gap_seconds * fps) if rule != "none" else 0
    return fill_gaps(
        persons,
        max_gap_frames,
        fps,
        config.motion_slack_heights,
        config.motion_heights_per_second,
        config.fill_method,  # type: ignore[arg-type]
        sure_score=config.short_track_score if rule == "sure" else None,
    )


def gap_fill_rule(raw: TrackSet, config: Config) -> str:
    """Which gaps `config` fills for these raw tracks (as the tracker gave them: before
    `backfill`, whose boxes score lower by design): none, all, or sure.

    `auto` is `sure` where some raw track begins on a box scoring below `short_track_score`:
    the tracker starts tracks on boxes it is unsure of, and then filled gaps are mostly false
    detections and duplicates of a person tracked twice (docs/quality.md, "Gap filling").
    """
    if not config.fill_gaps:
        return "none"
    if config.fill_rule != "auto":
        return config.fill_rule
    return "sure" if starts_unsure(raw, config.short_track_score) else "all"


def merge_changes(outcome: MergeOutcome) -> dict[str, Any]:
    """What the merge changed: tracks joined into persons of several tracks, and tracks left
    alone, by why (held apart before clustering, or no other track close enough). The two sides
    of a tentative cut that the merge undid are one track, as they were before the cut."""
    tracks = tracks_per_person(outcome.mapping, [(split.track_id, split.new_track_id) for split in outcome.splits])
    person = np.array([outcome.mapping[int(t)] for t in outcome.track_ids], dtype=np.int64)
    held_apart = outcome.held_apart if outcome.held_apart is not None else np.full(len(person), "")
    left_alone = dict.fromkeys((NO_USABLE_CROP, TOO_FEW_CROPS, SHORT_AND_UNSURE, NOT_CLOSE_ENOUGH), 0)
    for p in (p for p, n in tracks.items() if n == 1):
        why = held_apart[person == p]  # a track, or the two sides of a cut undone
        held = (why != "").all()
        left_alone[next(r for r in HELD_APART if r in why) if held else NOT_CLOSE_ENOUGH] += 1
    return {"tracks_joined": sum(n for n in tracks.values() if n > 1), "left_alone": left_alone}


def _score(raw: TrackSet, merged: TrackSet, gt: GroundTruth) -> dict[str, dict[str, float | int]]:
    from reid_merge.eval.scores import evaluate  # TrackEval: only when scoring

    return {"raw": evaluate(raw, gt).to_dict(), "merged": evaluate(merged, gt).to_dict()}


def _embed(embedder: Any, crops: CropSet, chunk: int, reporter: Reporter) -> np.ndarray:
    reporter.start("embed", len(crops))
    parts = []
    for start in range(0, len(crops), chunk):
        part = crops.crops[start : start + chunk]
        parts.append(embedder(part))
        reporter.advance("embed", len(part))
    reporter.finish("embed")
    if not parts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def counting_frames(
    frames: Iterable[tuple[int, np.ndarray]], reporter: Reporter, total: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Pass frames through as the reporter's ``video`` stage of `total` steps, one per frame."""
    reporter.start("video", total)
    for item in frames:
        yield item
        reporter.advance("video")
    reporter.finish("video")


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
