"""κ per data set: the share of training images that the best data-only guess makes
recognisable (SSIM ≥ 0.4), without and with the labels (`fedsim.metrics.guess_baseline`).

Guesses are built from the test split (what an adversary may know about the data; with
`--reference`, another data set's) and scored against the training split (what the
clients hold). Prints one Markdown row per data set and the `MeasuredKappa` entry to
paste into `MEASURED_KAPPA`.

    python scripts/kappa_baselines.py mnist-sample
    python scripts/kappa_baselines.py mnist cifar10 --data-root DATA --limit 10000
    python scripts/kappa_baselines.py mnist-sample --reference mnist --data-root DATA
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fedsim.data import load_dataset
from fedsim.metrics.guess_baseline import data_only_guesses, measure_kappa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="score the first N training images")
    parser.add_argument("--reference", default=None, help="build the guesses from this data set")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| data set | private images | guesses | κ, labels inferred | κ, labels given | best guess |"
    )
    print("|---|---:|---:|---:|---:|---|")
    entries = []
    for name in args.datasets:
        started = time.perf_counter()
        reference = load_dataset(args.reference or name, "test", args.data_root).as_float()
        private = load_dataset(name, "train", args.data_root).as_float()
        images, labels = private.images, private.labels
        if args.limit is not None:
            images, labels = images[: args.limit], labels[: args.limit]
        guesses = data_only_guesses(reference.images, reference.labels)
        kappa = measure_kappa(guesses, images, labels)
        print(
            f"| {name} | {kappa.images} | {len(guesses)} | {kappa.inferred:.4f} | "
            f"{kappa.given:.4f} | {kappa.best_guess} |  ({time.perf_counter() - started:.0f} s)"
        )
        entries.append(
            f'    "{name}": MeasuredKappa({kappa.inferred:.4f}, {kappa.given:.4f}, '
            f'"{kappa.best_guess}", {kappa.images}),'
        )
    print("\n".join(entries))


if __name__ == "__main__":
    main()
