"""One picture of a run's reconstructions over training: its per-round grids side by side.

Takes the first grid of each audited round (originals over each attack's
reconstruction, as `fedsim run` writes them to RUN/reconstructions/) and joins them
left to right, so a reader sees at a glance how much leaks at each model state.

    python scripts/round_strip.py RUN OUT.png [--rounds 1 2 6 11 21 51]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from fedsim.records import RECONSTRUCTIONS_DIR

_NAME = re.compile(r"round-(\d+)-client-(\d+)\.png$")


def first_grid_per_round(run: Path) -> dict[int, Path]:
    """Round → the grid of its lowest-numbered audited client."""
    chosen: dict[int, Path] = {}
    for path in sorted((run / RECONSTRUCTIONS_DIR).glob("round-*-client-*.png")):
        match = _NAME.search(path.name)
        if match:
            chosen.setdefault(int(match.group(1)), path)
    return chosen


def join_left_to_right(images: list[np.ndarray]) -> np.ndarray:
    """RGBA images padded with white to the tallest, then concatenated."""
    height = max(image.shape[0] for image in images)
    padded = []
    for image in images:
        rgba = image if image.shape[2] == 4 else np.dstack([image, np.ones(image.shape[:2])])
        pad = np.ones((height - rgba.shape[0], rgba.shape[1], 4), dtype=rgba.dtype)
        padded.append(np.vstack([rgba, pad]))
    return np.hstack(padded)


def main() -> None:
    import matplotlib.image as mpimg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, nargs="*", default=None)
    args = parser.parse_args()
    grids = first_grid_per_round(args.run)
    rounds = args.rounds or sorted(grids)
    missing = [r for r in rounds if r not in grids]
    if missing:
        raise SystemExit(f"no grid for round(s) {missing} in {args.run / RECONSTRUCTIONS_DIR}")
    strip = join_left_to_right([mpimg.imread(grids[r]) for r in rounds])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(args.out, strip)
    print(f"wrote {args.out} ({len(rounds)} rounds)")


if __name__ == "__main__":
    main()
