"""Attack updates computed from real images, without any federation.

Each image batch is turned into the update a client would send (FedSGD gradient of
the untrained or given model, through the defense), every attack reconstructs it,
and the reconstructions are scored against the originals: a table, JSON with
per-image values, and a PNG grid of originals over reconstructions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedsim.attack_matrix import MatrixSettings, run_matrix
from fedsim.errors import ConfigError

NAME = "attack"
HELP = "attack updates computed from real images, without a federation"
READS_DATA = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", default="mnist-sample", help="data set name (see `fedsim list datasets`)"
    )
    parser.add_argument(
        "--split", default="test", choices=["train", "test"], help="which split's images to attack"
    )
    parser.add_argument("--model", default="cnn", help="model name (see `fedsim list models`)")
    parser.add_argument(
        "--attack",
        action="append",
        default=None,
        metavar="NAME[:k=v,...]",
        help="attack, with optional overrides; repeat for several (default: bayes)",
    )
    parser.add_argument(
        "--defense",
        action="append",
        default=None,
        metavar="SPEC",
        help="defense spec such as gaussian:sigma=0.1; repeat for several (default: none)",
    )
    parser.add_argument(
        "--images", type=int, default=10, help="number of images (or batches) to attack"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="images per client update")
    parser.add_argument(
        "--first", type=int, default=0, help="index of the first image in the split"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="attack iterations (default: each attack's own)",
    )
    parser.add_argument(
        "--restarts", type=int, default=1, help="random restarts per reconstruction"
    )
    parser.add_argument(
        "--labels", choices=["known", "inferred"], default="known", help="threat model for labels"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the model initialisation, defenses and attacks"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write per-image results as JSON"
    )
    parser.add_argument(
        "--grid",
        type=Path,
        default=None,
        metavar="PNG",
        help="write originals over reconstructions",
    )


def main(args: argparse.Namespace) -> int:
    if args.images < 1:
        raise ConfigError(f"--images: must be at least 1, got {args.images}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be at least 1, got {args.batch_size}")
    settings = MatrixSettings(
        dataset=args.dataset,
        split=args.split,
        data_root=args.data_root,
        download=args.download,
        model=args.model,
        attacks=args.attack or ["bayes"],
        defenses=args.defense or ["none"],
        images=args.images,
        batch_size=args.batch_size,
        first=args.first,
        iterations=args.iterations,
        restarts=args.restarts,
        labels_known=args.labels == "known",
        seed=args.seed,
        device=args.device,
    )
    results = run_matrix(settings, grid_path=args.grid)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": [r.to_json() for r in results]}, indent=2))
    return 0
