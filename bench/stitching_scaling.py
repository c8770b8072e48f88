"""Stitching's cost in a dense crowd: the margin over every alternative against one assignment.

A link is made only where the best assignment loses enough when it is forbidden, so each link
of a connected group of ends and starts costs one shortest path over that group
(`stitching.stitch`). In a sparse scene the groups are tiny; in a dense crowd
that keeps losing people they merge into one. This scene is the worst we could make: `lanes`
people walking side by side 6 px apart (boxes 120 px tall), each lost for 3 frames after
every 30, at staggered times, so that every end has several plausible starts and the groups
chain through the whole video. The baseline, timed in the same process on the same weights,
is what stitching did before the margin: one Hungarian assignment.

    python bench/stitching_scaling.py [--sizes 10x10,20x10,50x20]   # lanes x pieces per person
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from reid_merge.core.motion import track_ends
from reid_merge.core.stitching import clutter_density, handover_model, link_weights, stitch, stitch_error
from reid_merge.core.tracks import TrackSet, cooccurrence

PIECE_FRAMES, GAP_FRAMES, LANE_PX, FPS = 30, 3, 6.0, 25.0


def crowd(lanes: int, pieces: int, seed: int = 0) -> TrackSet:
    rng = np.random.default_rng(seed)
    rows = []
    track_id = 0
    for lane in range(lanes):
        y, frame = 100.0 + LANE_PX * lane, 1 + lane % PIECE_FRAMES
        for _ in range(pieces):
            track_id += 1
            for _ in range(PIECE_FRAMES):
                x = 2.0 * frame + rng.normal(0.0, 1.0)
                rows.append((frame, track_id, x, y + rng.normal(0.0, 1.0), x + 40.0, y + 120.0))
                frame += 1
            frame += GAP_FRAMES
    table = np.array(rows)
    frames, ids = table[:, 0].astype(int), table[:, 1].astype(int)
    return TrackSet.from_arrays(frames, ids, table[:, 2:6], np.full(len(table), 0.9))


def weights(tracks: TrackSet) -> np.ndarray:
    """The log likelihood ratios `stitch` assigns over (the default 1.5 s, nothing else ruled out)."""
    ids = tracks.track_ids
    ends = track_ends(tracks, ids)
    error, gap = stitch_error(ends, FPS)
    model, clutter = handover_model(tracks, FPS, 1.5), clutter_density(tracks, ids)
    return link_weights(ends, error, gap, model, clutter, 1.5, ~cooccurrence(tracks, ids))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10x10,20x10,50x20")
    args = parser.parse_args(argv)
    print("| lanes x pieces | tracks | possible links | one assignment (s) | with margins (s) | ratio |", end="")
    print(" links | left unmade |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        lanes, pieces = (int(n) for n in size.split("x"))
        w = weights(crowd(lanes, pieces))
        start = time.perf_counter()
        linear_sum_assignment(w, maximize=True)
        baseline = time.perf_counter() - start
        start = time.perf_counter()
        links = stitch(w, np.log(199.0))
        margins = time.perf_counter() - start
        print(
            f"| {size} | {len(w)} | {int((w > 0).sum())} | {baseline:.3f} | {margins:.2f} | "
            f"{margins / max(baseline, 1e-9):.0f} | {len(links.pairs)} | {links.ambiguous} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
