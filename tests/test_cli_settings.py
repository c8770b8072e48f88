"""Every setting reaches `Config` from the command line of `run`, `merge` and `batch`, and a value
out of range is refused naming what the user typed: the option, or the key of a YAML file."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reid_merge.app.batch import BatchSummary
from reid_merge.app.config import Config
from reid_merge.app.results import RunResult
from reid_merge.cli.main import app

#: For every setting: what a user types, and the value it must give. None of these is a default.
GIVEN: dict[str, tuple[tuple[str, ...], Any]] = {
    "detector": (("--detector", "yolov8n.pt"), "yolov8n.pt"),
    "tracker": (("--tracker", "botsort"), "botsort"),
    "detection_confidence": (("--detection-confidence", "0.3"), 0.3),
    "image_size": (("--image-size", "320"), 320),
    "backfill_seconds": (("--backfill-seconds", "1.5"), 1.5),
    "backfill_score": (("--backfill-score", "0.5"), 0.5),
    "device": (("--device", "cpu"), "cpu"),
    "reid_model": (("--reid-model", "osnet_x1_0"), "osnet_x1_0"),
    "reid_weights": (("--reid-weights", "w.pth"), "w.pth"),
    "crops_per_track": (("--crops", "7"), 7),
    "min_crop_height": (("--min-crop-height", "20"), 20.0),
    "crop_max_covered": (("--crop-max-covered", "0.25"), 0.25),
    "embed_batch_size": (("--embed-batch-size", "8"), 8),
    "aggregation": (("--aggregation", "max"), "max"),
    "threshold": (("--threshold", "0.3"), 0.3),
    "false_merge_rate": (("--false-merge-rate", "0.02"), 0.02),
    "tentative_cut_rate": (("--tentative-cut-rate", "0.05"), 0.05),
    "stitch_max_gap_seconds": (("--stitch-max-gap-seconds", "3"), 3.0),
    "stitch_odds": (("--stitch-odds", "49"), 49.0),
    "unchecked_stitch_odds": (("--unchecked-stitch-odds", "99"), 99.0),
    "persons": (("--persons", "4"), 4),
    "criterion": (("--criterion", "dbc"), "dbc"),
    "dispersion_weight": (("--dispersion-weight", "0.2"), 0.2),
    "short_track_detections": (("--short-track-detections", "3"), 3),
    "short_track_score": (("--short-track-score", "0.4"), 0.4),
    "min_crops_to_merge": (("--min-crops-to-merge", "3"), 3),
    "split_impure": (("--no-split-impure",), False),
    "adapt": (("--no-adapt",), False),
    "adapt_dims": (("--adapt-dims", "8"), 8),
    "adapt_regularization": (("--adapt-regularization", "0.2"), 0.2),
    "motion_gate": (("--no-motion-gate",), False),
    "motion_slack_heights": (("--motion-slack-heights", "0.7"), 0.7),
    "motion_heights_per_second": (("--motion-heights-per-second", "2"), 2.0),
    "fill_gaps": (("--no-fill-gaps",), False),
    "fill_max_gap_seconds": (("--max-gap", "2"), 2.0),
    "fill_method": (("--fill-method", "linear"), "linear"),
    "fill_rule": (("--fill-rule", "sure"), "sure"),
    "drop_doubles": (("--no-drop-doubles",), False),
    "write_video": (("--no-video",), False),
}
#: Detection and tracking: `merge` takes tracks that exist, so it has none of these.
DETECTION = ("detector", "tracker", "detection_confidence", "image_size", "backfill_seconds", "backfill_score")


def test_the_table_covers_every_setting_with_a_value_that_is_not_its_default() -> None:
    assert set(GIVEN) == {f.name for f in fields(Config)}
    for name, (_, value) in GIVEN.items():
        assert getattr(Config(), name) != value, name


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Config]:
    """The Config each library call received; the calls themselves do nothing."""
    seen: list[Config] = []

    def run_video(video: Path, out_dir: Path, config: Config, *args: Any, **kwargs: Any) -> RunResult:
        seen.append(config)
        return RunResult(out_dir=out_dir, frames=1, raw_tracks=1, persons=1)

    def merge_tracks_file(tracks: Path, video: Path, out_dir: Path, config: Config, *a: Any, **k: Any) -> RunResult:
        seen.append(config)
        return RunResult(out_dir=out_dir, frames=1, raw_tracks=1, persons=1)

    def run_batch(source: str, out_root: Path, config: Config, **kwargs: Any) -> BatchSummary:
        seen.append(config)
        files = {name: out_root / name for name in ("summary.csv", "summary.json")}
        return BatchSummary(source, out_root, "local", None, config, [], 0.0, files)

    monkeypatch.setattr("reid_merge.app.pipeline.run_video", run_video)
    monkeypatch.setattr("reid_merge.app.pipeline.merge_tracks_file", merge_tracks_file)
    monkeypatch.setattr("reid_merge.app.batch.run_batch", run_batch)
    monkeypatch.chdir(tmp_path)
    return seen


COMMANDS = {
    "run": ("run", "video.mp4"),
    "merge": ("merge", "tracks.txt", "--video", "video.mp4"),
    "batch": ("batch", "videos"),
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_setting_given_on_the_command_line_arrives_in_config(command: str, captured: list[Config]) -> None:
    names = [name for name in GIVEN if not (command == "merge" and name in DETECTION)]
    args = [arg for name in names for arg in GIVEN[name][0]]
    result = invoke(*COMMANDS[command], *args)
    assert result.exit_code == 0, result.output
    [config] = captured
    for name in names:
        assert getattr(config, name) == GIVEN[name][1], name
    for name in DETECTION if command == "merge" else ():
        assert getattr(config, name) == getattr(Config(), name), name


@pytest.mark.parametrize("name", DETECTION)
def test_merge_has_no_detection_options(name: str, captured: list[Config]) -> None:
    result = invoke(*COMMANDS["merge"], *GIVEN[name][0])
    assert result.exit_code == 2 and "No such option" in result.output
    assert not captured


@pytest.mark.parametrize("command", list(COMMANDS))
def test_options_override_the_file_both_ways(command: str, captured: list[Config], tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("crops_per_track: 5\nsplit_impure: true\nwrite_video: false\nfill_gaps: false\npersons: 3\n")
    result = invoke(*COMMANDS[command], "--config", str(settings), "--no-split-impure", "--write-video", "--crops", "9")
    assert result.exit_code == 0, result.output
    [config] = captured
    assert (config.crops_per_track, config.split_impure, config.write_video) == (9, False, True)
    assert (config.fill_gaps, config.persons) == (False, 3)  # from the file, not given as options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--crops", "0"), "error: --crops: expected >= 1, got 0"),
        (("--max-gap", "-1"), "error: --max-gap: expected >= 0, got -1.0"),
        (("--threshold", "3"), "error: --threshold: expected in [0, 2] (a distance, 1 - cosine), got 3.0"),
        (("--false-merge-rate", "0.5"), "error: --false-merge-rate: expected in (0, 0.5), got 0.5"),
        (("--tentative-cut-rate", "1"), "error: --tentative-cut-rate: expected in (0, 1), got 1.0"),
        (("--fill-method", "cubic"), "error: --fill-method: expected one of linear, gsi, got 'cubic'"),
        (("--adapt-dims", "0"), "error: --adapt-dims: expected >= 1, got 0"),
        (("--motion-slack-heights", "inf"), "error: --motion-slack-heights: expected a finite number, got inf"),
    ],
)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_value_out_of_range_names_the_option(
    command: str, args: tuple[str, ...], message: str, captured: list[Config]
) -> None:
    result = invoke(*COMMANDS[command], *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert not captured


def test_a_file_value_out_of_range_names_the_key(captured: list[Config], tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("crops_per_track: 0\n")
    result = invoke("run", "video.mp4", "--config", str(settings), "--crops", "4")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {settings}: crops_per_track: expected >= 1, got 0"
    assert not captured


def test_help_groups_the_settings_by_section() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    for title in ("detection and tracking", "crops", "merge", "motion gate", "gap filling", "output"):
        assert f"Settings: {title}" in result.output
    assert "[default: 16]" in result.output  # rich markup would swallow an unescaped "[default: ...]"
