"""The package's shape: layers that only import downwards, and no import cycles.

The layers are declared in pyproject.toml ([tool.importlinter]); these tests run import-linter
on them, so that the structure stays true as the code changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layers_contract_is_kept(capsys: pytest.CaptureFixture[str]) -> None:
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "2 kept, 0 broken" in report
