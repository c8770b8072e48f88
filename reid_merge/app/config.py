"""Every setting of a run, declared once: its default, its section, its help and its valid range.

`Config` is one frozen dataclass with flat attributes (`config.threshold`); each field's
metadata (`setting(...)`) says which section of `configs/default.yaml` it belongs to, what it
does (the command line's help), its command-line option, what values it accepts and what it
affects (the models loaded, the results). The command line builds its options from these
fields (`reid_merge.cli.settings`); a batch chooses what to hash and which models to reuse
from them. `configs/default.yaml` mirrors the defaults with the measurements that chose them;
a test keeps the two equal. A YAML file given with ``--config`` overrides them key by key,
and command-line options override the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from reid_merge.core.clustering import CRITERIA
from reid_merge.core.interpolation import FILL_METHODS
from reid_merge.core.similarity import AGGREGATIONS
from reid_merge.errors import UsageError, excerpt

#: Which gaps are filled: `auto` chooses `sure` where the tracker starts tracks on boxes it is
#: unsure of, else `all` (`pipeline.gap_fill_rule`).
FILL_RULES = ("auto", "all", "sure")
GAPS_FILLED = ("none", "all", "sure")  # what a run filled (tracks.json summary.gaps_filled)

#: Largest detector input side: a larger one only makes OpenCV and the detector fail to allocate.
MAX_IMAGE_SIZE = 4096

#: The sections of `configs/default.yaml`, in its order, with the titles `--help` groups options under.
SECTIONS = {
    "detection": "Detection and tracking",
    "models": "Re-identification model and device",
    "crops": "Crops",
    "merge": "Merge",
    "motion": "Motion gate",
    "gap filling": "Gap filling",
    "output": "Output",
}


@dataclass(frozen=True)
class Valid:
    """Which values a setting accepts, and how an error says so ("expected >= 1")."""

    accepts: Callable[[Any], bool]
    expected: str


def at_least(low: float) -> Valid:
    return Valid(lambda v: v >= low, f">= {low}")


def above(low: float) -> Valid:
    return Valid(lambda v: v > low, f"> {low}")


def within(interval: str, why: str = "") -> Valid:
    """`interval` as written: "[0, 1]" closed, "(0, 0.5)" open, "(0, 60]" half-open."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    closed_low, closed_high = interval[0] == "[", interval[-1] == "]"

    def accepts(v: Any) -> bool:
        return (low <= v if closed_low else low < v) and (v <= high if closed_high else v < high)

    return Valid(accepts, f"in {interval}{f' ({why})' if why else ''}")


def one_of(choices: Iterable[str]) -> Valid:
    names = tuple(choices)
    return Valid(lambda v: v in names, f"one of {', '.join(names)}")


