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
scores on the held-out one.
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
from pathlib import Path
from typing import Any

import numpy as np

from reid_merge.clustering import cluster_tracks
from reid_merge.config import Config
from reid_merge.evaluation import GroundTruth, box_iou, evaluate, read_ground_truth
from reid_merge.oracle import cut_into_fragments, pairwise_scores
from reid_merge.pipeline import Reporter, _Stopwatch, decide_merge, fill_person_gaps, sample_crops, track_and_sample
from reid_merge.tracking import check_tracker_config
from reid_merge.tracks import TrackSet, cooccurrence
from reid_merge.tracks_io import as_written
from reid_merge.video import probe_video

ROOT = Path(__file__).resolve().parents[1]
# Settings that shape the tracks, crops and features a merge starts from (the cache key).
SHAPING = (
    "detector",
    "tracker",
    "detection_confidence",
    "image_size",
    "reid_model",
    "reid_weights",
    "crops_per_track",
    "min_crop_height",
    "crop_max_covered",
)
# Code that shapes them: a change to any of these files invalidates the cache too.
SHAPING_CODE = ("tracking.py", "crops.py", "embedding.py", "oracle.py")


def cache_key(*parts: object) -> str:
    code = [hashlib.sha256((ROOT / "reid_merge" / name).read_bytes()).hexdigest() for name in SHAPING_CODE]
    return hashlib.sha256(json.dumps([*parts, code], sort_keys=True).encode()).hexdigest()[:16]


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
    """Raw tracks, crops and crop features for one sequence, cached by the settings that shape them."""
    shaping = {k: v for k, v in config.to_dict().items() if k in SHAPING}
    tracker_yaml = Path(check_tracker_config(config.tracker)).read_text()
    key = cache_key(str(sequence), shaping, tracker_yaml)
    return cached(cache / f"{sequence.name}-{key}.pkl", lambda: _track_and_embed(sequence, config))


def _track_and_embed(sequence: Path, config: Config) -> tuple[TrackSet, object, np.ndarray, dict]:
    from reid_merge.embedding import load_embedder, resolve_device
    from reid_merge.tracking import load_detector

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
    return raw, crops, features, meta


def oracle_features(
    sequence: Path, seed: int, config: Config, cache: Path
) -> tuple[TrackSet, dict, object, np.ndarray]:
    """Oracle fragments of one sequence, their crops and features, cached per seed and settings."""
    oracle_shaping = ("crops_per_track", "min_crop_height", "crop_max_covered", "reid_model", "reid_weights")
    shaping = {k: config.to_dict()[k] for k in oracle_shaping}
    # The people cut into fragments: the ground truth's targets, keyed by content (which
    # boxes are targets is decided by evaluation.py, not one of the SHAPING_CODE files).
    targets = read_ground_truth(sequence / "gt" / "gt.txt").targets
    content = hashlib.sha256(targets.frame.tobytes() + targets.track_id.tobytes() + targets.xyxy.tobytes())
    key = cache_key(str(sequence), seed, shaping, content.hexdigest())
    return cached(cache / f"oracle-{sequence.name}-{key}.pkl", lambda: _cut_and_embed(sequence, targets, seed, config))


def _cut_and_embed(
    sequence: Path, targets: TrackSet, seed: int, config: Config
) -> tuple[TrackSet, dict, object, np.ndarray]:
    from reid_merge.embedding import load_embedder, resolve_device

    fragments, identity = cut_into_fragments(targets, seed)
    crops, _ = sample_crops(probe_video(sequence), fragments, config, Reporter())
    embedder, _ = load_embedder(config.reid_model, None, str(resolve_device(config.device)), config.embed_batch_size)
    return fragments, identity, crops, embedder(crops.crops)


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
    # Distance 0 between tracks of one identity, 2 otherwise; cannot-link splits the rest.
    same = (identity[:, None] == identity[None, :]) & (identity[:, None] >= 0)
    distance = np.where(same, 0.0, 2.0)
    return cluster_tracks(distance, cooccurrence(raw, track_ids), threshold=0.5)


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
        default = getattr(base, key)
        axes.append([(key, _parse_like(value, default)) for value in values.split(",")])
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
        changes[key] = _parse_like(value, getattr(Config(), key))
    return dataclasses.replace(Config(), **changes)


