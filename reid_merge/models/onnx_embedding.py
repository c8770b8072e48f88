"""ONNX export of a re-identification model, and an onnxruntime embedder for the CPU.

Optional (`pip install 'reid-merge[onnx]'`): on this project's 2-core CPU onnxruntime
embeds OSNet 5-10x faster than our torch path (osnet_x0_25: ~210 vs ~21 crops/s, osnet_x1_0:
~29 vs ~4.6 crops/s, batch 64, same weights, features equal to cosine 1.000000; see
`bench/onnx_embedding.py`). `reid-merge models export NAME --format onnx` writes the file;
`--reid-weights FILE.onnx` uses it. The export records which checkpoint it came from (and
that file's SHA-256) in the ONNX metadata, so a run's `tracks.json` still names it.

The only module that imports onnxruntime and onnx.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reid_merge.errors import ModelError, UsageError, first_line
from reid_merge.io.atomic import atomic_path
from reid_merge.models.embedder import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, ReidModelInfo, resize_crops
from reid_merge.models.weights import sha256_file

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'reid-merge[onnx]'"
OPSET = 17
_INPUT, _OUTPUT = "images", "features"
#: Keys of the metadata an export records.
META_ARCHITECTURE = "reid_merge.architecture"
META_WEIGHTS = "reid_merge.source_weights"
META_SHA256 = "reid_merge.source_sha256"
META_SOURCE = "reid_merge.source"


def _import(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise ModelError(f"the ONNX backend needs {module} ({INSTALL_HINT})") from err


def export_onnx(
    model: Any,
    architecture: str,
    out: Path,
    *,
    source_weights: Path,
    source_sha256: str,
    source: str,
) -> Path:
    """Write `model` (a torchreid module in eval mode, on the CPU) to `out` as ONNX.

    The batch dimension is dynamic, the input `(B, 3, 256, 128)` float32 normalised RGB, the
    output the `(B, D)` feature before L2 normalisation. The file is written under a
    temporary name and renamed once onnxruntime has loaded it and its features match the
    torch module's.

    Returns:
        `out`.

    Raises:
        ModelError: onnx/onnxruntime missing, export failed, or the export does not match.
    """
    import torch  # only to export; running an ONNX model needs no torch

    onnx = _import("onnx")
    model = model.eval()
    probe = torch.randn(2, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(probe).float().numpy()
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            # The TorchScript exporter warns that it is the legacy one; it needs no onnxscript.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model,
                    (probe[:1],),
                    str(tmp),
                    input_names=[_INPUT],
                    output_names=[_OUTPUT],
                    dynamic_axes={_INPUT: {0: "batch"}, _OUTPUT: {0: "batch"}},
                    opset_version=OPSET,
                    dynamo=False,
                )
            except Exception as err:
                raise ModelError(f"ONNX export of {architecture} failed ({first_line(err, 160)})") from err
        document = onnx.load(str(tmp))
        for key, value in (
            (META_ARCHITECTURE, architecture),
            (META_WEIGHTS, str(source_weights)),
            (META_SHA256, source_sha256),
            (META_SOURCE, source),
        ):
            entry = document.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(document, str(tmp))
        session = _session(tmp, threads=1)
        got = session.run(None, {_INPUT: probe.numpy()})[0]
        error = float(np.max(np.abs(got - expected)))
        scale = float(np.max(np.abs(expected))) or 1.0
        if error > 1e-3 * scale:
            raise ModelError(f"the ONNX export of {architecture} differs from the torch model (max error {error:.3g})")
    return out


def _session(path: Path, threads: int) -> Any:
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no graph-optimisation chatter on stderr
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise ModelError(f"{path} is not a loadable ONNX model ({first_line(err, 160)})") from err


class OnnxEmbedder:
    """`crops_rgb -> (N, D)` unit rows with onnxruntime on the CPU (same preprocessing as torch).

    Args:
        path: ONNX file with input `(B, 3, 256, 128)` and output `(B, D)`.
        batch_size: Crops per run.
        threads: onnxruntime intra-op threads [default: torch's thread count now, which is
            the process's setting before ultralytics changes it].
    """

    def __init__(self, path: Path, batch_size: int = 64, threads: int | None = None) -> None:

        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if threads is None:
            import torch  # only for its thread count: an ONNX model needs no torch otherwise

            threads = torch.get_num_threads()
        self.path = Path(path)
        self.batch_size = batch_size
        self.session = _session(self.path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        if len(inputs) != 1 or len(outputs) != 1 or shape[1:] != [3, *INPUT_SIZE]:
            raise ModelError(f"{path}: expected one input (B, 3, {INPUT_SIZE[0]}, {INPUT_SIZE[1]}), got {shape}")
        self._input = inputs[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        probe = self._embed_batch(np.zeros((1, *INPUT_SIZE, 3), dtype=np.uint8))
        self.feature_dim = int(probe.shape[1])

    def __call__(self, crops_rgb: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:

        crops = list(crops_rgb)
        if not crops:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        parts = [
            self._embed_batch(resize_crops(crops[start : start + self.batch_size]))
            for start in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def _embed_batch(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:

        mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
        pixels = (batch.astype(np.float32) / np.float32(255.0) - mean) / std
        out = self.session.run(None, {self._input: np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))})[0]
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ModelError(f"{self.path} returned {out.shape}, expected (B, D) features")
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        # As F.normalize: divide by max(norm, eps), so an all-zero feature stays zero.
        return (out / np.maximum(norm, 1e-12)).astype(np.float32)


def load_onnx_embedder(path: Path, model_name: str, device: str, batch_size: int) -> tuple[OnnxEmbedder, Any]:
    """The onnxruntime embedder for an exported file, and its `ReidModelInfo`.

    Raises:
        UsageError: A CUDA device was asked for (this backend runs on the CPU).
        ModelError: File missing or not an export of `model_name`'s architecture.
    """

    if device.strip().lower() not in ("auto", "cpu"):
        raise UsageError(
            f"--reid-weights {path.name}: the ONNX backend runs on the CPU; use --device cpu, "
            "or the .pth checkpoint on CUDA"
        )
    if not path.is_file():
        raise ModelError(f"ReID weights not found: {path}")
    embedder = OnnxEmbedder(path, batch_size=batch_size)
    architecture = embedder.metadata.get(META_ARCHITECTURE)
    if model_name != "auto" and architecture is not None and architecture != model_name:
        raise ModelError(f"{path} is an export of {architecture}, not {model_name}")
    source_weights = embedder.metadata.get(META_WEIGHTS)
    origin = f" of {Path(source_weights or '?').name} (sha256 {embedder.metadata.get(META_SHA256, '?')[:12]}…)"
    info = ReidModelInfo(
        name=architecture or (model_name if model_name != "auto" else "onnx"),
        weights=str(path.resolve()),
        sha256=sha256_file(path),
        source=f"onnxruntime export{origin if source_weights else ''}; "
        f"{embedder.metadata.get(META_SOURCE, 'origin not recorded')}",
        feature_dim=embedder.feature_dim,
        device="cpu",
    )
    log.info("ReID model %s from %s (onnxruntime)", info.name, path)
    return embedder, info
