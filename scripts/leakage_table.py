"""Markdown tables of federation runs: per audited round, mean PSNR and images recovered
per attack beside the accuracy (and under DP-SGD ε per threat model, each column named for it) — the tables of
EXPERIMENTS.md come from this.

    python scripts/leakage_table.py RUN [RUN ...]           # one table per run
    python scripts/leakage_table.py --final RUN [RUN ...]   # one row per run: its last audited round
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from fedsim.metrics.capped import summarize_psnr
from fedsim.report import load_run
from fedsim.report.runs import RunRecords


def _by_round(run: RunRecords) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Series names, and round → series → mean PSNR (with median and how many records
    are exact, where any reached the cap) and images recovered (`fedsim.judgement`: every
    record that carries scores, timed-out attacks included; `*`: the round's audit had
    holes or attacks stopped by their time budget)."""
    facts = [f for f in run.facts() if any(r.psnr for r in f.rounds)]
    names = sorted({f.series.label for f in facts})
    table: dict[int, dict[str, str]] = {}
    for f in facts:
        for r in f.rounds:
            if not r.psnr:
                continue
            recovered = f" · {r.recovered}/{r.items}" if r.items else ""
            mark = "" if r.complete else "*"
            table.setdefault(r.round, {})[f.series.label] = (
                summarize_psnr(r.psnr).text() + recovered + mark
            )
    return names, table


EPSILON_COLUMNS = {
    "informed": "ε informed (q = 1)",
    "user": "ε user-level",
    "subsampled": "ε subsampled",
}
"""Column per threat model; a claim that does not hold in the run is marked † below the table."""


def _epsilons(record: dict) -> dict[str, str]:
    """Threat model → ε text of one rounds.jsonl line (†: does not hold in this run)."""
    out = {}
    for claim in record.get("privacy", []):
        value = claim.get("epsilon")
        text = "∞" if value is None else f"{value:.3g}"
        holds = claim.get("holds", False)
        out[claim["threat_model"]] = text + ("" if holds else " ‡" if holds is None else " †")
    return out


def _footnote(run: RunRecords) -> str:
    why = next(
        (
            c.get("why_not")
            for r in run.rounds
            for c in r.get("privacy", [])
            if c.get("holds") is False
        ),
        None,
    )
    note = f"\n\n† does not hold in this run: {why}." if why else ""
    unverified = next(
        (
            c.get("why_not")
            for r in run.rounds
            for c in r.get("privacy", [])
            if c.get("holds") is None
        ),
        None,
    )
    if unverified:
        note += f"\n\n‡ unverified: {unverified}."
    if any(not r.complete for f in run.facts() for r in f.rounds):
        note += (
            "\n\n* the round's audit is incomplete: an update could not be attacked, or an"
            " attack stopped at its time budget (its best candidate is counted)."
        )
    return note


def _round_facts(run: RunRecords, rnd: int) -> tuple[str, dict[str, str]]:
    """Accuracy of the model the round's clients started from, and ε spent after it."""
    rows = {int(r["round"]): r for r in run.rounds}
    start = rows.get(rnd - 1, {})
    accuracy = f"{100 * start['accuracy']:.1f} %" if "accuracy" in start else "-"
    return accuracy, _epsilons(rows.get(rnd, {}))


def _dp_columns(runs: Sequence[RunRecords]) -> list[str]:
    present = {c["threat_model"] for run in runs for r in run.rounds for c in r.get("privacy", [])}
    return [name for name in EPSILON_COLUMNS if name in present]


def run_table(run: RunRecords) -> str:
    names, table = _by_round(run)
    dp = _dp_columns([run])
    header = ["round", "steps before", "accuracy", *(EPSILON_COLUMNS[c] for c in dp), *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rnd in sorted(table):
        accuracy, epsilons = _round_facts(run, rnd)
        cells = [table[rnd].get(n, "-") for n in names]
        eps = [epsilons.get(c, "-") for c in dp]
        lines.append("| " + " | ".join([str(rnd), str(rnd - 1), accuracy, *eps, *cells]) + " |")
    return "\n".join(lines) + _footnote(run)


def final_table(runs: Sequence[RunRecords]) -> str:
    """Per run: defense, its last audited round's PSNR per attack, final accuracy and ε."""
    names = sorted({n for run in runs for n in _by_round(run)[0]})
    dp = _dp_columns(runs)
    header = ["run", "defense", "last audited round", *names, "final accuracy"]
    header += [f"{EPSILON_COLUMNS[c]} at the end" for c in dp]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        _, table = _by_round(run)
        last = max(table) if table else None
        defense = next((str(r.get("defense")) for r in run.leakage), "-")
        final = run.rounds[-1] if run.rounds else {}
        cells = [table[last].get(n, "-") if last is not None else "-" for n in names]
        accuracy = f"{100 * final['accuracy']:.1f} %" if "accuracy" in final else "-"
        eps = [_epsilons(final).get(c, "-") for c in dp]
        lines.append(
            "| " + " | ".join([run.name, defense, str(last), *cells, accuracy, *eps]) + " |"
        )
    return "\n".join(lines) + next((_footnote(r) for r in runs if _footnote(r)), "")


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
