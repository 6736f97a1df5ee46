"""One Markdown table of audited training states: the tables of EXPERIMENTS.md, section 7.

Takes folders written by `scripts/audit_checkpoints.py` (one per defense, client batch
size and attack set) and prints, per defense, the test accuracy of each audited state
and, per batch size and attack, the mean PSNR and how many images were recovered
at that state (`fedsim.judgement`; a `*` marks a state whose audit had holes or attacks
stopped by their time budget); where several attacks ran at one batch size, a row
`strongest` names the attack that recovered most images (then the highest PSNR) at
each state. Rows `… vs trained-on` (ATS) score against the transformed images the
update was computed on, not the private ones, and are never the strongest. Columns are
the states (rounds trained before the audited update). A defense audited on the states
of a training run under another defense (or none) says so in its name:
`soteria:rate=80 (on states trained without defense)`. The last column is the wall
time of the audits the row comes from (all attacks of one folder), in seconds.

    python scripts/whole_run_table.py runs/audit-mnist-none-b1 runs/audit-mnist-none-b16 ...
"""

from __future__ import annotations

import argparse
import statistics
import tomllib
from collections import defaultdict
from pathlib import Path

from fedsim.judgement import RoundFacts
from fedsim.records import SCENARIO_FILE
from fedsim.report import load_run


def trained_under(folder: Path) -> list[str] | None:
    """The defenses of the training run whose checkpoints `folder` audits (None: unknown)."""
    for scenario in sorted(folder.glob("state-*/" + SCENARIO_FILE)):
        raw = tomllib.loads(scenario.read_text(encoding="utf-8"))
        checkpoint = raw.get("model", {}).get("checkpoint")
        if checkpoint is None:
            continue
        train = Path(checkpoint).parent.parent / SCENARIO_FILE
        if train.is_file():
            return list(tomllib.loads(train.read_text(encoding="utf-8")).get("defenses") or [])
    return None


def defense_label(defense: str, training: list[str] | None) -> str:
    if training is None or "+".join(training or ["none"]) == defense:
        return defense
    other = "+".join(training) if training else None
    return f"{defense} (on states trained {'under ' + other if other else 'without defense'})"


def seconds_of(folder: Path) -> float | None:
    values = [float(p.read_text()) for p in folder.glob("state-*.seconds")]
    return sum(values) if values else None


def cell(r: RoundFacts) -> str:
    """`18.2 · 3/4`: mean PSNR and images recovered (`fedsim.judgement`; `*`: incomplete)."""
    mark = "" if r.complete else "*"
    return f"{statistics.fmean(r.psnr):.1f} · {r.recovered}/{r.items}{mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    accuracy: dict[str, dict[int, float]] = defaultdict(dict)
    found: dict[tuple[str, int], dict[str, dict[int, RoundFacts]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    seconds: dict[tuple[str, int, str], float] = defaultdict(float)
    states: set[int] = set()
    for folder in args.folders:
        run = load_run(folder)
        training = trained_under(folder)
        wall = seconds_of(folder)
        batch = int(run.scenario.get("protocol", {}).get("batch_size", 0))
        for facts in run.facts():
            attack, label = facts.series.label, defense_label(facts.series.defense, training)
            for r in facts.rounds:
                if not r.items:
                    continue
                state = r.round - 1
                states.add(state)
                if r.accuracy is not None:
                    accuracy[label][state] = r.accuracy
                found[(label, batch)][attack][state] = r
                if wall is not None:
                    seconds[(label, batch, attack)] = wall
    columns = sorted(states)
    lines = [
        "| defense | row | " + " | ".join(str(s) for s in columns) + " | s |",
        "|---|---|" + "---:|" * (len(columns) + 1),
    ]
    for label in sorted(accuracy, key=lambda d: (d != "none", d)):
        cells = [
            f"{100 * accuracy[label][s]:.1f} %" if s in accuracy[label] else "–" for s in columns
        ]
        lines.append(f"| {label} | test accuracy | " + " | ".join(cells) + " | |")
        for batch in sorted(b for d, b in found if d == label):
            by_attack = found[(label, batch)]
            for attack in sorted(by_attack):
                cells = [
                    cell(by_attack[attack][s]) if s in by_attack[attack] else "–" for s in columns
                ]
                wall = seconds.get((label, batch, attack))
                time = "" if wall is None else f"{wall:.0f}"
                lines.append(f"| | B = {batch}, {attack} | " + " | ".join(cells) + f" | {time} |")
            if len([a for a in by_attack if not a.endswith("vs trained-on")]) > 1:
                lines.append(f"| | B = {batch}, strongest | " + " | ".join(
                    _strongest(by_attack, s) for s in columns
                ) + " | |")  # fmt: skip
    print("\n".join(lines))


def _strongest(by_attack: dict[str, dict[int, RoundFacts]], state: int) -> str:
    rounds = [
        (a, rounds[state])
        for a, rounds in by_attack.items()
        if state in rounds and not a.endswith("vs trained-on")  # scored on transformed images
    ]
    if not rounds:
        return "–"
    attack, best = max(rounds, key=lambda ar: (ar[1].recovered, statistics.fmean(ar[1].psnr)))
    return f"{attack}: {cell(best)}"


if __name__ == "__main__":
    main()
