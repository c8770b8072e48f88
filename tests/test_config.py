from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from reid_merge.app.config import SECTIONS, Config, load_config
from reid_merge.errors import UsageError
from tests.data_paths import ROOT


def test_default_yaml_mirrors_the_dataclass() -> None:
    data = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert data == Config().to_dict()
    assert load_config(ROOT / "configs" / "default.yaml") == Config()


def test_file_overrides_defaults_and_options_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("threshold: 0.4\ncrops_per_track: 8\n")
    config = load_config(path)
    assert config.threshold == 0.4 and config.crops_per_track == 8
    assert config.with_overrides(threshold=0.2, crops_per_track=None).threshold == 0.2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tresholds: 0.4\n", "unknown setting 'tresholds'"),
        ("threshold: high\n", "setting 'threshold' expects float"),
        ("crops_per_track: 2.5\n", "setting 'crops_per_track' expects int"),
        ("write_video: 1\n", "setting 'write_video' expects bool"),
        ("- a\n- b\n", "expected a mapping"),
        ("threshold: [1\n", "not a readable YAML file"),
        ("threshold: 5\n", "threshold: expected in [0, 2]"),
        ("crops_per_track: 0\n", "c.yaml: crops_per_track: expected >= 1, got 0"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "float-for-int",
        "int-for-bool",
        "not-mapping",
        "bad-yaml",
        "out-of-range",
        "names-the-key",
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        load_config(path)


@pytest.mark.parametrize(
    "overrides",
    [{"crops_per_track": 0}, {"persons": 0}, {"threshold": -0.1}, {"device": "gpu"}, {"aggregation": "sum"}],
    ids=["crops", "persons", "threshold", "device", "aggregation"],
)
def test_out_of_range_settings_are_refused(overrides: dict) -> None:
    with pytest.raises(UsageError):
        Config().with_overrides(**overrides)


def test_default_yaml_has_a_section_per_config_section_in_order() -> None:
    """Each key of configs/default.yaml sits under the header of its field's section."""
    sections = {f.name: f.metadata["section"] for f in fields(Config)}
    header = None
    seen: list[str] = []
    for line in (ROOT / "configs" / "default.yaml").read_text().splitlines():
        title = next((key for key, text in SECTIONS.items() if line.startswith(f"# {text} ")), None)
        if title is not None:
            header = title
            seen.append(title)
        elif line and not line.startswith((" ", "#")):
            key = line.split(":", 1)[0]
            assert sections[key] == header, f"{key} is under {header!r}, its section is {sections[key]!r}"
    assert seen == list(SECTIONS)


def test_each_setting_declares_its_section_help_and_a_working_range() -> None:
    for field in fields(Config):
        assert field.metadata["section"] in SECTIONS and field.metadata["help"], field.name
        valid = field.metadata["valid"]
        assert valid is None or field.default is None or valid.accepts(field.default), field.name
