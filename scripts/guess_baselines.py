"""PSNR and SSIM of guesses that ignore the update, against the scored images of a matrix.

An attack that scores no better than these has learnt nothing from the update it
attacked: the prior alone does as well. The guesses use the training split only (what
an adversary may know about the data), never the scored images:

- black: every pixel 0;
- flat: every pixel at the training set's mean intensity;
- mean image: the training set's mean image.

    python scripts/guess_baselines.py scenarios/paper/matrix-dpsgd-mnist.toml --data-root DATA
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fedsim.attack_matrix.config import load_attack_scenario
from fedsim.data import load_dataset
from fedsim.metrics import psnr, ssim


def guesses(train: torch.Tensor, like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Name → guess shaped like `like`, from the training images `train` alone."""
    return {
        "black": torch.zeros_like(like),
        "flat": torch.full_like(like, float(train.mean())),
        "mean image": train.mean(dim=0, keepdim=True).expand_as(like),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path, help="an attack scenario (fedsim attack SCENARIO)")
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args()
    scenario = load_attack_scenario(args.scenario)
    data = scenario.data
    root = args.data_root or data.root
    scored = load_dataset(data.dataset, data.split, root).as_float()
    scored = scored.images[list(data.index_range())]
    train = load_dataset(data.dataset, "train", root).as_float().images
    print(f"| guess | PSNR (dB) | SSIM |  ({len(scored)} {data.split} images of {data.dataset})")
    print("|---|---:|---:|")
    for name, guess in guesses(train, scored).items():
        value = float(psnr(guess, scored))
        structure = float(ssim(guess, scored))
        print(f"| {name} | {value:.2f} | {structure:.3f} |")


if __name__ == "__main__":
    main()
