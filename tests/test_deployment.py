"""Flower's deployment engine on loopback: SuperLink + two SuperNodes + `flwr run`, with the auditor.

The ServerApp runs in a process the SuperLink starts, so the run directory checked
here was written by that process. On failure the message carries every process's log.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedsim.flower.runtimes.deployment import run_on_loopback
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, SCENARIO_FILE, read_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_supernodes_complete_audited_rounds(tmp_path: Path) -> None:
    rounds = 2
    run = run_on_loopback(
        REPO,
        tmp_path / "run",
        overrides=[
            f"federation.rounds={rounds}",
            "audit.budget.iterations=3",
            "data.eval_samples=100",
            "audit.clients={}",  # every supernode's update is audited
        ],
        supernodes=2,
        timeout=90,
        work_dir=tmp_path / "deployment",
    )
    resolved = tomllib.loads((run.run_dir / SCENARIO_FILE).read_text())
    assert resolved["federation"]["clients"] == 2
    records = read_jsonl(run.run_dir / ROUNDS_FILE)
    assert [r["round"] for r in records] == list(range(rounds + 1))
    assert all(r["clients"] == [0, 1] for r in records[1:])
    leakage = read_jsonl(run.run_dir / LEAKAGE_FILE)
    attacks = [a["name"] for a in resolved["attacks"]]
    assert sorted((r["round"], r["client"], r["attack"]) for r in leakage) == sorted(
        (n, c, a) for n in range(1, rounds + 1) for c in (0, 1) for a in attacks
    )
    assert all(r["status"] in ("ok", "timeout") and r["psnr"] is not None for r in leakage)
    assert len(run.round_seconds) == rounds
