"""Embedding throughput on the CPU: our torch path against the onnxruntime export of the same model.

Same process, same crops, same weights; the two paths are timed alternately (best of
`--repeats` each), so a busy machine slows both alike. Needs `pip install 'reid-merge[onnx]'`.

    python bench/onnx_embedding.py [--reid-model osnet_x1_0] [--reid-weights F] [--crops 256]

Without weights the architecture is built with random weights (speed does not depend on
them; the agreement line still compares the two paths on the same random weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reid_merge.models.embedding import TorchreidEmbedder, _build_model, load_reid_model
from reid_merge.models.onnx_embedding import OnnxEmbedder, export_onnx

sys.path.insert(0, str(Path(__file__).parent))
from embedding import make_crops  # noqa: E402  (bench/embedding.py: the same crops for every benchmark)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reid-model", default="osnet_x1_0")
    parser.add_argument("--reid-weights", type=Path, default=None)
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.reid_weights is not None:
        model, architecture, path, source = load_reid_model(args.reid_model, args.reid_weights)
    else:
        architecture, path, source = args.reid_model, Path("random"), "random weights"
        model = _build_model(architecture).eval()
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_onnx(
            model, architecture, Path(folder) / "model.onnx", source_weights=path, source_sha256="-", source=source
        )
        ours = TorchreidEmbedder(model, torch.device("cpu"), batch_size=args.batch_size)
        theirs = OnnxEmbedder(onnx_path, batch_size=args.batch_size)
        crops = make_crops(args.crops)
        ours(crops[:8]), theirs(crops[:8])  # warm-up
        best = {"torch": float("inf"), "onnxruntime": float("inf")}
        for _ in range(args.repeats):
            for name, embed in (("torch", ours), ("onnxruntime", theirs)):
                start = time.perf_counter()
                embed(crops)
                best[name] = min(best[name], time.perf_counter() - start)
        agreement = float(np.min(np.sum(ours(crops) * theirs(crops), axis=1)))
    print(f"model {architecture} ({source}), {args.crops} crops, batch {args.batch_size}, CPU")
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("| path | crops/s | speed-up |")
    print("|---|---|---|")
    print(f"| torch (BN folded, channels_last) | {args.crops / best['torch']:.1f} | 1.00 |")
    print(f"| onnxruntime | {args.crops / best['onnxruntime']:.1f} | {best['torch'] / best['onnxruntime']:.2f} |")
    print(f"lowest cosine between the two paths' features: {agreement:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