def setting(
    default: Any,
    section: str,
    help: str,
    *,
    valid: Valid | None = None,
    option: str | None = None,
    loads_models: bool = False,
    shapes_results: bool = True,
    in_plan: bool = False,
) -> Any:
    """A field of `Config` with what the rest of the tool needs to know about it.

    Args:
        default: the value when neither a file nor an option sets it.
        section: a key of `SECTIONS`.
        help: one sentence for ``--help``; None as default means what the sentence says.
        valid: the values accepted (None: any of the field's type). None is always accepted
            where the type allows it.
        option: the command-line option when it is not ``--kebab-case`` of the name (booleans:
            ``--name/--no-name``).
        loads_models: the models loaded depend on it (a batch worker reuses its models while
            these stay the same).
        shapes_results: a change can change what a run writes; False only where measured not
            to (a batch redoes a finished video when one of these changes).
        in_plan: recorded in merge_plan.json's "decision", for whoever reviews the joins.
    """
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    metadata = {
        "section": section,
        "help": help,
        "valid": valid,
        "option": option,
        "loads_models": loads_models,
        "shapes_results": shapes_results,
        "in_plan": in_plan,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Config:
    """Settings of one run; see `configs/default.yaml` for why each default is what it is."""

    detector: str = setting(
        "auto", "detection", "auto, offline, an ultralytics name (yolo11n.pt) or a .pt path.", loads_models=True
    )
    tracker: str = setting("bytetrack", "detection", "bytetrack, botsort or a tracker .yaml file.")
    detection_confidence: float = setting(
        0.1, "detection", "Lowest detection score handed to the tracker.", valid=within("(0, 1)")
    )
    image_size: int = setting(
        640,
        "detection",
        "Detector input size, pixels.",
        valid=Valid(lambda v: 32 <= v <= MAX_IMAGE_SIZE and v % 32 == 0, f"a multiple of 32 up to {MAX_IMAGE_SIZE}"),
    )
    backfill_seconds: float = setting(
        1.0,
        "detection",
        "Extend each track back over the boxes it was seen in before the tracker took it up, for at most "
        "this long; only tracks that lasted this long. The merge decides without them; they join its "
        "persons. 0: off.",
        valid=at_least(0),
    )
    backfill_score: float = setting(
        0.3, "detection", "Lowest detection score a backfilled box may have.", valid=within("[0, 1]")
    )
    device: str = setting(
        "auto",
        "models",
        "auto (CUDA when present), cpu, cuda or cuda:N.",
        valid=Valid(lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N"),
        loads_models=True,
    )
    reid_model: str = setting(
        "auto",
        "models",
        "Re-identification model: auto, an architecture (osnet_x1_0) or a name from `reid-merge models list` "
        "(osnet_x0_25_msmt17_combineall).",
        loads_models=True,
    )
    reid_weights: str | None = setting(
        None,
        "models",
        "Checkpoint for --reid-model: torchreid .pth, or .onnx (`reid-merge models export`).",
        loads_models=True,
    )
    crops_per_track: int = setting(16, "crops", "Crops sampled per track.", valid=at_least(1), option="--crops")
    min_crop_height: float = setting(32.0, "crops", "Smallest box height that gives a crop, pixels.", valid=at_least(1))
    crop_max_covered: float = setting(
        0.4, "crops", "A box more than this share hidden behind a nearer one gives no crop.", valid=within("[0, 1]")
    )
    embed_batch_size: int = setting(
        64,
        "models",
        "Crops embedded at a time (memory; the features do not change).",
        valid=at_least(1),
        loads_models=True,
        shapes_results=False,
    )
    aggregation: str = setting(
        "mean",
        "merge",
        f"How two tracks' crop similarities make one: {', '.join(AGGREGATIONS)}.",
        valid=one_of(AGGREGATIONS),
        in_plan=True,
    )
    threshold: float | None = setting(
        None,
        "merge",
        "Join stitched fragments by appearance while their average distance (1 - similarity) <= this, 0..2. "
        "Default: learnt from the video (false_merge_rate).",
        valid=within("[0, 2]", "a distance, 1 - cosine"),
        in_plan=True,
    )
    false_merge_rate: float = setting(
        0.005,
        "merge",
        "Target share of wrong joins by appearance (and of wrong cuts of swapped tracks).",
        valid=within("(0, 0.5)"),
        in_plan=True,
    )
    tentative_cut_rate: float = setting(
        0.2,
        "merge",
        "Cut a swapped track by appearance also where at most this share of such cuts is estimated "
        "wrong, tentatively: the merge may join the two sides again, and the cut stands only where "
        "it joins the later side to somebody else.",
        valid=within("(0, 1)"),
        in_plan=True,
    )
    stitch_odds: float = setting(
        19.0,
        "merge",
        "A stitch by motion, appearance adding its evidence, must be this many times likelier one person "
        "than anybody else, and than every other way of linking those ends and starts.",
        valid=at_least(1),
        in_plan=True,
    )
    unchecked_stitch_odds: float = setting(
        39.0,
        "merge",
        "The same odds for a stitch appearance cannot check (a side with fewer than --min-crops-to-merge "
        "usable crops; one crop may speak for it, never against): motion must carry it.",
        valid=at_least(1),
        in_plan=True,
    )
    stitch_max_gap_seconds: float = setting(
        2.5,
        "merge",
        "Longest gap over which fragments are stitched end to start by motion, seconds.",
        valid=within("(0, 60]"),
        in_plan=True,
    )
    persons: int | None = setting(
        None, "merge", "Stop at this many persons when you know how many there are.", valid=at_least(1), in_plan=True
    )
    criterion: str = setting(
        "complete",
        "merge",
        "Clustering: complete or average (linkage), or dbc (dispersion-based).",
        valid=one_of(CRITERIA),
        in_plan=True,
    )
    dispersion_weight: float = setting(0.1, "merge", "λ of --criterion dbc.", valid=at_least(0))
    short_track_detections: int = setting(
        5,
        "merge",
        "A track of fewer boxes than this whose mean score is below --short-track-score is left alone.",
        valid=at_least(0),
    )
    short_track_score: float = setting(
        0.5, "merge", "Mean detection score below which a short track is left alone.", valid=within("[0, 1]")
    )
    min_crops_to_merge: int = setting(2, "merge", "A track with fewer usable crops is left alone.", valid=at_least(1))
    split_impure: bool = setting(
        True,
        "merge",
        "Cut tracks the tracker moved from one person to another: two tracks that met where each "
        "carries on the other's walk rather than its own (by unchecked_stitch_odds each), and a track "
        "whose crops before and after a meeting differ beyond what one person shows in this video, "
        "the later side looking more like somebody met there than like the earlier side.",
    )
    adapt: bool = setting(True, "merge", "Whiten the features within this video's tracks before comparing them.")
    adapt_dims: int = setting(16, "merge", "Dimensions the whitening keeps.", valid=at_least(1))
    adapt_regularization: float = setting(0.1, "merge", "Regularisation of the whitening.", valid=above(0))
    motion_gate: bool = setting(True, "motion", "Join by appearance only tracks that one person could walk between.")
    motion_slack_heights: float = setting(
        0.5,
        "motion",
        "Hand-over error allowed, box heights, plus --motion-heights-per-second for each second of gap.",
        valid=at_least(0),
    )
    motion_heights_per_second: float = setting(
        1.0, "motion", "Walking-speed bound of the motion gate, box heights per second.", valid=at_least(0)
    )
    fill_gaps: bool = setting(True, "gap filling", "Box each person in the frames the tracker lost them.")
    fill_max_gap_seconds: float = setting(
        1.0, "gap filling", "Longest gap filled, in seconds.", valid=at_least(0), option="--max-gap"
    )
    fill_method: str = setting(
        "gsi",
        "gap filling",
        f"How gaps are filled: {' or '.join(FILL_METHODS)} (Gaussian-smoothed interpolation).",
        valid=one_of(FILL_METHODS),
    )
    fill_rule: str = setting(
        "auto",
        "gap filling",
        "Which gaps: all, sure (only between two boxes scoring at least --short-track-score, and no "
        "box onto another track's), or auto (sure where some track begins on a box scoring less).",
        valid=one_of(FILL_RULES),
    )
    drop_doubles: bool = setting(
        True,
        "output",
        "Leave out a person each of whose boxes lies over a box of one longer person (IoU 0.5+): "
        "that person boxed twice.",
    )
    write_video: bool = setting(True, "output", "Write annotated.mp4.", option="--write-video/--no-video")

    def __post_init__(self) -> None:
        for field in fields(self):
            value, valid = getattr(self, field.name), field.metadata["valid"]
            if valid is not None and value is not None and not valid.accepts(value):
                raise SettingError(field.name, valid.expected, value)
            if isinstance(value, float) and not math.isfinite(value):  # inf passes ">= 0" but is no setting
                raise SettingError(field.name, "a finite number", value)  # and JSON cannot hold it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with the given keys replaced; None values mean "not given" and are skipped."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given)

    def subset(self, flag: str) -> dict[str, Any]:
        """The settings whose metadata `flag` (loads_models, shapes_results, in_plan) is true."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata[flag]}


def setting_names(flag: str) -> tuple[str, ...]:
    """Names of the settings whose metadata `flag` is true, in declaration order."""
    return tuple(f.name for f in fields(Config) if f.metadata[flag])


class SettingError(UsageError):
    """A setting out of its range; `name` is the field, so that a caller can name what the user typed."""

    def __init__(self, name: str, expected: str, got: Any) -> None:
        self.name, self.expected, self.got = name, expected, got
        super().__init__(self.naming(name))

    def naming(self, label: str) -> str:
        """The message with `label` (an option, a key) for the setting."""
        return f"{label}: expected {self.expected}, got {excerpt(self.got)}"


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
