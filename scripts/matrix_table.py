"""Markdown tables of `fedsim attack` runs, every cell with its standard error.

Reads the results.json of one or more runs (of the same data set; several runs, e.g. one
per state or per pair of defenses, merge into one table; `RUN=LABEL` names that run's
columns `attack (LABEL)`, so that runs of the same attacks, tuned two ways, sit side by
side and pair) and prints, one row per trained state and defense:

- mean PSNR ± its standard error over the images (clipped to [0, 1] before scoring, as
  fedsim scores), the best attack per row in bold (ties within one standard error of the
  best are bold too), and the state's test accuracy;
- the same for the PSNR of the unclipped reconstructions (the paper's) where any image's
  differs, else the line that says they are equal; and the largest difference;
- the lead of `--reference` (default bayes) over the best other attack of the same label
  (by mean): the mean paired difference over the same images ± its standard error, and
  the other attack's name; without labels, also its lead over each other attack.

    python scripts/matrix_table.py RUN[=LABEL] [RUN[=LABEL] ...] [--reference bayes]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    if len(values) < 2:
        return statistics.fmean(values), 0.0
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def signed(value: float) -> str:
    """`+0.12`, `-0.12`, and `0.00` for anything that rounds to zero (never `-0.00`)."""
    text = f"{value:+.2f}"
    return "0.00" if float(text) == 0 else text


def load_cells(runs: list[str]) -> list[dict[str, Any]]:
    cells = []
    for text in runs:
        path, _, label = text.partition("=")
        record = json.loads((Path(path) / "results.json").read_text(encoding="utf-8"))
        if not record.get("complete"):
            print(f"<!-- {path}: incomplete run, its finished cells are included -->")
        for cell in record["cells"]:
            requested = f"{cell['requested']} ({label})" if label else cell["requested"]
            cells.append(
                {**cell, "requested": requested, "attack": cell["requested"], "label": label}
            )
    return cells


def row_key(cell: dict[str, Any]) -> tuple[int, str]:
    state = cell.get("state")
    return (-1 if state is None else state["step"], cell["defense"])


def row_label(key: tuple[int, str], accuracy: float | None) -> str:
    step, defense = key
    if step < 0:
        return defense
    shown = "" if accuracy is None else f" ({accuracy:.0%})"
    return f"{step}{shown} | {defense}"


def psnr_table(cells: list[dict[str, Any]], field: str) -> list[str]:
    attacks = list(dict.fromkeys(c["requested"] for c in cells))
    rows = sorted({row_key(c) for c in cells})
    by = {(row_key(c), c["requested"]): c for c in cells}
    lines = [
        "| step (accuracy) | defense | " + " | ".join(attacks) + " |",
        "|---|---|" + "---:|" * len(attacks),
    ]
    for key in rows:
        found = {a: mean_se(by[(key, a)][field]) for a in attacks if (key, a) in by}
        best, best_se = max(found.values(), key=lambda ms: ms[0])
        texts = []
        for attack in attacks:
            if attack not in found:
                texts.append("")
                continue
            mean, se = found[attack]
            text = f"{mean:.2f} ± {se:.2f}"
            texts.append(f"**{text}**" if best - mean <= max(se, best_se) else text)
        state = next(by[(key, a)].get("state") for a in attacks if (key, a) in by)
        label = row_label(key, state and state.get("test_accuracy"))
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    return lines


def is_reference(attack: str, reference: str) -> bool:
    """`bayes` is the reference `bayes`, and so is `bayes:box=false`."""
    return attack == reference or attack.startswith(f"{reference}:")


def lead_table(cells: list[dict[str, Any]], reference: str) -> list[str]:
    names = list(dict.fromkeys(c["requested"] for c in cells))
    attacks = [a for a in names if not is_reference(a, reference)]
    reference = next((a for a in names if is_reference(a, reference)), reference)
    rows = sorted({row_key(c) for c in cells})
    by = {(row_key(c), c["requested"]): c for c in cells}
    lines = [
        "| step | defense | " + " | ".join(f"{reference} − {a}" for a in attacks) + " |",
        "|---|---|" + "---|" * len(attacks),
    ]
    for key in rows:
        if (key, reference) not in by:
            continue
        mine = by[(key, reference)]["psnr"]
        texts = []
        for attack in attacks:
            if (key, attack) not in by:
                texts.append("")
                continue
            other = by[(key, attack)]["psnr"]
            mean, se = mean_se([a - b for a, b in zip(mine, other, strict=True)])
            texts.append(f"{signed(mean)} ± {se:.2f}")
        lines.append(f"| {row_label(key, None)} | " + " | ".join(texts) + " |")
    return lines


def best_other_lead(
    cells: list[dict[str, Any]],
    key: tuple[int, str],
    labels: list[str],
    reference: str,
    field: str = "psnr",
) -> str:
    """The best `reference` minus the best other attack among `labels` in row `key`.

    Both are chosen by mean PSNR; the lead is their mean paired difference over the same
    images ± its standard error, followed by the other attack's name (both columns' names
    when the labels are several).
    """
    mine = [c for c in cells if row_key(c) == key and c["label"] in labels]
    refs = [c for c in mine if is_reference(c["attack"], reference)]
    others = [c for c in mine if not is_reference(c["attack"], reference)]
    if not refs or not others:
        return ""
    ref, best = (max(group, key=lambda c: statistics.fmean(c[field])) for group in (refs, others))
    diffs = [a - b for a, b in zip(ref[field], best[field], strict=True)]
    mean, se = mean_se(diffs)
    if len(labels) > 1:
        return f"{signed(mean)} ± {se:.2f} ({ref['requested']} − {best['requested']})"
    return f"{signed(mean)} ± {se:.2f} ({best['attack']})"


def best_other_table(cells: list[dict[str, Any]], reference: str, field: str = "psnr") -> list[str]:
    """Per row, `reference`'s lead over the best other attack of each label, and (with
    several labels) its best over the best other of any label."""
    labels = list(dict.fromkeys(c["label"] for c in cells))
    groups = [[label] for label in labels] + ([labels] if len(labels) > 1 else [])
    named = [label or "all" for label in labels] + (["either"] if len(labels) > 1 else [])
    rows = sorted({row_key(c) for c in cells})
    lines = [
        "| step | defense | " + " | ".join(f"{n}: {reference} − best other" for n in named) + " |",
        "|---|---|" + "---|" * len(groups),
    ]
    for key in rows:
        texts = [best_other_lead(cells, key, group, reference, field) for group in groups]
        lines.append(f"| {row_label(key, None)} | " + " | ".join(texts) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN[=LABEL]")
    parser.add_argument("--reference", default="bayes")
    args = parser.parse_args()
    cells = load_cells(args.runs)
    images = sorted({c["images"] for c in cells})
    print(f"Mean PSNR (dB) ± standard error, clipped reconstructions; images per cell: {images}")
    print("\n".join(["", *psnr_table(cells, "psnr"), ""]))
    if all(c.get("psnr_unclipped") for c in cells):
        gap = max(
            abs(u - p) for c in cells for u, p in zip(c["psnr_unclipped"], c["psnr"], strict=True)
        )
        print(
            f"Unclipped reconstructions (the paper's PSNR); largest change per image {gap:.3g} dB"
        )
        if gap > 0:
            print("\n".join(["", *psnr_table(cells, "psnr_unclipped"), ""]))
            print(f"Lead of {args.reference} over the best other attack, unclipped PSNR")
            print("\n".join(["", *best_other_table(cells, args.reference, "psnr_unclipped"), ""]))
        else:
            print("(every reconstruction lay in [0, 1]: the unclipped table is the one above)\n")
    print(f"Paired lead of {args.reference} over the best other attack of its label (dB, ± SE)")
    print("\n".join(["", *best_other_table(cells, args.reference), ""]))
    if not any(c["label"] for c in cells):
        print(f"Paired lead of {args.reference} (dB, mean over the same images ± standard error)")
        print("\n".join(["", *lead_table(cells, args.reference), ""]))
    tuned = [(row_key(c), c["requested"], c.get("tuned"), c.get("tuning_seconds")) for c in cells]
    seconds = sum(c["seconds"] for c in cells) + sum(t[3] or 0 for t in tuned)
    print(f"<!-- attack and tuning seconds summed over cells: {seconds:.0f} -->")


if __name__ == "__main__":
    main()
