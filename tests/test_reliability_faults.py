"""Faults in the federation: clients that raise, time out or send unusable updates, and
attacks that raise, run out of memory or overrun their budget. The run goes on, the
aggregate is never poisoned, and every fault is a record with a status and a reason.

Client faults come from the `FEDSIM_FAULTS` test switch (`fedsim.flower.runtimes.faults`);
attack faults from stand-in attack objects. Everything runs in process (no Ray).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from flwr.app import ConfigRecord

from attacks.target import AttackTarget, Budget, Reconstruction
from fedsim.errors import ConfigError
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.apps.server_app import run_federation
from fedsim.flower.runtimes.faults import FAULTS_ENV, parse_faults
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.message_keys import SCENARIO_KEY
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
from fedsim.scenario import Scenario, scenario_to_toml
from fedsim.scenario.loading import validate_scenario


def train_config(chosen: Scenario) -> ConfigRecord:
    return ConfigRecord({SCENARIO_KEY: scenario_to_toml(chosen)})


class StandIn:
    """A cheap attack: random images; `fault` makes it raise, run out of memory or dawdle."""

    def __init__(self, fault: str | None = None, seed: int = 0) -> None:
        self.fault = fault
        self.seed = seed
        self.calls: list[int] = []  # shared with the seeded copies the auditor makes

    def _one(self, target: AttackTarget, budget: Budget) -> Reconstruction:
        self.calls.append(target.batch_size)
        if self.fault == "raise":
            raise ValueError("objective diverged")
        if self.fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.fault == "runtime-oom":
            raise RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate: out of memory")
        if self.fault == "slow":
            time.sleep(1.05)
        generator = torch.Generator().manual_seed(self.seed)
        return Reconstruction(
            inputs=torch.rand((target.batch_size, *target.input_shape), generator=generator),
            labels=torch.zeros(target.batch_size, dtype=torch.long),
            objective=torch.tensor([1.0]),
            best=0,
            iterations=budget.iterations,
            seconds=0.0,
            labels_inferred=True,
        )

    def reconstruct(self, target: AttackTarget, budget: Budget) -> Reconstruction:
        return self._one(target, budget)


class BatchedOOM(StandIn):
    """Runs out of memory on the batched call only; one target at a time works."""

    def reconstruct_many(self, targets: list, budget: Budget) -> list:
        raise torch.OutOfMemoryError("CUDA out of memory (batched)")


def scenario(**federation: object) -> Scenario:
    return validate_scenario(
        {
            "name": "faults",
            "seed": 2,
            "device": "cpu",
            "data": {"dataset": "mnist-sample", "eval_samples": 50},
            "federation": {"clients": 4, "rounds": 2, **federation},
            "protocol": {"kind": "fedsgd", "batch_size": 1},
            "attacks": [{"name": "stand-in"}],
            "audit": {"worker": "inline", "grids": False, "budget": {"iterations": 1}},
            "simulation": {"engine": "inprocess"},
        }
    )


def run(scenario: Scenario, out: Path, attacks: list) -> tuple[list[dict], list[dict]]:
    recorder = RunRecorder(out)
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    run_federation(grid, scenario, recorder, torch_threads=0, attacks=attacks)
    return read_jsonl(out / ROUNDS_FILE), read_jsonl(out / LEAKAGE_FILE)


def test_faulty_clients_are_rejected_and_never_poison_the_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "1:0:raise;1:1:nan;1:2:shape;2:0:inf;2:1:weight;2:2:sleep=1.2")
    chosen = scenario(round_timeout=1.0)
    attack = StandIn()
    rounds, leakage = run(chosen, tmp_path / "run", [(chosen.attacks[0], attack)])

    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert all(math.isfinite(r["loss"]) for r in rounds), rounds  # NaN/inf never averaged
    assert (rounds[1]["failures"], rounds[1]["rejected"], rounds[1]["missing"]) == (1, 2, 0)
    assert (rounds[2]["failures"], rounds[2]["rejected"], rounds[2]["missing"]) == (0, 2, 1)
    assert len(attack.calls) == 2  # only client 3, the healthy one, in each round

    reasons = {
        (r["round"], r["client"]): r["message"] for r in leakage if r["status"] == "rejected"
    }
    assert len(reasons) == 6
    assert "InjectedFault" in reasons[(1, None)]  # a failed node never said which client it is
    assert "NaN or infinite" in reasons[(1, 1)]
    assert "shape" in reasons[(1, 2)]
    assert "NaN or infinite" in reasons[(2, 0)]
    assert "num-examples" in reasons[(2, 1)]
    assert "timeout" in reasons[(2, 2)]  # learnt from its round-1 reply
    ok = [(r["round"], r["client"]) for r in leakage if r["status"] == "ok"]
    assert ok == [(1, 3), (2, 3)]


def test_failing_attacks_are_recorded_and_the_run_continues(tmp_path: Path) -> None:
    raw = scenario().model_dump(mode="json")
    raw["attacks"] = [
        {"name": "stand-in", "label": label}
        for label in ("raises", "oom", "runtime-oom", "slow", "batched", "fine")
    ]
    raw["audit"]["budget"]["seconds"] = 0.01
    raw["audit"]["clients"] = {"sample": 1}
    chosen = validate_scenario(raw)
    objects = [
        StandIn("raise"),
        StandIn("oom"),
        StandIn("runtime-oom"),
        StandIn("slow"),
        BatchedOOM(),
        StandIn(),
    ]
    rounds, leakage = run(chosen, tmp_path / "run", list(zip(chosen.attacks, objects, strict=True)))

    assert [r["round"] for r in rounds] == [0, 1, 2]
    status = {}
    for record in leakage:
        status.setdefault(record["attack"], set()).add(record["status"])
    assert status == {
        "raises": {"failed"},
        "oom": {"oom"},
        "runtime-oom": {"oom"},
        "slow": {"timeout"},
        "batched": {"ok"},
        "fine": {"ok"},
    }
    messages = {r["attack"]: r["message"] for r in leakage}
    assert "objective diverged" in messages["raises"]
    assert "OutOfMemoryError" in messages["oom"]
    assert "time budget" in messages["slow"]
    assert len(leakage) == 2 * 6  # two rounds, one sampled client, six attacks


@pytest.mark.parametrize("text", ["1:0", "x:0:raise", "1:0:explode", "1:0:sleep", "1:0:nan=3"])
def test_a_malformed_fault_plan_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=FAULTS_ENV):
        parse_faults(text)


def test_fault_plan_wildcards() -> None:
    (fault,) = parse_faults("*:3:sleep=0.5")
    assert fault.applies(7, 3) and not fault.applies(7, 2) and fault.seconds == 0.5


def test_auditor_holds_no_round_state_between_rounds() -> None:
    from flwr.serverapp.strategy import FedAvg

    from fedsim.auditor import LeakageAuditor
    from fedsim.scenario.build import build_federation
    from fedsim.scenario.loading import validate_scenario as validate
    from fedsim.strategies.reply_filter import ReplyFilter

    chosen = validate({**scenario().model_dump(mode="json"), "audit": {"worker": "thread"}})
    federation = build_federation(chosen)
    filtered = ReplyFilter(FedAvg(fraction_evaluate=0.0, min_available_nodes=4))
    auditor = LeakageAuditor(filtered, federation, attacks=[(chosen.attacks[0], StandIn())])
    seen: list[tuple[int, int]] = []

    def evaluate(server_round: int, arrays: object) -> None:
        seen.append((len(auditor._start), auditor.worker.pending))
        return None

    from flwr.app import ArrayRecord

    auditor.start(
        grid=LocalGrid(client_app, 4, seed=1),
        initial_arrays=ArrayRecord(federation.build_model().state_dict()),
        num_rounds=3,
        train_config=train_config(chosen),
        evaluate_fn=evaluate,
    )
    auditor.close()
    assert all(start == 0 and pending <= auditor.worker.max_pending for start, pending in seen)
    assert auditor._start == {} and auditor._sent_to == {} and auditor.worker.pending == 0
    assert filtered._expected == {}
