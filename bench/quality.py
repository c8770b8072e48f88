"""Merge quality end to end on every sequence in a data folder with ground truth.

Tracks each sequence once with the default detector and tracker (cached), embeds the crops
once, then scores the raw tracks, the merge under each aggregation and threshold, and the
best merge any clustering of these raw tracks could reach (each raw track given to the true
identity it overlaps most, never joining tracks that share a frame).

    python bench/quality.py [--data ../shared/data] [--thresholds 0.1,0.2,0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from reid_merge.clustering import cluster_tracks
from reid_merge.config import Config
from reid_merge.evaluation import box_iou, evaluate, read_ground_truth
from reid_merge.pipeline import Reporter, _Stopwatch, decide_merge, track_and_sample
from reid_merge.tracks import TrackSet, cooccurrence
from reid_merge.video import probe_video

ROOT = Path(__file__).resolve().parents[1]


def tracked(sequence: Path, config: Config, cache: Path) -> tuple[TrackSet, object, np.ndarray, dict]:
    """Raw tracks, crops and crop features for one sequence, cached by the settings that shape them."""
    from reid_merge.embedding import load_embedder, resolve_device
    from reid_merge.tracking import check_tracker_config, load_detector

    shaping = {k: v for k, v in config.to_dict().items() if k not in ("aggregation", "threshold", "persons")}
    key = hashlib.sha256(json.dumps([str(sequence), shaping], sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{sequence.name}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    info = probe_video(sequence)
    device = resolve_device(config.device)
    detector, detector_info = load_detector(config.detector)
    embedder, reid_info = load_embedder(config.reid_model, None, str(device), config.embed_batch_size)
    start = time.perf_counter()
    raw, crops, _ = track_and_sample(
        info, detector, detector_info, check_tracker_config(config.tracker), str(device), config, Reporter(), _Stopwatch()
    )
    features = embedder(crops.crops) if len(crops) else np.zeros((0, 1), np.float32)
    meta = {"seconds": time.perf_counter() - start, "detector": detector_info.name, "reid": reid_info.name}
    result = (raw, crops, features, meta)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


def best_possible_labels(raw: TrackSet, gt: TrackSet, iou_threshold: float = 0.5) -> np.ndarray:
    """Each raw track → the true identity it overlaps most; co-occurring tracks kept apart."""
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
    # Distance 0 between tracks of one identity, 2 otherwise; cannot-link splits the rest.
    same = (identity[:, None] == identity[None, :]) & (identity[:, None] >= 0)
    distance = np.where(same, 0.0, 2.0)
    return cluster_tracks(distance, cooccurrence(raw, track_ids), threshold=0.5)


def score_row(name: str, pred: TrackSet, gt: TrackSet) -> dict:
    s = evaluate(pred, gt)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/reid-merge-bench"))
    parser.add_argument("--thresholds", default="0.1,0.15,0.2,0.25,0.3,0.35,0.4")
    parser.add_argument("--aggregations", default="mean,max,median,centroid")
    args = parser.parse_args(argv)
    base = Config()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    sequences = sorted(p for p in args.data.iterdir() if (p / "gt" / "gt.txt").is_file())
    rows = []
    for sequence in sequences:
        raw, crops, features, meta = tracked(sequence, base, args.cache)
        gt = read_ground_truth(sequence / "gt" / "gt.txt")
        rows.append({"sequence": sequence.name, **score_row("raw tracker", raw, gt)})
        upper = best_possible_labels(raw, gt)
        mapping = {int(t): int(l) + 1 for t, l in zip(raw.track_ids, upper)}
        rows.append({"sequence": sequence.name, **score_row("best possible merge", raw.relabel(mapping), gt)})
        for aggregation in args.aggregations.split(","):
            for threshold in thresholds:
                config = dataclasses.replace(base, aggregation=aggregation, threshold=threshold)
                outcome = decide_merge(raw, crops, features, config)
                merged = raw.relabel(outcome.mapping)
                rows.append(
                    {"sequence": sequence.name, **score_row(f"{aggregation} @ {threshold:g}", merged, gt)}
                )
    print_table(rows)
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
