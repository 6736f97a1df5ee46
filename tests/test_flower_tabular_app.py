"""The stock Flower app of `tests/tabular_app.py`, audited by the README's lines.

It runs as its own process (as a user runs it: no pytest logging, so the console is
what a person sees) at batch sizes 1 and 4, two clients, two rounds, local SGD steps.
Every attack must end `ok`; each reconstruction, paired with the client's true rows by
the Hungarian matching of smallest squared error (`fedsim.metrics.rows`), must have a
mean squared error under half that of a random guess of standard-normal rows (the data's
own distribution) matched the same way (averaged over 20 guesses); and the run's summary must be on the console.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedsim.metrics.rows import match_rows
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, read_jsonl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import tabular_app  # noqa: E402 - the app under test, beside this file

ROUNDS = 2
GUESSES = 20


def run_app(out_dir: Path, batch_size: int) -> str:
    """Run the app in a fresh process; its console output (stdout and stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "tabular_app.py"), str(out_dir)]
        + ["--batch-size", str(batch_size), "--rounds", str(ROUNDS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    return console


def true_rows(partition: int, batch_size: int) -> torch.Tensor:
    return tabular_app.load_data(partition, batch_size).dataset.tensors[0]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_stock_tabular_app_leaks_its_rows_to_the_auditor(tmp_path: Path, batch_size: int) -> None:
    console = run_app(tmp_path, batch_size)

    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    assert len(records) == ROUNDS * 2 * 2  # rounds × clients × attacks (bayes, l2)
    assert {r["status"] for r in records} == {"ok"}, [r["message"] for r in records]
    assert {r["client"] for r in records} == {0, 1}  # named by the partition id sent
    assert all(isinstance(r["node"], int) and r["node"] != r["client"] for r in records)

    guess = torch.Generator().manual_seed(7)
    for record in records:
        client, attack = record["client"], record["attack"]
        saved = torch.load(
            tmp_path / RECONSTRUCTIONS_DIR / f"round-{record['round']:04d}-client-{client}.pt"
        )
        truth = true_rows(client, batch_size)
        reconstructed = saved[attack]
        assert reconstructed.shape == truth.shape
        mse = float(match_rows(reconstructed, truth).mse.mean())
        baseline = (
            sum(
                float(match_rows(torch.randn(truth.shape, generator=guess), truth).mse.mean())
                for _ in range(GUESSES)
            )
            / GUESSES
        )
        assert mse < 0.5 * baseline, (record["round"], client, attack, mse, baseline)

    assert "audit round 1: 4 ok" in console and f"audit round {ROUNDS}: 4 ok" in console
    assert f"audit summary: {ROUNDS} rounds audited; attacks: {4 * ROUNDS} ok" in console
    assert "reconstructions and objectives are in" in console
