"""Attack updates computed from real images, without any federation.

Each image batch is turned into the update a client would send (FedSGD gradient of
the untrained model, through the defense), every attack reconstructs it, and the
reconstructions are scored against the originals after optimal matching.

Flag mode (`fedsim attack --dataset mnist --defense gaussian:sigma=0.1 --attack bayes`):
a table, and with `--json`/`--grid` per-image values and a PNG grid of originals over
reconstructions.

Scenario mode (`fedsim attack scenarios/paper/matrix-mnist.toml`): the whole
attack × defense matrix from one TOML file (see `fedsim.attack_matrix`), each attack
first tuned on held-out images where the file gives it a search space. `--set
KEY=VALUE` overrides a setting (`--set data.images=2`); the flag-mode options are
refused with a file. `--data-root` replaces the file's `data.root`, `--device` its
`device`, and `--download` fetches missing data. The run directory
(`<output>/<name>-<time>`, or exactly `--out DIR`) receives `scenario.toml`,
`results.json`, `table.md` and `grid.png`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedsim.attack_matrix.cells import MatrixSettings
from fedsim.attack_matrix.flags import run_matrix
from fedsim.commands import add_scenario_options
from fedsim.errors import ConfigError
from fedsim.private_files import write_private

NAME = "attack"
HELP = "attack updates computed from real images, without a federation"
READS_DATA = True

FLAG_DEFAULTS: dict[str, object] = {
    "dataset": "mnist-sample",
    "split": "test",
    "model": "cnn",
    "attack": ["bayes"],
    "defense": ["none"],
    "images": 10,
    "batch_size": 1,
    "first": 0,
    "iterations": None,
    "restarts": 1,
    "labels": "known",
    "seed": 0,
    "json": None,
    "grid": None,
}
"""Flag-mode defaults; the parser's own default is None, so a flag given with a scenario shows."""

SCENARIO_KEYS: dict[str, tuple[str, str]] = {
    "dataset": ("--dataset", "data.dataset=NAME"),
    "split": ("--split", "data.split=SPLIT"),
    "model": ("--model", "model.name=NAME"),
    "attack": ("--attack", "attacks=['SPEC', ...]"),
    "defense": ("--defense", "defenses=['SPEC', ...]"),
    "images": ("--images", "data.images=N"),
    "batch_size": ("--batch-size", "data.batch_size=N"),
    "first": ("--first", "data.first=N"),
    "iterations": ("--iterations", "budget.iterations=N"),
    "restarts": ("--restarts", "budget.restarts=N"),
    "labels": ("--labels", "data.labels=known|inferred"),
    "seed": ("--seed", "seed=N"),
}
"""Flag-mode option → the scenario setting to `--set` instead."""

WRITTEN_BY_A_RUN = {"json": "--json", "grid": "--grid"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        metavar="SCENARIO",
        nargs="?",
        default=None,
        help="attack scenario TOML file (see scenarios/paper/); without it, the flags below say what to run",
    )
    add_scenario_options(parser, "data.images=2", lead="with SCENARIO: ")
    parser.add_argument(
        "--dataset",
        default=None,
        help="data set name (see `fedsim list datasets`; default: mnist-sample)",
    )
    parser.add_argument(
        "--split",
        default=None,
        choices=["train", "test"],
        help="which split's images to attack (default: test)",
    )
    parser.add_argument(
        "--model", default=None, help="model name (see `fedsim list models`; default: cnn)"
    )
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
        "--images",
        type=int,
        default=None,
        help="number of images (or batches) to attack (default: 10)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per client update (default: 1)"
    )
    parser.add_argument(
        "--first", type=int, default=None, help="index of the first image in the split (default: 0)"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="attack iterations (default: each attack's own)",
    )
    parser.add_argument(
        "--restarts", type=int, default=None, help="random restarts per reconstruction (default: 1)"
    )
    parser.add_argument(
        "--labels",
        choices=["known", "inferred"],
        default=None,
        help="threat model for labels (default: known)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the model initialisation, defenses and attacks (default: 0)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda or cuda:N (default: auto; with SCENARIO: the file's device)",
    )
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
    if args.scenario is not None:
        return _run_scenario(args)
    if args.overrides or args.out is not None:
        flag = "--set" if args.overrides else "--out"
        raise ConfigError(f"{flag}: only with a SCENARIO file")
    options = {
        dest: default if getattr(args, dest) is None else getattr(args, dest)
        for dest, default in FLAG_DEFAULTS.items()
    }
    if options["images"] < 1:
        raise ConfigError(f"--images: must be at least 1, got {options['images']}")
    if options["batch_size"] < 1:
        raise ConfigError(f"--batch-size: must be at least 1, got {options['batch_size']}")
    settings = MatrixSettings(
        dataset=options["dataset"],
        split=options["split"],
        data_root=args.data_root,
        download=args.download,
        model=options["model"],
        attacks=options["attack"],
        defenses=options["defense"],
        images=options["images"],
        batch_size=options["batch_size"],
        first=options["first"],
        iterations=options["iterations"],
        restarts=options["restarts"],
        labels_known=options["labels"] == "known",
        seed=options["seed"],
        device=args.device or "auto",
    )
    results = run_matrix(settings, grid_path=options["grid"])
    if options["json"] is not None:
        path: Path = options["json"]
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"results": [r.to_json() for r in results]}, indent=2)
        write_private(path, text.encode("utf-8"))
    return 0


def _run_scenario(args: argparse.Namespace) -> int:
    """`fedsim attack SCENARIO`: the flag-mode options are refused, --set changes the file."""
    from fedsim.attack_matrix.config import load_attack_scenario
    from fedsim.attack_matrix.runner import run_attack_scenario

    for dest, (flag, key) in SCENARIO_KEYS.items():
        if getattr(args, dest) is not None:
            raise ConfigError(
                f"{flag}: not with a SCENARIO file, which sets this; use --set {key} instead"
            )
    for dest, flag in WRITTEN_BY_A_RUN.items():
        if getattr(args, dest) is not None:
            raise ConfigError(
                f"{flag}: not with a SCENARIO file; its run directory gets results.json and"
                " grid.png (choose it with --out, change settings with --set)"
            )
    overrides = list(args.overrides)
    # Command-line data root and device win over the file and over --set.
    if args.data_root:
        overrides.append(f"data.root={json.dumps(str(Path(args.data_root).resolve()))}")
    if args.device is not None:
        overrides.append(f"device={json.dumps(args.device)}")
    scenario = load_attack_scenario(args.scenario, overrides)
    run_attack_scenario(scenario, args.out, download=args.download)
    return 0
