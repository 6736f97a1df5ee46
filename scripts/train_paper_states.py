"""Train the states an attack scenario attacks: its network under each of its defenses.

For a scenario with `[model.training]` (`scenarios/paper/trained-*.toml`) this trains the
model under every defense of the scenario as the Bayesian framework paper trained its
checkpoints (the defense applied to every step's update, Adam, batches of 32;
`fedsim.attack_matrix.trained_states`), keeps the states after `--steps` (default: the
scenario's) in the scenario's states folder, and prints each state's test accuracy.
`fedsim attack SCENARIO` then finds them there; it trains any it lacks itself, so this is
only needed to train ahead, or to keep more states than the scenario attacks.

    python scripts/train_paper_states.py scenarios/paper/trained-mnist.toml --data-root DATA \\
        --steps 0 20 100 500 [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
import time

from fedsim.attack_matrix.config import load_attack_scenario
from fedsim.attack_matrix.trained_states import EVALUATION_IMAGES, states_by_defense
from fedsim.data import load_dataset
from fedsim.device import resolve_device
from fedsim.errors import ConfigError, FedsimError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="an attack scenario with [model.training]")
    parser.add_argument("--data-root", default=None, help="replaces the scenario's data.root")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="states to keep")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    overrides = list(args.overrides)
    if args.data_root is not None:
        overrides.append(f"data.root={args.data_root!r}")
    try:
        scenario = load_attack_scenario(args.scenario, overrides)
        if scenario.model.training is None:
            raise ConfigError(f"{args.scenario}: has no [model.training] section to train")
        data = scenario.data
        splits = {s: load_dataset(data.dataset, s, data.root) for s in ("train", "test")}
        started = time.perf_counter()
        states = states_by_defense(
            scenario,
            splits,
            resolve_device(scenario.device),
            steps=args.steps,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except FedsimError as error:
        print(f"train_paper_states: {error}", file=sys.stderr)
        return 2
    steps = [state.step for state in next(iter(states.values()))]
    print("| defense | " + " | ".join(f"step {s}" for s in steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for spec, kept in states.items():
        cells = [f"{s.test_accuracy:.1%}" if s.test_accuracy is not None else "" for s in kept]
        print(f"| {spec} | " + " | ".join(cells) + " |")
    seconds = time.perf_counter() - started
    print(f"\ntest accuracy on the first {EVALUATION_IMAGES} test images; {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
