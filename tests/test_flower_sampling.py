"""Seeded client sampling (clients_per_round < clients) and the secure-aggregation option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsim.errors import ConfigError
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.apps.server_app import run_federation
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
from fedsim.scenario import Scenario
from fedsim.scenario.loading import validate_scenario
from fedsim.strategies.sampling import sampled_partitions


def scenario(**federation: object) -> Scenario:
    return validate_scenario(
        {
            "name": "sampling-test",
            "seed": 11,
            "device": "cpu",
            "defenses": ["gaussian:sigma=0.01"],
            "data": {"dataset": "mnist-sample", "eval_samples": 50},
            "federation": {"clients": 5, "rounds": 3, **federation},
            "protocol": {"kind": "fedsgd", "lr": 0.1, "batch_size": 1},
            "attacks": [{"name": "l2"}],
            "audit": {"worker": "inline", "grids": False, "budget": {"iterations": 3}},
        }
    )


def test_sampled_partitions_depend_on_seed_and_round_only() -> None:
    first = sampled_partitions(1, 2, [4, 0, 3, 1, 2], 2)
    assert first == sampled_partitions(1, 2, [0, 1, 2, 3, 4], 2) and first == sorted(first)
    rounds = {tuple(sampled_partitions(1, r, list(range(5)), 2)) for r in range(1, 9)}
    assert len(rounds) > 1


def test_two_runs_with_a_sample_of_clients_give_the_same_records(tmp_path: Path) -> None:
    """Node ids differ between the runs (grid seeds); the clients and the numbers do not."""
    chosen = scenario(clients_per_round=2)
    runs = []
    for name, grid_seed in (("first", 1), ("second", 2)):
        grid = LocalGrid(client_app, chosen.federation.clients, seed=grid_seed)
        run_federation(grid, chosen, RunRecorder(tmp_path / name))
        rounds = read_jsonl(tmp_path / name / ROUNDS_FILE)
        leakage = [
            {k: v for k, v in r.items() if k != "seconds"}
            for r in read_jsonl(tmp_path / name / LEAKAGE_FILE)
        ]
        runs.append(([r["clients"] for r in rounds], [r["loss"] for r in rounds], leakage))
    clients = runs[0][0][1:]
    assert all(len(c) == 2 for c in clients) and len({tuple(c) for c in clients}) > 1
    assert len(runs[0][2]) == 3 * 2
    assert json.dumps(runs[0]) == json.dumps(runs[1])


def test_secure_aggregation_records_client_attacks_as_impossible_and_attacks_the_sum(
    tmp_path: Path,
) -> None:
    chosen = scenario(secure_aggregation=True, rounds=2)
    grid = LocalGrid(client_app, chosen.federation.clients, seed=0)
    run_federation(grid, chosen, RunRecorder(tmp_path / "run"))
    leakage = read_jsonl(tmp_path / "run" / LEAKAGE_FILE)
    hidden = [r for r in leakage if "aggregate_of" not in r]
    assert [(r["round"], r["attack"], r["status"]) for r in hidden] == [
        (1, "l2", "impossible"),
        (2, "l2", "impossible"),
    ]
    summed = [r for r in leakage if "aggregate_of" in r]  # the sum the server saw
    assert [(r["round"], r["attack"]) for r in summed] == [(1, "l2"), (2, "l2")]
    assert all(r["client"] is None and r["psnr"] is None for r in hidden)
    assert all(r["client"] is None and r["psnr"] is not None for r in summed)
    assert "secure aggregation" in hidden[0]["message"]
    assert len(read_jsonl(tmp_path / "run" / ROUNDS_FILE)) == 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"federation": {"clients": 3, "clients_per_round": 1}}, "federation.secure_aggregation"),
        ({"audit": {"clients": {"sample": 1}}}, "audit"),
    ],
)
def test_secure_aggregation_refuses_per_client_settings(changes: dict, field: str) -> None:
    raw: dict = {"federation": {"clients": 3, "secure_aggregation": True}}
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value}
    with pytest.raises(ConfigError, match=f"scenario: {field}"):
        validate_scenario(raw)
