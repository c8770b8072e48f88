"""Merge quality end to end on every sequence in a data folder with ground truth.

Tracks each sequence once with the default detector and tracker (cached), embeds the crops
once, then scores the raw tracks, the merge under each aggregation and threshold, and the
best merge any clustering of these raw tracks could reach (each raw track given to the true
identity it overlaps most, never joining tracks that share a frame).

    python bench/quality.py [--data ../shared/data] [--vary threshold=0.6,0.65,0.7 --vary criterion=average,dbc]
        [--set tracker=bench/trackers/ultralytics_bytetrack.yaml] [--only TUD-Campus] [--select IDF1]

End to end, each scheme's merged tracks are gap-filled as its settings say (the outputs a
run writes), so `--vary fill_max_gap_seconds=0,0.5,1,2 --vary fill_method=linear,gsi`
measures gap filling. With several schemes, a leave-one-sequence-out table says which scheme
the other sequences would choose (best mean of `--select` over their inputs) and what it
scores on the held-out one. A last table holds each scheme's cuts against the raw tracker's own
swaps (`tracker_switches`): real swaps, where `--protocol swaps` makes synthetic ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from oracle import cut_into_fragments, pairwise_scores
from scipy.optimize import linear_sum_assignment

from reid_merge.app.config import Config, config_from_mapping
from reid_merge.app.pipeline import (
    backfill,
    decide_merge,
    fill_person_gaps,
    gap_fill_rule,
    person_tracks,
    sample_crops,
    track_and_sample,
)
from reid_merge.app.results import Reporter
from reid_merge.app.run_writer import Stopwatch
from reid_merge.core.backfill import add_backfilled
from reid_merge.core.clustering import cluster_tracks
from reid_merge.core.crops import box_quality
from reid_merge.core.encounters import MIN_CROPS_EACH_SIDE, close_pairs
from reid_merge.core.impurity import Split
from reid_merge.core.tracks import TrackSet, box_iou, cooccurrence
from reid_merge.errors import UsageError
from reid_merge.eval.scores import GroundTruth, evaluate, read_ground_truth
from reid_merge.io.tracks_io import as_written
from reid_merge.io.video import probe_video
from reid_merge.models.tracking import check_tracker_config

ROOT = Path(__file__).resolve().parents[1]
# Settings that shape the raw tracks, the crops a merge starts from, and the features (cache keys).
TRACKING = ("detector", "tracker", "detection_confidence", "image_size")
#: ... and the settings that shape the raw tracks from what the tracker found.
RAW = (*TRACKING, "backfill_seconds", "backfill_score")
CROPPING = ("crops_per_track", "min_crop_height", "crop_max_covered", "split_impure")
EMBEDDING = ("reid_model", "reid_weights")
#: The re-identification model of record for measuring, when ../shared/weights is there.
SHARED_OSNET = ROOT.parent / "shared" / "weights" / "osnet_x0_25_msmt17.pth"
# Code that shapes them: a change to any of these files invalidates what it shapes too.
TRACKING_CODE = ("reid_merge/models/tracking.py",)
CROPPING_CODE = ("reid_merge/core/crops.py", "reid_merge/core/encounters.py")
EMBEDDING_CODE = ("reid_merge/models/embedding.py", "reid_merge/core/colour.py")
SHAPING_CODE = (*TRACKING_CODE, *CROPPING_CODE, *EMBEDDING_CODE, "bench/oracle.py")


def cache_key(*parts: object, code: tuple[str, ...] = SHAPING_CODE) -> str:
    digests = [hashlib.sha256((ROOT / name).read_bytes()).hexdigest() for name in code]
    return hashlib.sha256(json.dumps([*parts, digests], sort_keys=True).encode()).hexdigest()[:16]


# Results already read or computed in this process: the schemes of one run share them.
_LOADED: dict[Path, Any] = {}


def cached(path: Path, compute: Callable[[], Any]) -> Any:
    """`compute()`, stored in `path` and kept in memory, unless either already holds it."""
    if path not in _LOADED:
        if path.is_file():
            _LOADED[path] = pickle.loads(path.read_bytes())
        else:
            _LOADED[path] = compute()
            path.parent.mkdir(parents=True, exist_ok=True)
            # Renamed into place, so that a second bench process never reads half a file.
            partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            partial.write_bytes(pickle.dumps(_LOADED[path]))
            partial.replace(path)
    return _LOADED[path]


def tracked(sequence: Path, config: Config, cache: Path) -> tuple[TrackSet, object, np.ndarray, dict]:
    """Raw tracks (backfilled as `config` says), crops and crop features for one sequence, each
    cached by what shapes it.

    The crops are sampled by a second decode over the cached tracks: the same sampler over the
    same boxes of each frame as in the tracking pass, so the same crops (checked on TUD-Campus
    and KITTI-17, 2026-12-02), and a change to the sampler costs a decode, not a tracking run.
    As in a run, they come from the boxes as tracked, not from the backfilled ones; those
    tracks are `meta["tracked"]` (what the merge decides on, and which gaps `fill_rule: auto`
    fills is judged on), and the backfilled boxes alone `meta["backfilled"]`.
    """
    settings = config.to_dict()
    tracker_yaml = Path(check_tracker_config(config.tracker)).read_text()
    tracks_key = cache_key(str(sequence), {k: settings[k] for k in TRACKING}, tracker_yaml, code=TRACKING_CODE)
    (tracks, untracked), meta = cached(
        cache / f"{sequence.name}-{tracks_key}.tracks.pkl", lambda: _track(sequence, config)
    )
    crops_key = cache_key({k: settings[k] for k in CROPPING}, code=CROPPING_CODE)
    crops = cached(
        cache / f"{sequence.name}-{tracks_key}-{crops_key}.crops.pkl",
        lambda: sample_crops(probe_video(sequence), tracks, config, Reporter())[0],
    )
    embedding_key = cache_key({k: settings[k] for k in EMBEDDING}, code=EMBEDDING_CODE)
    features = cached(
        cache / f"{sequence.name}-{tracks_key}-{crops_key}-{embedding_key}.features.pkl",
        lambda: _embed(crops.crops, config),
    )
    backfilled = backfill(tracks, untracked, probe_video(sequence).fps, config)
    raw = TrackSet.concat([tracks, backfilled]).sorted()
    return raw, crops, features, {**meta, "tracked": tracks, "backfilled": backfilled}


def _track(sequence: Path, config: Config) -> tuple[tuple[TrackSet, TrackSet], dict]:
    from reid_merge.models.embedding import resolve_device
    from reid_merge.models.tracking import load_detector

    info = probe_video(sequence)
    device = resolve_device(config.device)
    detector, detector_info = load_detector(config.detector)
    start = time.perf_counter()
    tracks, untracked, _, _ = track_and_sample(
        info,
        detector,
        detector_info,
        check_tracker_config(config.tracker),
        str(device),
        config,
        Reporter(),
        Stopwatch(),
    )
    return (tracks, untracked), {"seconds": time.perf_counter() - start, "detector": detector_info.name}


def _embed(crops: list[np.ndarray], config: Config) -> np.ndarray:
    from reid_merge.models.embedding import load_embedder, resolve_device

    device = str(resolve_device(config.device))
    embedder, _ = load_embedder(config.reid_model, config.reid_weights, device, config.embed_batch_size)
    return embedder(crops) if len(crops) else np.zeros((0, 1), np.float32)


def oracle_features(
    sequence: Path, seed: int, config: Config, cache: Path
) -> tuple[TrackSet, dict, object, np.ndarray]:
    """Oracle fragments of one sequence, their crops and features, cached per seed and settings."""
    oracle_shaping = ("crops_per_track", "min_crop_height", "crop_max_covered", *EMBEDDING)
    shaping = {k: config.to_dict()[k] for k in oracle_shaping}
    path = sequence / "gt" / "gt.txt"
    gt = read_ground_truth(path)
    targets = gt.targets[visible(gt.targets, path)]
    # What the fragments are cut from, in the key where it is not every row of the file: the
    # visibility filter of MOT16 layouts, the targets' content otherwise (KITTI-17's zero-marked
    # rows). Sequences cut from every row (the TUD ones) keep their earlier keys.
    if _columns(path) == 9:
        source: list[object] = [{"min_visibility": MIN_VISIBILITY}]
    elif len(targets) != len(gt.boxes):
        content = hashlib.sha256(targets.frame.tobytes() + targets.track_id.tobytes() + targets.xyxy.tobytes())
        source = [content.hexdigest()]
    else:
        source = []
    key = cache_key(str(sequence), seed, shaping, *source)
    return cached(cache / f"oracle-{sequence.name}-{key}.pkl", lambda: _cut_and_embed(sequence, targets, seed, config))


#: Ground-truth boxes less visible than this are not given to the merge as fragments: MOT16
#: annotates people fully hidden behind others (30% of MOT16-09's boxes are under 0.25 visible,
#: some in exactly the box of the person in front), which no detector reports, so no tracker
#: hands such fragments to a merge.
MIN_VISIBILITY = 0.25


def visible(boxes: TrackSet, path: Path, min_visibility: float = MIN_VISIBILITY) -> np.ndarray:
    """`(n,)` True for the boxes (read from `path`) at least `min_visibility` visible; all of
    them for layouts without a visibility column (MOT15)."""
    if _columns(path) != 9:
        return np.ones(len(boxes), dtype=bool)
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    visibility = {(int(f), int(t)): float(v) for f, t, v in rows[:, [0, 1, 8]]}
    keys = zip(boxes.frame, boxes.track_id)
    return np.array([visibility.get((int(f), int(t)), 1.0) >= min_visibility for f, t in keys], dtype=bool)


def _columns(path: Path) -> int:
    with path.open() as lines:
        return len(lines.readline().split(","))


def _cut_and_embed(
    sequence: Path, targets: TrackSet, seed: int, config: Config
) -> tuple[TrackSet, dict, object, np.ndarray]:
    fragments, identity = cut_into_fragments(targets, seed)
    crops, _ = sample_crops(probe_video(sequence), fragments, config, Reporter())
    return fragments, identity, crops, _embed(crops.crops, config)


#: A cut counts as finding a synthetic swap when it is at most this many frames from it.
SWAP_TOLERANCE_FRAMES = 5


@dataclass(frozen=True)
class Swap:
    """From `frame` on, track `first` holds the person track `second` held before, and back."""

    frame: int
    first: int
    second: int


def swap_identities(targets: TrackSet, seed: int) -> tuple[TrackSet, list[Swap]]:
    """Ground-truth tracks with identities exchanged where two came close, as a tracker does.

    Pairs of identities that came within a box width of each other (`impurity.close_pairs`, the
    places the cutting looks at too) are visited in random order; each pair whose identities are
    both still unswapped is swapped with probability 1/2, after a random one of its close frames
    where both go on afterwards. So about half the identities that meet anybody swap once, and
    the other tracks, many of which pass close to somebody, show what a cut by mistake costs.
    """
    rng = np.random.default_rng(seed)
    frame, first, second = close_pairs(targets)
    a, b = targets.track_id[first], targets.track_id[second]
    last = {int(t): int(targets.frame[targets.track_id == t].max()) for t in targets.track_ids}
    pairs = sorted({(int(x), int(y)) for x, y in zip(np.minimum(a, b), np.maximum(a, b))})
    used: set[int] = set()
    swaps = []
    for k in rng.permutation(len(pairs)):
        x, y = pairs[k]
        coin = rng.random()
        frames = np.unique(frame[(np.minimum(a, b) == x) & (np.maximum(a, b) == y)])
        frames = frames[frames < min(last[x], last[y])]
        if x in used or y in used or coin >= 0.5 or len(frames) == 0:
            continue
        at = int(rng.choice(frames)) + 1
        swaps.append(Swap(at, x, y))
        used |= {x, y}
    track_id = targets.track_id.copy()
    for swap in swaps:
        later = targets.frame >= swap.frame
        track_id[later & (targets.track_id == swap.first)] = swap.second
        track_id[later & (targets.track_id == swap.second)] = swap.first
    return TrackSet(targets.frame.copy(), track_id, targets.xyxy.copy(), targets.score.copy()), swaps


def swapped_features(
    sequence: Path, seed: int, config: Config, cache: Path
) -> tuple[TrackSet, list[Swap], object, np.ndarray]:
    """Swapped ground truth of one sequence, its crops (cached per seed) and their features
    (cached per seed and embedder)."""
    path = sequence / "gt" / "gt.txt"
    gt = read_ground_truth(path)
    targets = gt.targets[visible(gt.targets, path)]
    shaping = {k: config.to_dict()[k] for k in ("crops_per_track", "min_crop_height", "crop_max_covered")}
    content = hashlib.sha256(targets.frame.tobytes() + targets.track_id.tobytes() + targets.xyxy.tobytes())
    key = cache_key("swaps-v2", str(sequence), seed, shaping, content.hexdigest())

    def sample() -> tuple[TrackSet, list[tuple[int, int, int]], object]:
        swapped, swaps = swap_identities(targets, seed)
        crops, _ = sample_crops(probe_video(sequence), swapped, config, Reporter())
        return swapped, [dataclasses.astuple(swap) for swap in swaps], crops  # no class of this script pickled

    swapped, swaps, crops = cached(cache / f"swaps-{sequence.name}-{key}.pkl", sample)
    embedding = {k: config.to_dict()[k] for k in EMBEDDING}
    features = cached(
        cache / f"swaps-{sequence.name}-{key}-{cache_key(embedding)}.features.pkl", lambda: _embed(crops.crops, config)
    )
    return swapped, [Swap(*swap) for swap in swaps], crops, features


def swap_table(sequences: list[Path], args: argparse.Namespace, base: Config) -> list[dict]:
    """Per sequence and scheme (cutting on): share of synthetic swaps cut within
    SWAP_TOLERANCE_FRAMES of the swap, and share of tracks without a swap cut, over seeds.

    Each swap makes two impure tracks; each counts as found when a cut of it (or of a part of
    it) lies within the tolerance of the swap. `judgeable` counts the impure tracks with at least
    `encounters.MIN_CROPS_EACH_SIDE` usable boxes (`crops.box_quality` above 0: big enough, in
    the picture, not wholly behind somebody) on each side of the swap: the others cannot be
    judged by any crops at all. `cuttable` counts those whose sampled crops have as many.
    """
    rows = []
    for sequence in sequences:
        info = probe_video(sequence)
        for name, config in schemes(args, base):
            config = dataclasses.replace(config, split_impure=True)
            impure = found = judgeable = cuttable = clean = cut_clean = cuts = 0
            for seed in range(args.seeds):
                swapped, swaps, crops, features = swapped_features(sequence, seed, config, args.cache)
                usable = usable_boxes(swapped, info.width, info.height, config)
                outcome = decide_merge(swapped, crops, features, config, info.fps, (info.width, info.height))
                cut_frames = cuts_by_track(outcome.splits, swapped.track_ids)
                cuts += len(outcome.splits)
                swapped_ids = set()
                for swap in swaps:
                    for track in (swap.first, swap.second):
                        swapped_ids.add(track)
                        impure += 1
                        frames = cut_frames.get(track, [])
                        found += any(abs(f - swap.frame) <= SWAP_TOLERANCE_FRAMES for f in frames)
                        mine = crops.frame[crops.track_id == track]
                        cuttable += min((mine < swap.frame).sum(), (mine >= swap.frame).sum()) >= MIN_CROPS_EACH_SIDE
                        boxes = swapped.frame[usable & (swapped.track_id == track)]
                        judgeable += min((boxes < swap.frame).sum(), (boxes >= swap.frame).sum()) >= MIN_CROPS_EACH_SIDE
                pure = [int(t) for t in swapped.track_ids if int(t) not in swapped_ids]
                clean += len(pure)
                cut_clean += sum(t in cut_frames for t in pure)
            rows.append(
                {
                    "sequence": sequence.name,
                    "scheme": name,
                    "swapped tracks": impure,
                    "judgeable": judgeable,
                    "cuttable": cuttable,
                    f"found (within {SWAP_TOLERANCE_FRAMES} frames)": found / impure if impure else float("nan"),
                    "found of judgeable": found / judgeable if judgeable else float("nan"),
                    "tracks without a swap": clean,
                    "cut by mistake": cut_clean / clean if clean else float("nan"),
                    "cuts": cuts,
                }
            )
    return rows


def cuts_by_track(splits: list[Split], track_ids: np.ndarray) -> dict[int, list[int]]:
    """The frames each of the original tracks was cut at (a later cut may cut a part of it)."""
    root = {int(t): int(t) for t in track_ids}
    for split in splits:
        root[split.new_track_id] = root[split.track_id]
    frames: dict[int, list[int]] = {}
    for split in splits:
        frames.setdefault(root[split.track_id], []).append(split.frame)
    return frames


#: A tracker's switch counts when the track holds each of the two people for this many boxes
#: or more: shorter runs are a box or two taken from somebody passing, not a swap to undo.
MIN_SWITCH_RUN = 5


def followed(gt: GroundTruth) -> TrackSet:
    """The ground truth a track may follow and switch from: the targets, and the distractors
    (people standing still, reflections, people on vehicles), which a detector rightly finds and
    the scores ignore. A track that passes from a distractor to a pedestrian has switched as
    surely as one that passes between two pedestrians (MOT16-09's identity 30, a distractor at
    the left edge, hands its tracks to those who walk in front of it)."""
    return TrackSet.concat([gt.targets, gt.boxes[gt.distractors]])


def tracker_switches(raw: TrackSet, people: TrackSet, min_run: int = MIN_SWITCH_RUN) -> dict[int, list[int]]:
    """Where each raw track passed from one true identity to another: the first frame of the new
    identity, between runs of at least `min_run` boxes matched to one identity each (boxes matched
    one to one per frame, IoU at least 0.5; unmatched boxes are skipped). Real swaps, to hold the
    cutting to where the synthetic ones (`swap_identities`) may flatter it. `people`: the ground
    truth the tracks may follow (`followed`)."""
    identity = -np.ones(len(raw), dtype=np.int64)
    for frame in np.unique(raw.frame):
        rows, truth = np.flatnonzero(raw.frame == frame), np.flatnonzero(people.frame == frame)
        if len(truth) == 0:
            continue
        iou = box_iou(raw.xyxy[rows], people.xyxy[truth])
        for i, j in zip(*linear_sum_assignment(iou, maximize=True)):
            if iou[i, j] >= 0.5:
                identity[rows[i]] = people.track_id[truth[j]]
    switches = {}
    for track_id in raw.track_ids:
        rows = np.flatnonzero((raw.track_id == track_id) & (identity >= 0))
        rows = rows[np.argsort(raw.frame[rows], kind="stable")]
        starts = np.flatnonzero(np.diff(identity[rows], prepend=-2))
        lengths = np.diff(np.append(starts, len(rows)))
        runs = starts[lengths >= min_run]
        switches[int(track_id)] = [
            int(raw.frame[rows[b]]) for a, b in zip(runs[:-1], runs[1:]) if identity[rows[a]] != identity[rows[b]]
        ]
    return switches


def switch_row(switches: dict[int, list[int]], splits: list[Split], track_ids: np.ndarray) -> dict:
    """How the cuts of one run met the raw tracker's switches: found (a cut within
    SWAP_TOLERANCE_FRAMES of a switch) and clean tracks cut."""
    cut_frames = cuts_by_track(splits, track_ids)

    def found(track: int, frame: int) -> bool:
        return any(abs(cut - frame) <= SWAP_TOLERANCE_FRAMES for cut in cut_frames.get(track, []))

    every = [(track, frame) for track, frames in switches.items() for frame in frames]
    clean = [track for track, frames in switches.items() if not frames]
    return {
        "switches": len(every),
        "in tracks": sum(bool(frames) for frames in switches.values()),
        f"cut (within {SWAP_TOLERANCE_FRAMES} frames)": sum(found(track, frame) for track, frame in every),
        "tracks without a switch": len(clean),
        "cut by mistake": sum(track in cut_frames for track in clean),
        "cuts": len(splits),
    }


def usable_boxes(tracks: TrackSet, width: int, height: int, config: Config) -> np.ndarray:
    """`(n,)` True for the boxes whose crop the sampler could take (`crops.box_quality` above 0)."""
    usable = np.zeros(len(tracks), dtype=bool)
    for frame in np.unique(tracks.frame):
        rows = np.flatnonzero(tracks.frame == frame)
        quality = box_quality(tracks.xyxy[rows], width, height, config.min_crop_height, config.crop_max_covered)
        usable[rows] = quality > 0
    return usable


def best_possible_labels(raw: TrackSet, gt: TrackSet, iou_threshold: float = 0.5) -> np.ndarray:
    """Each raw track → the true identity (of `gt`, the targets) it overlaps most; co-occurring tracks kept apart."""
    track_ids = raw.track_ids
    votes: dict[tuple[int, int], int] = {}
    for frame in np.unique(raw.frame):
        r, g = raw[raw.frame == frame], gt[gt.frame == frame]
        if len(g) == 0:
            continue
        iou = box_iou(r.xyxy, g.xyxy)
        for i, j in zip(*np.nonzero(iou >= iou_threshold)):
            key = (int(r.track_id[i]), int(g.track_id[j]))
            votes[key] = votes.get(key, 0) + 1
    identity = np.full(len(track_ids), -1)
    best = np.zeros(len(track_ids))
    for (t, g), count in votes.items():
        k = int(np.searchsorted(track_ids, t))
        if count > best[k]:
            best[k], identity[k] = count, g
    # Distance 0 between tracks of one identity, 2 otherwise; cannot-link splits the rest. Average
    # linkage, whatever the merge's criterion: it keeps more of an identity whose tracks overlap
    # together (ultralytics' MOT16-09 tracks: IDF1 0.570, 0.565 by complete linkage).
    same = (identity[:, None] == identity[None, :]) & (identity[:, None] >= 0)
    distance = np.where(same, 0.0, 2.0)
    return cluster_tracks(distance, cooccurrence(raw, track_ids), threshold=0.5, criterion="average")


def score_row(name: str, pred: TrackSet, gt: GroundTruth) -> dict:
    # As written (boxes to 0.01 px): the scores `run --gt` reports and `eval` gives for its files.
    s = evaluate(as_written(pred), gt)
    return {
        "scheme": name,
        "IDF1": s.idf1,
        "HOTA": s.hota,
        "AssA": s.assa,
        "MOTA": s.mota,
        "IDSW": s.id_switches,
        "IDs": s.num_pred_ids,
        "true IDs": s.num_gt_ids,
    }


def schemes(args: argparse.Namespace, base: Config) -> list[tuple[str, Config]]:
    """The cross product of every `--vary key=v1,v2` on top of the defaults, named by its values."""
    axes: list[list[tuple[str, object]]] = []
    for spec in args.vary:
        key, values = _setting(spec, "--vary")
        axes.append([(key, _parse_setting(key, value, f"--vary {spec}")) for value in values.split(",")])
    result = []
    for combination in itertools.product(*axes):
        name = " ".join(f"{k}={v}" for k, v in combination) or "defaults"
        result.append((name, dataclasses.replace(base, **dict(combination))))
    return result


def base_config(args: argparse.Namespace) -> Config:
    """The defaults, with every `--set key=value` applied (the raw tracks and crops come from it)."""
    changes = {}
    for spec in args.set:
        key, value = _setting(spec, "--set")
        changes[key] = _parse_setting(key, value, f"--set {spec}")
    return dataclasses.replace(Config(), **changes)


def _setting(spec: str, option: str) -> tuple[str, str]:
    key, _, value = spec.partition("=")
    if key not in {f.name for f in dataclasses.fields(Config)}:
        raise SystemExit(f"{option} {spec}: unknown setting {key!r}")
    return key, value


def _parse_setting(key: str, text: str, where: str) -> object:
    """A value as a config file would give it (YAML; `none` for no value), checked by `Config`:
    a setting whose default is None (`threshold`) takes a number, and a bad value exits in one line."""
    value = None if text.lower() == "none" else yaml.safe_load(text)
    try:
        return getattr(config_from_mapping({key: value}, where), key)
    except UsageError as exc:
        raise SystemExit(str(exc)) from None


def oracle_table(sequences: list[Path], args: argparse.Namespace, base: Config) -> list[dict]:
    """Pairwise precision/recall/F1 on oracle fragments, averaged over seeds, per scheme."""
    rows = []
    for sequence in sequences:
        info = probe_video(sequence)
        fps, frame_size = info.fps, (info.width, info.height)
        for name, config in schemes(args, base):
            # Per scheme, so that settings shaping the crops (crops_per_track, ...) can vary too.
            runs = [oracle_features(sequence, seed, config, args.cache) for seed in range(args.seeds)]
            scores = []
            for fragments, identity, crops, features in runs:
                outcome = decide_merge(fragments, crops, features, config, fps, frame_size)
                labels = [outcome.mapping[int(t)] for t in outcome.track_ids]
                # Fragments are pure: a split part keeps its fragment's identity.
                parent = {s.new_track_id: s.track_id for s in outcome.splits}
                truth = [identity[parent.get(int(t), int(t))] for t in outcome.track_ids]
                scores.append(pairwise_scores(labels, truth))
            rows.append(
                {
                    "sequence": sequence.name,
                    "scheme": name + (" (defaults)" if config == base and name != "defaults" else ""),
                    "precision": float(np.mean([s.precision for s in scores])),
                    "min precision": float(np.min([s.precision for s in scores])),
                    "recall": float(np.mean([s.recall for s in scores])),
                    "F1": float(np.mean([s.f1 for s in scores])),
                    "persons": float(np.mean([s.clusters for s in scores])),
                    "fragments": float(np.mean([len(f.track_ids) for f, *_ in runs])),
                    "identities": scores[0].identities,
                }
            )
    return rows


def end_to_end_table(sequences: list[Path], args: argparse.Namespace, base: Config) -> list[dict]:
    """IDF1/HOTA/MOTA of the raw tracker, the best possible merge and each scheme.

    Each sequence is run twice, from its video file and from its image folder: the frames
    differ only by JPEG re-encoding, yet the tracker's output differs, which shows how much
    a setting depends on one particular set of raw tracks.
    """
    rows = []
    for sequence in sequences:
        gt = read_ground_truth(sequence / "gt" / "gt.txt")
        people = followed(gt)
        for source, label in (sequence_input(sequence, img1=False), sequence_input(sequence, img1=True)):
            if not source.exists() or (source == sequence and not args.img1):
                continue
            raw, _, _, meta = tracked(source, base, args.cache)
            info = probe_video(source)
            fps = info.fps
            # Per tracking settings: the raw tracks' scores and their best possible merge's, and
            # the raw tracker's own switches.
            known = {_tracking(base): references(raw, meta["tracked"], gt, base, fps)}
            own_switches = {_tracking(base): tracker_switches(raw, people)}
            rows += [{"input": label, **r} for r in known[_tracking(base)]]
            for name, config in schemes(args, base):
                raw, crops, features, meta = tracked(source, config, args.cache)
                if _tracking(config) not in known:  # raw tracks of its own
                    changed = " ".join(
                        f"{k}={getattr(config, k)}" for k in RAW if getattr(config, k) != getattr(base, k)
                    )
                    known[_tracking(config)] = references(raw, meta["tracked"], gt, config, fps, f" ({changed})")
                    own_switches[_tracking(config)] = tracker_switches(raw, people)
                    rows += [{"input": label, **r} for r in known[_tracking(config)]]
                outcome = decide_merge(meta["tracked"], crops, features, config, fps, (info.width, info.height))
                boxes = add_backfilled(outcome.tracks, outcome.mapping, meta["backfilled"])
                merged = person_tracks(
                    boxes, outcome.mapping, config, fps, gap_fill_rule(meta["tracked"], config)
                ).merged
                row = score_row(name, merged, gt)
                raw_scores, best = known[_tracking(config)]
                possible = best["IDF1"] - raw_scores["IDF1"]
                row["share of possible IDF1 gain"] = (
                    (row["IDF1"] - raw_scores["IDF1"]) / possible if possible > 0 else 1.0
                )
                row["_raw"] = raw_scores  # what its gains are measured against (not printed)
                row["_switches"] = switch_row(own_switches[_tracking(config)], outcome.splits, raw.track_ids)
                rows.append({"input": label, **row})
    return rows


def references(
    raw: TrackSet, as_tracked: TrackSet, gt: GroundTruth, config: Config, fps: float, suffix: str = ""
) -> list[dict]:
    """The scores of `raw` and of the best possible merge of it, gap-filled as `config` fills
    one (`as_tracked`: `raw` before backfilling): where a merge of these raw tracks starts, and
    the most it could reach."""
    upper = best_possible_labels(raw, gt.targets)
    mapping = {int(t): int(label) + 1 for t, label in zip(raw.track_ids, upper)}
    filled = fill_person_gaps(raw.relabel(mapping), config, fps, gap_fill_rule(as_tracked, config))[0]
    return [score_row(f"raw tracker{suffix}", raw, gt), score_row(f"best possible merge{suffix}", filled, gt)]


def _tracking(config: Config) -> tuple:
    """The settings that shape the raw tracks."""
    return tuple(getattr(config, k) for k in RAW)


def is_reference(scheme: str) -> bool:
    """Rows of raw tracks and of their best possible merge, not of a scheme."""
    return scheme.startswith(("raw tracker", "best possible merge"))


SELECTABLE = ("IDF1", "HOTA", "MOTA", "mean")


def leave_one_sequence_out(end_to_end: list[dict], select: str) -> list[dict]:
    """Per sequence: the scheme with the best mean `select` over the other sequences' inputs
    (both inputs of the held-out sequence left out; ties go to the scheme listed first) and
    its scores on the held-out inputs. ``mean`` is the mean of IDF1, HOTA and MOTA."""

    def value(row: dict) -> float:
        return (row["IDF1"] + row["HOTA"] + row["MOTA"]) / 3 if select == "mean" else row[select]

    rows = [r for r in end_to_end if not is_reference(r["scheme"])]
    names = list(dict.fromkeys(r["scheme"] for r in rows))
    sequences = list(dict.fromkeys(_sequence(r["input"]) for r in rows))
    result = []
    for held_out in [*sequences, None]:  # None: chosen on all sequences, the default
        train = [r for r in rows if _sequence(r["input"]) != held_out]
        chosen = max(names, key=lambda n: (np.mean([value(r) for r in train if r["scheme"] == n]), -names.index(n)))
        # Scored on the held-out inputs; the last row, in sample, on all of them.
        test = [r for r in rows if held_out is None or _sequence(r["input"]) == held_out]
        row: dict = {"held out": held_out or "(none: all, in sample)", "chosen": chosen}
        for metric in ("IDF1", "HOTA", "MOTA"):
            row[metric] = float(np.mean([r[metric] for r in test if r["scheme"] == chosen]))
            row[f"{metric} best"] = max(float(np.mean([r[metric] for r in test if r["scheme"] == n])) for n in names)
        result.append(row)
    return result


def sequence_input(sequence: Path, img1: bool) -> tuple[Path, str]:
    """What a sequence is read from, and its label: its mp4, or its folder (its JPEG frames, `img1/`)."""
    if img1:
        return sequence, f"{sequence.name}/img1"
    video = sequence / f"{sequence.name}.mp4"
    return video, video.name


def _sequence(label: str) -> str:
    """`TUD-Campus.mp4` and `TUD-Campus/img1` are the one sequence `TUD-Campus`."""
    return label.split("/")[0].removesuffix(".mp4")


def summary_table(oracle: list[dict], end_to_end: list[dict]) -> list[dict]:
    """One row per scheme: oracle precision/F1 over sequences, IDF1/MOTA change over inputs."""
    rows = []
    names = [r["scheme"] for r in oracle] or [r["scheme"] for r in end_to_end if not is_reference(r["scheme"])]
    for name in dict.fromkeys(names):
        row: dict = {"scheme": name}
        o = [r for r in oracle if r["scheme"] == name]
        if o:
            row["oracle precision (mean)"] = float(np.mean([r["precision"] for r in o]))
            row["oracle precision (worst seed)"] = float(np.min([r["min precision"] for r in o]))
            row["oracle F1 (mean)"] = float(np.mean([r["F1"] for r in o]))
        e = [r for r in end_to_end if r["scheme"] == name]
        if e:
            gains = [r["IDF1"] - r["_raw"]["IDF1"] for r in e]
            row["IDF1 gain (mean)"] = float(np.mean(gains))
            row["IDF1 gain (worst)"] = float(np.min(gains))
            row["HOTA change (worst)"] = float(np.min([r["HOTA"] - r["_raw"]["HOTA"] for r in e]))
            row["MOTA change (worst)"] = float(np.min([r["MOTA"] - r["_raw"]["MOTA"] for r in e]))
            row["share of possible IDF1 gain (mean)"] = float(np.mean([r["share of possible IDF1 gain"] for r in e]))
        rows.append(row)
    return rows


def leave_one_out_table(oracle: list[dict], min_precision: float = 0.95, min_worst: float = 0.90) -> list[dict]:
    """Each sequence scored under the scheme chosen on the others: the best mean F1 among the
    schemes that meet the precision bar on every other sequence (mean precision at least
    `min_precision`, worst seed at least `min_worst`; the most precise scheme where none
    does), next to the defaults' score."""
    rows = []
    sequences = list(dict.fromkeys(r["sequence"] for r in oracle))
    names = list(dict.fromkeys(r["scheme"] for r in oracle))
    defaults = next((name for name in names if "defaults" in name), None)
    score = {(r["sequence"], r["scheme"]): r for r in oracle}
    for held_out in sequences:
        others = [s for s in sequences if s != held_out]

        def rank(name: str, others: list[str] = others) -> tuple[bool, float]:
            precision = [score[s, name]["precision"] for s in others]
            worst = [score[s, name]["min precision"] for s in others]
            precise = min(precision) >= min_precision and min(worst) >= min_worst
            return precise, float(np.mean([score[s, name]["F1"] for s in others] if precise else precision))

        chosen = max(names, key=rank)
        row = score[held_out, chosen]
        rows.append(
            {
                "sequence": held_out,
                "chosen on the others": chosen,
                "precision": row["precision"],
                "min precision": row["min precision"],
                "F1": row["F1"],
                **{
                    f"defaults {k}": score[held_out, defaults][k]
                    for k in ("precision", "min precision", "F1")
                    if defaults
                },
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/reid-merge-bench"))
    parser.add_argument(
        "--protocol",
        choices=("oracle", "end-to-end", "both", "swaps"),
        default="both",
        help="both: oracle and end to end; swaps: cutting ground truth whose identities were swapped",
    )
    parser.add_argument("--seeds", type=int, default=5, help="oracle fragment and swap seeds")
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a setting of Config and the values to try (repeatable; schemes are the cross product)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a default for every scheme, the raw tracker's row included (repeatable)",
    )
    parser.add_argument(
        "--embedder",
        action="append",
        default=[],
        metavar="MODEL[=WEIGHTS]",
        help="a re-identification model to measure with (repeatable); default: the defaults' model "
        f"and, when {SHARED_OSNET} exists, osnet_x0_25 from it",
    )
    parser.add_argument(
        "--no-img1", dest="img1", action="store_false", help="end to end from the mp4 only, not also from img1/"
    )
    parser.add_argument("--summary-only", action="store_true", help="print only the summary table")
    parser.add_argument("--only", action="append", default=[], metavar="SEQUENCE", help="these sequences only")
    parser.add_argument("--select", choices=SELECTABLE, default="IDF1", help="what leave-one-sequence-out maximises")
    args = parser.parse_args(argv)
    sequences = sorted(p for p in args.data.iterdir() if (p / "gt" / "gt.txt").is_file())
    sequences = [p for p in sequences if not args.only or p.name in args.only]
    specs = args.embedder or [Config().reid_model] + ([f"osnet_x0_25={SHARED_OSNET}"] if SHARED_OSNET.is_file() else [])
    oracle: list[dict] = []
    end_to_end: list[dict] = []
    summary: list[dict] = []
    leave_one_out: list[dict] = []
    end_to_end_out: list[dict] = []
    swaps: list[dict] = []
    for spec in specs:
        model, _, weights = spec.partition("=")
        base = dataclasses.replace(base_config(args), reid_model=model, reid_weights=weights or None)
        tag = {"embedder": Path(weights).stem if weights else model}
        o = oracle_table(sequences, args, base) if args.protocol in ("oracle", "both") else []
        e = end_to_end_table(sequences, args, base) if args.protocol in ("end-to-end", "both") else []
        oracle += [{**tag, **r} for r in o]
        swaps += [{**tag, **r} for r in swap_table(sequences, args, base)] if args.protocol == "swaps" else []
        end_to_end += [{**tag, **r} for r in e]
        summary += [{**tag, **r} for r in summary_table(o, e)]
        leave_one_out += [{**tag, **r} for r in leave_one_out_table(o)] if len(sequences) > 1 and o else []
        if e and len(schemes(args, base)) > 1 and len(sequences) > 1:
            end_to_end_out += [{**tag, **r} for r in leave_one_sequence_out(e, args.select)]
    if swaps:
        print(f"## Swapped ground truth ({args.seeds} seeds, summed; cutting on)\n")
        print_table(swaps)
        return 0
    print("## Summary\n")
    print_table(summary)
    if leave_one_out:
        print("\n## Leave one sequence out (oracle fragments: each sequence under the scheme chosen on the others)\n")
        print_table(leave_one_out)
    if args.summary_only:
        return 0
    if oracle:
        print(f"\n## Oracle fragments ({args.seeds} seeds, pairwise scores averaged)\n")
        print_table(oracle)
    if end_to_end:
        changed = f" with {' '.join(args.set)}" if args.set else ""
        print(f"\n## End to end (default detector and tracker{changed})\n")
        print_table(end_to_end)
    if end_to_end:
        print("\n## The raw tracker's own swaps, end to end (tracker_switches; cuts of each scheme)\n")
        print_table(
            [
                {k: r[k] for k in ("embedder", "input", "scheme")} | r["_switches"]
                for r in end_to_end
                if "_switches" in r
            ]
        )
    if end_to_end_out:
        print(f"\n## Leave one sequence out, end to end (scheme chosen by mean {args.select} on the others)\n")
        print_table(end_to_end_out)
    return 0


def print_table(rows: list[dict]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in columns}
    print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r[c]).ljust(widths[c]) for c in columns) + " |")


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
