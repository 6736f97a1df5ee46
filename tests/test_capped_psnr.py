"""Where PSNR reaches its cap, tables show the median and the exact fraction beside the mean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from fedsim.attack_matrix.cells import CellResult
from fedsim.attack_matrix.config import load_attack_scenario
from fedsim.attack_matrix.console import print_results
from fedsim.attack_matrix.results import ScenarioCell
from fedsim.attack_matrix.tables import markdown_tables
from fedsim.metrics.capped import summarize_psnr

REPO = Path(__file__).resolve().parents[1]


def test_a_mean_of_the_cap_comes_with_its_median_and_exact_fraction() -> None:
    summary = summarize_psnr([100.0, 100.0, 100.0, 21.0, float("inf")])
    assert (summary.exact, summary.count, summary.median) == (4, 5, 100.0)
    assert summary.mean == pytest.approx(84.2)
    assert summary.text() == "84.20 (median 100.00, 4/5 exact)"
    assert summarize_psnr([20.0, 30.0]).text() == "25.00"  # no cap, no clutter


def _cell(attack: str, psnr: list[float]) -> ScenarioCell:
    result = CellResult(attack, "none", "mnist", "cnn", len(psnr), psnr, [0.5] * len(psnr), 1.0,
                        1.0, ["ok"] * len(psnr))  # fmt: skip
    return ScenarioCell(attack, result, 200, 1)


def test_matrix_table_and_console_show_where_the_cap_is_hit() -> None:
    scenario = load_attack_scenario(REPO / "scenarios" / "paper" / "matrix-mnist.toml")
    cells = [
        _cell("bayes", [100.0, 100.0, 40.0, 20.0]),
        _cell("l2", [40.0, 41.0, 42.0, 43.0]),
        _cell("l1", [100.0] * 4),
        _cell("cos", [30.0] * 4),
    ]
    table = markdown_tables(scenario, ["none"], cells)
    row = next(line for line in table.splitlines() if line.startswith("| none") and "exact" in line)
    assert "65.00 (median 70.00, 2/4 exact)" in row
    assert "**100.00 (median 100.00, 4/4 exact)**" in row
    assert "| 41.50 |" in row and "| 30.00 |" in row
    console = Console(record=True, width=200)
    print_results([c.result for c in cells], console)
    text = console.export_text()
    assert "exact" in text and "2/4" in text and "0/4" in text


def test_leakage_table_shows_the_exact_fraction_of_capped_rounds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "scenario.toml").write_text('name = "precode"\n[federation]\nrounds = 1\n')
    (run / "rounds.jsonl").write_text(json.dumps({"round": 0, "accuracy": 0.1}) + "\n")
    records = [
        {
            "round": 1,
            "client": c,
            "attack": "adapted",
            "defense": "precode",
            "psnr": p,
            "status": "ok",
        }
        for c, p in enumerate([100.0, 100.0, 100.0, 35.0])
    ]
    (run / "leakage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "leakage_table.py"), str(run)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "83.75 (median 100.00, 3/4 exact)" in out


def test_guess_baselines_score_guesses_that_ignore_the_update(tmp_path: Path) -> None:
    """scripts/guess_baselines.py: what a guess from the training split alone scores."""
    import torch

    from fedsim.data import load_dataset
    from fedsim.metrics import psnr

    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'name = "s"\ndefenses = ["none"]\nattacks = ["l2"]\n'
        '[data]\ndataset = "mnist-sample"\nsplit = "test"\nfirst = 3\nimages = 5\n'
    )
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "guess_baselines.py"), str(scenario)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()[2:]}
    assert set(rows) == {"black", "flat", "mean image"}
    scored = load_dataset("mnist-sample", "test").as_float().images[3:8]
    black = float(psnr(torch.zeros_like(scored), scored))
    assert f"| {black:.2f} |" in rows["black"]
