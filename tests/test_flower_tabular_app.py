"""The stock Flower app of `tests/tabular_app.py`, audited by the README's lines.

It runs as its own process (as a user runs it: no pytest logging, so the console is
what a person sees) at batch sizes 1 and 4, two clients, two rounds, local SGD steps.
Every attack must end `ok`. Reconstructions are paired with the client's true rows by the
Hungarian matching of smallest squared error (`fedsim.metrics.rows`) and compared with a
random guess of standard-normal rows (the data's own distribution) matched the same way
(averaged over 20 guesses): on every update the best attack's mean squared error, and
for each attack its mean over the run, must be under half the guess's. The run's
summary must be on the console.
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
    mse: dict[tuple[int, int], dict[str, float]] = {}
    baseline: dict[tuple[int, int], float] = {}
    for record in records:
        key, attack = (record["round"], record["client"]), record["attack"]
        saved = torch.load(
            tmp_path / RECONSTRUCTIONS_DIR / f"round-{key[0]:04d}-client-{key[1]}.pt"
        )
        truth = true_rows(key[1], batch_size)
        assert saved[attack].shape == truth.shape
        mse.setdefault(key, {})[attack] = float(match_rows(saved[attack], truth).mse.mean())
        baseline[key] = (
            sum(
                float(match_rows(torch.randn(truth.shape, generator=guess), truth).mse.mean())
                for _ in range(GUESSES)
            )
            / GUESSES
        )
    for key, by_attack in mse.items():  # what the audit found: the best attack on each update
        assert min(by_attack.values()) < 0.5 * baseline[key], (key, by_attack, baseline[key])
    mean_baseline = sum(baseline.values()) / len(baseline)
    for attack in ("bayes", "l2"):  # and each attack, over the run
        mean = sum(by_attack[attack] for by_attack in mse.values()) / len(mse)
        assert mean < 0.5 * mean_baseline, (attack, mean, mean_baseline)
    print(f"B={batch_size}: mean MSE {mse}, random guess {mean_baseline:.3f}")

    assert "audit round 1: 4 ok" in console and f"audit round {ROUNDS}: 4 ok" in console
    assert f"audit summary: {ROUNDS} rounds audited; attacks: {4 * ROUNDS} ok" in console
    assert "reconstructions and objectives are in" in console
