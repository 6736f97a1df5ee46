"""One Markdown table of audited training states: the tables of EXPERIMENTS.md, section 7.

Takes folders written by `scripts/audit_checkpoints.py` (one per defense and client
batch size) and prints, per defense, the test accuracy of each audited state and, per
batch size and attack, the mean PSNR and how many images were recovered recognisably
at that state. Columns are the states (rounds trained before the audited update).

    python scripts/whole_run_table.py runs/audit-mnist-none-b1 runs/audit-mnist-none-b16 ...
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from fedsim.report import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    accuracy: dict[str, dict[int, float]] = defaultdict(dict)
    leakage: dict[tuple[str, int, str], dict[int, str]] = defaultdict(dict)
    states: set[int] = set()
    for folder in args.folders:
        run = load_run(folder)
        for (attack, defense), rounds in run.audited_rounds().items():
            for r in rounds:
                if not r.images:
                    continue
                state = r.round - 1
                states.add(state)
                if r.accuracy is not None:
                    accuracy[defense][state] = r.accuracy
                batch = r.images // max(r.updates, 1)
                psnr = statistics.fmean(r.psnr)
                leakage[(defense, batch, attack)][state] = (
                    f"{psnr:.1f} · {r.recognisable}/{r.images}"
                )
    columns = sorted(states)
    lines = [
        "| defense | row | " + " | ".join(str(s) for s in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for defense in sorted(accuracy, key=lambda d: (d != "none", d)):
        cells = [
            f"{100 * accuracy[defense][s]:.1f} %" if s in accuracy[defense] else "–"
            for s in columns
        ]
        lines.append(f"| {defense} | test accuracy | " + " | ".join(cells) + " |")
        for key in sorted(k for k in leakage if k[0] == defense):
            _, batch, attack = key
            cells = [leakage[key].get(s, "–") for s in columns]
            lines.append(f"| | B = {batch}, {attack} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
