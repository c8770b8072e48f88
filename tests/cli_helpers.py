"""Run the reid-merge command as a user does: a subprocess with a plain environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cli_env(columns: int = 200) -> dict[str, str]:
    """A small environment: no inherited settings, a terminal width that output may wrap at."""
    # REID_MERGE_OFFLINE: `auto` models come from disk only, never from the internet.
    return {"PATH": "/usr/bin:/bin", "COLUMNS": str(columns), "HOME": str(Path.home()), "REID_MERGE_OFFLINE": "1"}


def reid_merge(*args: str | Path, columns: int = 200, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``reid-merge ARGS`` to completion, capturing stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "reid_merge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(columns),
    )
