"""Every setting of a run, with its default and its valid range, in one frozen dataclass.

`configs/default.yaml` mirrors these defaults with the measurements that chose them; a test
keeps the two equal. A YAML file given with ``--config`` overrides them key by key, and
command-line options override the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from reid_merge.clustering import CRITERIA
from reid_merge.errors import UsageError, excerpt
from reid_merge.interpolation import FILL_METHODS
from reid_merge.similarity import AGGREGATIONS

#: Largest detector input side: a larger one only makes OpenCV and the detector fail to allocate.
MAX_IMAGE_SIZE = 4096


@dataclass(frozen=True)
class Config:
    """Settings of one run; see `configs/default.yaml` for why each default is what it is."""

    detector: str = "auto"
    tracker: str = "bytetrack"
    detection_confidence: float = 0.1
    image_size: int = 640
    device: str = "auto"
    reid_model: str = "auto"
    reid_weights: str | None = None
    crops_per_track: int = 16
    min_crop_height: float = 32.0
    crop_max_covered: float = 0.4
    embed_batch_size: int = 64
    aggregation: str = "mean"
    threshold: float | None = None
    false_merge_rate: float = 0.005
    stitch_max_gap_seconds: float = 1.5
    persons: int | None = None
    criterion: str = "average"
    dispersion_weight: float = 0.1
    short_track_detections: int = 5
    short_track_score: float = 0.5
    min_crops_to_merge: int = 2
    split_impure: bool = True
    adapt: bool = True
    adapt_dims: int = 16
    adapt_regularization: float = 0.1
    motion_gate: bool = True
    motion_slack_heights: float = 0.5
    motion_heights_per_second: float = 1.0
    fill_gaps: bool = True
    fill_max_gap_seconds: float = 1.0
    fill_method: str = "gsi"
    write_video: bool = True

    def __post_init__(self) -> None:
        _check(0 < self.detection_confidence < 1, "detection_confidence", "in (0, 1)", self.detection_confidence)
        _check(
            32 <= self.image_size <= MAX_IMAGE_SIZE and self.image_size % 32 == 0,
            "image_size",
            f"a multiple of 32 up to {MAX_IMAGE_SIZE}",
            self.image_size,
        )
        _check(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "device",
            "auto, cpu, cuda or cuda:N",
            self.device,
        )
        _check(self.crops_per_track >= 1, "crops", ">= 1", self.crops_per_track)
        _check(self.min_crop_height >= 1, "min_crop_height", ">= 1", self.min_crop_height)
        _check(0 <= self.crop_max_covered <= 1, "crop_max_covered", "in [0, 1]", self.crop_max_covered)
        _check(self.embed_batch_size >= 1, "embed_batch_size", ">= 1", self.embed_batch_size)
        _check(self.aggregation in AGGREGATIONS, "aggregation", f"one of {', '.join(AGGREGATIONS)}", self.aggregation)
        _check(
            self.threshold is None or 0.0 <= self.threshold <= 2.0,
            "threshold",
            "in [0, 2] (a distance, 1 - cosine)",
            self.threshold,
        )
        _check(0 < self.false_merge_rate < 0.5, "false_merge_rate", "in (0, 0.5)", self.false_merge_rate)
        _check(
            0 < self.stitch_max_gap_seconds <= 60, "stitch_max_gap_seconds", "in (0, 60]", self.stitch_max_gap_seconds
        )
        _check(self.persons is None or self.persons >= 1, "persons", ">= 1", self.persons)
        _check(self.criterion in CRITERIA, "criterion", f"one of {', '.join(CRITERIA)}", self.criterion)
        _check(self.dispersion_weight >= 0, "dispersion_weight", ">= 0", self.dispersion_weight)
        _check(self.short_track_detections >= 0, "short_track_detections", ">= 0", self.short_track_detections)
        _check(self.min_crops_to_merge >= 1, "min_crops_to_merge", ">= 1", self.min_crops_to_merge)
        _check(0 <= self.short_track_score <= 1, "short_track_score", "in [0, 1]", self.short_track_score)
        _check(self.adapt_dims >= 1, "adapt_dims", ">= 1", self.adapt_dims)
        _check(self.adapt_regularization > 0, "adapt_regularization", "> 0", self.adapt_regularization)
        _check(self.motion_slack_heights >= 0, "motion_slack_heights", ">= 0", self.motion_slack_heights)
        _check(self.fill_max_gap_seconds >= 0, "fill_max_gap_seconds", ">= 0", self.fill_max_gap_seconds)
        _check(self.fill_method in FILL_METHODS, "fill_method", f"one of {', '.join(FILL_METHODS)}", self.fill_method)
        _check(self.motion_heights_per_second >= 0, "motion_heights_per_second", ">= 0", self.motion_heights_per_second)
        for field in fields(self):  # inf passes ">= 0" but is no setting, and JSON cannot hold it
            value = getattr(self, field.name)
            _check(not isinstance(value, float) or math.isfinite(value), field.name, "a finite number", value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with the given keys replaced; None values mean "not given" and are skipped."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given)


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise UsageError(f"{name}: expected {expected}, got {excerpt(got)}")


class _SafeLoaderWithoutAliases(yaml.SafeLoader):
    """`yaml.safe_load` that refuses aliases (`*name`): a settings file needs none, and a few
    lines of nested aliases expand to billions of nodes ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise _AliasRefused(f"line {mark.line + 1}: YAML aliases (*name) are not accepted in a config file")
        return super().compose_node(parent, index)


class _AliasRefused(yaml.YAMLError):
    pass


def load_config(path: Path | None) -> Config:
    """Defaults, overridden by the YAML file at `path` if given."""
    if path is None:
        return Config()
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, expected a YAML config file")
    if not path.is_file():
        raise UsageError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_SafeLoaderWithoutAliases)  # noqa: S506
    except _AliasRefused as exc:
        raise UsageError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: not a readable YAML file ({exc.__class__.__name__})") from None
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return config_from_mapping(data, str(path))


def config_from_mapping(data: dict[str, Any], where: str) -> Config:
    hints = get_type_hints(Config)
    known = {f.name for f in fields(Config)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise UsageError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        values[key] = _coerce(key, value, hints[key], where)
    try:
        return Config(**values)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    allowed = tuple(t for t in (get_args(hint) or (hint,)) if t is not type(None))
    if value is None and type(None) in get_args(hint):
        return None
    if isinstance(value, bool) and bool not in allowed:
        raise UsageError(f"{where}: setting {key!r} expects {allowed[0].__name__}, got {excerpt(value)}")
    if float in allowed and isinstance(value, int):
        return float(value)
    if not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise UsageError(f"{where}: setting {key!r} expects {names}, got {excerpt(value)}")
    return value
