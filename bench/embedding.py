"""Embedding throughput: our batched path against torchreid's own FeatureExtractor.

Same process, same crops, same weights (the model reid-merge would load with these
options); each path is warmed up, then timed over the same crops, best of `--repeats`.

    python bench/embedding.py [--crops 512] [--device cpu] [--reid-model auto] [--reid-weights FILE]

On CUDA our path runs under fp16 autocast and torchreid's in fp32, so the agreement line
also bounds what half precision changes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchreid.reid.utils import FeatureExtractor

from reid_merge.models.embedding import load_embedder, load_reid_model, resolve_device


def make_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """Person-shaped RGB crops of varied size (the sizes the sampler keeps, up to 256 high)."""
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        h = int(rng.integers(48, 257))
        w = max(8, int(h * rng.uniform(0.3, 0.5)))
        crops.append(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    return crops


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reid-model", default="auto")
    parser.add_argument("--reid-weights", type=Path, default=None)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    ours, info = load_embedder(args.reid_model, args.reid_weights, str(device), args.batch_size)
    crops = make_crops(args.crops)

    # torchreid's extractor with the same weights. Its own loader would skip tensors whose
    # names differ (the offline MobileNetV2's), so it gets the module our loader filled.
    extractor = FeatureExtractor(info.name, info.weights, device=str(device), verbose=False)
    plain, *_ = load_reid_model(args.reid_model, args.reid_weights)
    extractor.model = plain.to(device)

    def torchreid_path() -> np.ndarray:
        parts = [extractor(crops[i : i + args.batch_size]).cpu().numpy() for i in range(0, len(crops), args.batch_size)]
        features = np.concatenate(parts)
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    seconds_theirs = best_seconds(torchreid_path, args.repeats)
    seconds_ours = best_seconds(lambda: ours(crops), args.repeats)
    # The offline ImageNet model's features carry colour histograms beside them (`core.colour`);
    # torchreid's path has only the network's part.
    network_part = getattr(ours, "inner", ours)
    agreement = float(np.min(np.sum(torchreid_path() * network_part(crops), axis=1)))
    print(f"model {info.name} ({info.source}), {args.crops} crops, batch {args.batch_size}, device {device}")
    print(f"torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("| path | crops/s | speed-up |")
    print("|---|---|---|")
    print(f"| torchreid FeatureExtractor | {args.crops / seconds_theirs:.1f} | 1.00 |")
    print(f"| reid-merge TorchreidEmbedder | {args.crops / seconds_ours:.1f} | {seconds_theirs / seconds_ours:.2f} |")
    print(f"lowest cosine between the two paths' features: {agreement:.5f} (resizers; fp16 vs fp32 on CUDA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
