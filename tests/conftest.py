"""Fixtures shared by several test modules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import reid_merge
from tests.data_paths import FIRST_RUN_VIDEO


@pytest.fixture(scope="session", autouse=True)
def no_model_downloads() -> Iterator[None]:
    """No test reaches the internet: `auto` models come from disk only (REID_MERGE_OFFLINE);
    the download tests use their own server on 127.0.0.1. Session scope, so that it is in
    place before module-scoped fixtures load models."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REID_MERGE_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The README's first command, ``reid-merge run`` on the first-run sample, once per session."""
    out = tmp_path_factory.mktemp("sample") / "run"
    result = reid_merge("run", FIRST_RUN_VIDEO, "-o", out, "--device", "cpu")
    return out, result


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core runner: one thread is faster and steadier. Modules that
    build models opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
