"""Where the tests find real data: the bundled sample and the shared evaluation sequences."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = ROOT / "sample_videos" / "market_street_1906.mp4"
# The README's first command runs on this one: the tracker fragments a man and the merge joins his tracks.
FIRST_RUN_VIDEO = ROOT / "sample_videos" / "pets2009_s2l1.mp4"
# ../shared/data beside the checkout (as in CI), or wherever REID_MERGE_SHARED_DATA points.
SHARED_DATA = Path(os.environ.get("REID_MERGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Real re-identification checkpoints for measuring and testing (../shared/weights, never committed).
SHARED_WEIGHTS = SHARED_DATA.parent / "weights"
SHARED_OSNET = SHARED_WEIGHTS / "osnet_x0_25_msmt17.pth"
