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
from reid_merge.oracle import cut_into_fragments, pairwise_scores
from reid_merge.pipeline import Reporter, _Stopwatch, decide_merge, sample_crops, track_and_sample
from reid_merge.tracking import check_tracker_config
from reid_merge.tracks import TrackSet, cooccurrence
from reid_merge.video import probe_video

ROOT = Path(__file__).resolve().parents[1]
# Settings that only change the merge, not the tracks, crops or features it starts from.
MERGE_ONLY = (
    "aggregation",
    "threshold",
    "persons",
    "motion_gate",
    "adapt",
    "adapt_dims",
    "adapt_regularization",
    "motion_slack_heights",
    "motion_heights_per_second",
    "continuity_bonus",
    "continuity_seconds",
    "write_video",
)


def tracked(sequence: Path, config: Config, cache: Path) -> tuple[TrackSet, object, np.ndarray, dict]:
    """Raw tracks, crops and crop features for one sequence, cached by the settings that shape them."""
    from reid_merge.embedding import load_embedder, resolve_device
    from reid_merge.tracking import load_detector

    shaping = {k: v for k, v in config.to_dict().items() if k not in MERGE_ONLY}
    tracker_yaml = Path(check_tracker_config(config.tracker)).read_text()
    key = hashlib.sha256(json.dumps([str(sequence), shaping, tracker_yaml], sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{sequence.name}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    info = probe_video(sequence)
    device = resolve_device(config.device)
    detector, detector_info = load_detector(config.detector)
    embedder, reid_info = load_embedder(config.reid_model, None, str(device), config.embed_batch_size)
    start = time.perf_counter()
    raw, crops, _ = track_and_sample(
        info,
        detector,
        detector_info,
        check_tracker_config(config.tracker),
        str(device),
        config,
        Reporter(),
        _Stopwatch(),
    )
    features = embedder(crops.crops) if len(crops) else np.zeros((0, 1), np.float32)
    meta = {"seconds": time.perf_counter() - start, "detector": detector_info.name, "reid": reid_info.name}
    result = (raw, crops, features, meta)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


def oracle_features(
    sequence: Path, seed: int, config: Config, cache: Path
) -> tuple[TrackSet, dict, object, np.ndarray]:
    """Oracle fragments of one sequence, their crops and features, cached per seed and settings."""
    from reid_merge.embedding import load_embedder, resolve_device

    shaping = {k: config.to_dict()[k] for k in ("crops_per_track", "min_crop_height", "reid_model", "reid_weights")}
    key = hashlib.sha256(json.dumps([str(sequence), seed, shaping], sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"oracle-{sequence.name}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    gt = read_ground_truth(sequence / "gt" / "gt.txt")
    fragments, identity = cut_into_fragments(gt, seed)
    crops, _ = sample_crops(probe_video(sequence), fragments, config, Reporter())
    embedder, _ = load_embedder(config.reid_model, None, str(resolve_device(config.device)), config.embed_batch_size)
    features = embedder(crops.crops)
    result = (fragments, identity, crops, features)
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


def schemes(args: argparse.Namespace, base: Config) -> list[tuple[str, Config]]:
    thresholds = [float(t) for t in args.thresholds.split(",")]
    switch = {"on": [True], "off": [False], "both": [False, True]}
    return [
        (
            f"{aggregation} @ {threshold:g}{' + adapt' if adapt else ''}{' + gate' if gate else ''}"
            f"{f' + bonus {bonus:g}' if bonus else ''}",
            dataclasses.replace(
                base,
                aggregation=aggregation,
                threshold=threshold,
                motion_gate=gate,
                adapt=adapt,
                continuity_bonus=bonus,
            ),
        )
        for adapt in switch[args.adapt]
        for gate in switch[args.motion]
        for bonus in (float(b) for b in args.bonus.split(","))
        for aggregation in args.aggregations.split(",")
        for threshold in thresholds
    ]


def oracle_table(sequences: list[Path], args: argparse.Namespace, base: Config) -> list[dict]:
    """Pairwise precision/recall/F1 on oracle fragments, averaged over seeds, per scheme."""
    rows = []
    for sequence in sequences:
        runs = [oracle_features(sequence, seed, base, args.cache) for seed in range(args.seeds)]
        fps = probe_video(sequence).fps
        for name, config in schemes(args, base):
            scores = []
            for fragments, identity, crops, features in runs:
                outcome = decide_merge(fragments, crops, features, config, fps)
                labels = [outcome.mapping[int(t)] for t in outcome.track_ids]
                truth = [identity[int(t)] for t in outcome.track_ids]
                scores.append(pairwise_scores(labels, truth))
            rows.append(
                {
                    "sequence": sequence.name,
                    "scheme": name,
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
        video = sequence / f"{sequence.name}.mp4"
        for source, label in ((video, video.name), (sequence, f"{sequence.name}/img1")):
            if not source.exists():
                continue
            raw, crops, features, _ = tracked(source, base, args.cache)
            fps = probe_video(source).fps
            raw_scores = score_row("raw tracker", raw, gt)
            rows.append({"input": label, **raw_scores})
            upper = best_possible_labels(raw, gt)
            mapping = {int(t): int(label_) + 1 for t, label_ in zip(raw.track_ids, upper)}
            rows.append({"input": label, **score_row("best possible merge", raw.relabel(mapping), gt)})
            for name, config in schemes(args, base):
                outcome = decide_merge(raw, crops, features, config, fps)
                rows.append({"input": label, **score_row(name, raw.relabel(outcome.mapping), gt)})
    return rows


def summary_table(oracle: list[dict], end_to_end: list[dict]) -> list[dict]:
    """One row per scheme: oracle precision/F1 over sequences, IDF1/MOTA change over inputs."""
    rows = []
    raw = {r["input"]: r for r in end_to_end if r["scheme"] == "raw tracker"}
    names = [r["scheme"] for r in oracle] or [r["scheme"] for r in end_to_end]
    for name in dict.fromkeys(names):
        row: dict = {"scheme": name}
        o = [r for r in oracle if r["scheme"] == name]
        if o:
            row["oracle precision (mean)"] = float(np.mean([r["precision"] for r in o]))
            row["oracle precision (worst seed)"] = float(np.min([r["min precision"] for r in o]))
            row["oracle F1 (mean)"] = float(np.mean([r["F1"] for r in o]))
        e = [r for r in end_to_end if r["scheme"] == name]
        if e:
            gains = [r["IDF1"] - raw[r["input"]]["IDF1"] for r in e]
            row["IDF1 gain (mean)"] = float(np.mean(gains))
            row["IDF1 gain (worst)"] = float(np.min(gains))
            row["MOTA change (worst)"] = float(np.min([r["MOTA"] - raw[r["input"]]["MOTA"] for r in e]))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/reid-merge-bench"))
    parser.add_argument("--protocol", choices=("oracle", "end-to-end", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=5, help="oracle fragment seeds")
    parser.add_argument("--thresholds", default="0.1,0.15,0.2,0.25,0.3,0.35,0.4")
    parser.add_argument("--aggregations", default="mean,max,median,centroid")
    parser.add_argument("--motion", choices=("on", "off", "both"), default="both", help="motion gate")
    parser.add_argument("--adapt", choices=("on", "off", "both"), default="both", help="per-video whitening")
    parser.add_argument("--bonus", default="0.1", help="continuity bonus values, comma-separated")
    args = parser.parse_args(argv)
    base = Config()
    sequences = sorted(p for p in args.data.iterdir() if (p / "gt" / "gt.txt").is_file())
    oracle = oracle_table(sequences, args, base) if args.protocol in ("oracle", "both") else []
    end_to_end = end_to_end_table(sequences, args, base) if args.protocol in ("end-to-end", "both") else []
    print("## Summary\n")
    print_table(summary_table(oracle, end_to_end))
    if oracle:
        print(f"\n## Oracle fragments ({args.seeds} seeds, pairwise scores averaged)\n")
        print_table(oracle)
    if end_to_end:
        print("\n## End to end (default detector and tracker)\n")
        print_table(end_to_end)
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
