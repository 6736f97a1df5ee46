"""Calibrate when a reconstructed feature row counts as recovered (`fedsim.judgement.criteria`).

A row is recovered when its continuous columns are within a factor of the column-mean
guess's error on that row and it gets nearly all its categorical columns right, more
than the most-common-category guess (`row_recovered`). This prints, for several factors, how often rows that
carry no information from the update pass anyway — a real row of another person from
the training split, matched to a private batch the way an attack's output is — and how
often the reconstructions in the given run directories pass (their records must hold
`mse_rows` and the guess, as fedsim's auditor writes them).

    python scripts/row_criterion.py [RUN ...] [--batch-size 4] [--batches 500]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fedsim.data import load_dataset
from fedsim.data.registry import get_dataset
from fedsim.judgement.criteria import row_recovered
from fedsim.metrics.guesses import row_guess
from fedsim.metrics.rows import match_rows

FACTORS = (0.25, 0.5, 0.75, 1.0)


def other_person_rows(batch_size: int, batches: int, seed: int) -> list[tuple]:
    """(mse, categorical, guess mse, guess categorical) of real training rows matched to
    private test-split batches."""
    domain = get_dataset("adult-sample").info.domain()
    train = load_dataset("adult-sample", "train").images
    test = load_dataset("adult-sample", "test").images
    guess = row_guess(train, domain.categorical)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        private = test[rng.choice(len(test), batch_size, replace=False)]
        other = train[rng.choice(len(train), batch_size, replace=False)]
        matched = match_rows(other, private, domain.categorical)
        g = guess.scores(private, torch.zeros(batch_size, dtype=torch.long))
        cats = g.get("categorical_guess_rows") or [None] * batch_size
        for i in range(batch_size):
            cat = None if matched.categorical is None else float(matched.categorical[i])
            out.append((float(matched.mse[i]), cat, g["mse_guess_rows"][i], cats[i]))
    return out


def run_rows(run: Path) -> dict[str, list[tuple]]:
    """Attack → (mse, categorical, guess mse, guess categorical) per row of its records."""
    found: dict[str, list[tuple]] = {}
    for line in (run / "leakage.jsonl").read_text().splitlines():
        record = json.loads(line)
        if not record.get("mse_rows") or not record.get("mse_guess_rows"):
            continue
        n = len(record["mse_rows"])
        cats = record.get("categorical_rows") or [None] * n
        guess_cats = record.get("categorical_guess_rows") or [None] * n
        rows = zip(record["mse_rows"], cats, record["mse_guess_rows"], guess_cats, strict=True)
        found.setdefault(str(record["attack"]), []).extend(rows)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    samples = {"another person's row": other_person_rows(args.batch_size, args.batches, args.seed)}
    for run in args.runs:
        for attack, rows in run_rows(run).items():
            samples[f"{run.name}: {attack}"] = rows
    print("| rows | n | " + " | ".join(f"pass at {f:g}×" for f in FACTORS) + " |")
    print("|---|---:|" + "---:|" * len(FACTORS))
    for name, rows in samples.items():
        shares = [np.mean([row_recovered(*row, factor=f) for row in rows]) for f in FACTORS]
        print(f"| {name} | {len(rows)} | " + " | ".join(f"{100 * s:.1f} %" for s in shares) + " |")


if __name__ == "__main__":
    main()
