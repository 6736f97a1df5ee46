"""scripts/matrix_table.py: two tunings side by side, and the Bayes lead over the best other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(folder: Path, psnr: dict[str, list[float]], unclipped_shift: float = 0.0) -> str:
    cells = [
        {
            "requested": attack,
            "defense": "gaussian:sigma=0.1",
            "state": {"step": 20, "test_accuracy": 0.5},
            "images": len(values),
            "psnr": values,
            "psnr_unclipped": [v - unclipped_shift for v in values],
            "seconds": 1.0,
        }
        for attack, values in psnr.items()
    ]
    folder.mkdir()
    record = {"complete": True, "cells": cells}
    (folder / "results.json").write_text(json.dumps(record), encoding="utf-8")
    return str(folder)


def _table(*runs: str) -> str:
    script = REPO / "scripts" / "matrix_table.py"
    done = subprocess.run([sys.executable, str(script), *runs], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_tunings_pair_and_each_gets_its_bayes_lead_over_the_best_other(tmp_path: Path) -> None:
    narrow = _run(tmp_path / "n", {"bayes": [20.0, 22.0], "l2": [19.0, 20.0], "l1": [18.0, 18.0]})
    paper = _run(tmp_path / "p", {"bayes": [21.0, 22.0], "l2": [21.0, 23.0]})
    out = _table(f"{narrow}=narrow", f"{paper}=paper")
    header = next(line for line in out.splitlines() if line.startswith("| step (accuracy)"))
    assert "bayes (narrow) | l2 (narrow) | l1 (narrow) | bayes (paper) | l2 (paper)" in header
    row = next(line for line in out.splitlines() if line.startswith("| 20 (50%)"))
    assert "**22.00 ± 1.00**" in row and "| 18.00 ± 0.00 |" in row  # best bold, others not
    lead = next(line for line in out.splitlines() if line.startswith("| 20 |"))
    # narrow: bayes − l2 = [1, 2]; paper: [0, −1]; either: the better Bayes against l2 (paper)
    assert "| +1.50 ± 0.50 (l2) | -0.50 ± 0.50 (l2) |" in lead
    assert "-0.50 ± 0.50 (bayes (paper) − l2 (paper))" in lead
    assert "the unclipped table is the one above" in out


def test_unclipped_psnr_gets_its_own_table_where_it_differs(tmp_path: Path) -> None:
    run = _run(tmp_path / "u", {"bayes:box=false": [20.0, 21.0], "l2": [19.0, 19.0]}, 0.5)
    out = _table(run)
    assert "largest change per image 0.5 dB" in out
    assert "**20.00 ± 0.50**" in out  # bayes's unclipped mean, in the unclipped table
    assert "+1.50 ± 0.50 (l2)" in out  # box=false still counts as the reference bayes