def _setting(spec: str, option: str) -> tuple[str, str]:
    key, _, value = spec.partition("=")
    if key not in {f.name for f in dataclasses.fields(Config)}:
        raise SystemExit(f"{option} {spec}: unknown setting {key!r}")
    return key, value


def _parse_like(text: str, default: object) -> object:
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "on", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return None if text == "none" else text


def oracle_table(sequences: list[Path], args: argparse.Namespace, base: Config) -> list[dict]:
    """Pairwise precision/recall/F1 on oracle fragments, averaged over seeds, per scheme."""
    rows = []
    for sequence in sequences:
        fps = probe_video(sequence).fps
        for name, config in schemes(args, base):
            # Per scheme, so that settings shaping the crops (crops_per_track, ...) can vary too.
            runs = [oracle_features(sequence, seed, config, args.cache) for seed in range(args.seeds)]
            scores = []
            for fragments, identity, crops, features in runs:
                outcome = decide_merge(fragments, crops, features, config, fps)
                labels = [outcome.mapping[int(t)] for t in outcome.track_ids]
                # Fragments are pure: a split part keeps its fragment's identity.
                parent = {s.new_track_id: s.track_id for s in outcome.splits}
                truth = [identity[parent.get(int(t), int(t))] for t in outcome.track_ids]
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
            raw, *_ = tracked(source, base, args.cache)
            fps = probe_video(source).fps
            raw_scores = score_row("raw tracker", raw, gt)
            rows.append({"input": label, **raw_scores})
            upper = best_possible_labels(raw, gt.targets)
            mapping = {int(t): int(label_) + 1 for t, label_ in zip(raw.track_ids, upper)}
            rows.append({"input": label, **score_row("best possible merge", raw.relabel(mapping), gt)})
            for name, config in schemes(args, base):
                raw, crops, features, _ = tracked(source, config, args.cache)
                outcome = decide_merge(raw, crops, features, config, fps)
                merged, _ = fill_person_gaps(outcome.tracks.relabel(outcome.mapping), config, fps)
                rows.append({"input": label, **score_row(name, merged, gt)})
    return rows


SELECTABLE = ("IDF1", "HOTA", "MOTA", "mean")


def leave_one_sequence_out(end_to_end: list[dict], select: str) -> list[dict]:
    """Per sequence: the scheme with the best mean `select` over the other sequences' inputs
    (both inputs of the held-out sequence left out; ties go to the scheme listed first) and
    its scores on the held-out inputs. ``mean`` is the mean of IDF1, HOTA and MOTA."""

    def value(row: dict) -> float:
        return (row["IDF1"] + row["HOTA"] + row["MOTA"]) / 3 if select == "mean" else row[select]

    rows = [r for r in end_to_end if r["scheme"] not in ("raw tracker", "best possible merge")]
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


def _sequence(label: str) -> str:
    """`TUD-Campus.mp4` and `TUD-Campus/img1` are the one sequence `TUD-Campus`."""
    return label.split("/")[0].removesuffix(".mp4")


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
    parser.add_argument("--summary-only", action="store_true", help="print only the summary table")
    parser.add_argument("--only", action="append", default=[], metavar="SEQUENCE", help="these sequences only")
    parser.add_argument("--select", choices=SELECTABLE, default="IDF1", help="what leave-one-sequence-out maximises")
    args = parser.parse_args(argv)
    base = base_config(args)
    sequences = sorted(p for p in args.data.iterdir() if (p / "gt" / "gt.txt").is_file())
    sequences = [p for p in sequences if not args.only or p.name in args.only]
    oracle = oracle_table(sequences, args, base) if args.protocol in ("oracle", "both") else []
    end_to_end = end_to_end_table(sequences, args, base) if args.protocol in ("end-to-end", "both") else []
    print("## Summary\n")
    print_table(summary_table(oracle, end_to_end))
    if args.summary_only:
        return 0
    if oracle:
        print(f"\n## Oracle fragments ({args.seeds} seeds, pairwise scores averaged)\n")
        print_table(oracle)
    if end_to_end:
        changed = f" with {' '.join(args.set)}" if args.set else ""
        print(f"\n## End to end (default detector and tracker{changed})\n")
        print_table(end_to_end)
        if len(schemes(args, base)) > 1 and len(sequences) > 1:
            print(f"\n## Leave one sequence out (scheme chosen by mean {args.select} on the others)\n")
            print_table(leave_one_sequence_out(end_to_end, args.select))
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
