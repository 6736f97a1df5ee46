"""Markdown tables of federation runs: per audited round, mean PSNR per attack beside the
accuracy (and ε under DP-SGD) — the tables of EXPERIMENTS.md come from this.

    python scripts/leakage_table.py RUN [RUN ...]           # one table per run
    python scripts/leakage_table.py --final RUN [RUN ...]   # one row per run: its last audited round
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from fedsim.report import load_run
from fedsim.report.runs import RunRecords


def _by_round(run: RunRecords) -> tuple[list[str], dict[int, dict[str, float]]]:
    """Series names, and round → series → mean PSNR."""
    series = run.series()
    names = sorted({attack for attack, _ in series})
    table: dict[int, dict[str, float]] = {}
    for (attack, _), rounds in series.items():
        for rnd, values in rounds.items():
            table.setdefault(rnd, {})[attack] = statistics.fmean(values)
    return names, table


def _round_facts(run: RunRecords, rnd: int) -> tuple[str, str]:
    """Accuracy of the model the round's clients started from, and ε spent after it."""
    rows = {int(r["round"]): r for r in run.rounds}
    start = rows.get(rnd - 1, {})
    accuracy = f"{100 * start['accuracy']:.1f} %" if "accuracy" in start else "-"
    spent = rows.get(rnd, {})
    epsilon = f"{spent['epsilon']:.3g}" if "epsilon" in spent else "-"
    return accuracy, epsilon


def run_table(run: RunRecords) -> str:
    names, table = _by_round(run)
    dp = any("epsilon" in r for r in run.rounds)
    header = ["round", "steps before", "accuracy", *(["ε"] if dp else []), *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rnd in sorted(table):
        accuracy, epsilon = _round_facts(run, rnd)
        cells = [f"{table[rnd][n]:.2f}" if n in table[rnd] else "-" for n in names]
        lines.append(
            "| "
            + " | ".join([str(rnd), str(rnd - 1), accuracy, *([epsilon] if dp else []), *cells])
            + " |"
        )
    return "\n".join(lines)


def final_table(runs: Sequence[RunRecords]) -> str:
    """Per run: defense, its last audited round's PSNR per attack, final accuracy and ε."""
    names = sorted({n for run in runs for n in _by_round(run)[0]})
    header = ["run", "defense", "last audited round", *names, "final accuracy", "ε at the end"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        _, table = _by_round(run)
        last = max(table) if table else None
        defense = next((str(r.get("defense")) for r in run.leakage), "-")
        final = run.rounds[-1] if run.rounds else {}
        cells = [
            f"{table[last][n]:.2f}" if last is not None and n in table[last] else "-" for n in names
        ]
        accuracy = f"{100 * final['accuracy']:.1f} %" if "accuracy" in final else "-"
        epsilon = f"{final['epsilon']:.3g}" if "epsilon" in final else "-"
        lines.append(
            "| " + " | ".join([run.name, defense, str(last), *cells, accuracy, epsilon]) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--final", action="store_true", help="one row per run")
    args = parser.parse_args()
    runs = [load_run(path) for path in args.runs]
    if args.final:
        print(final_table(runs))
        return
    for run in runs:
        state = " (partial)" if run.partial else ""
        print(f"### {run.name}{state}\n\n{run_table(run)}\n")


if __name__ == "__main__":
    main()
