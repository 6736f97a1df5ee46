"""The leakage auditor: transparent to the aggregate, robust to failures, repeatable records.

Everything here runs without Ray: `LocalGrid` answers the strategy's messages with
the real ClientApp in this process, or replies are handed to `aggregate_train` directly.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from attacks.target import AttackTarget, Budget, Reconstruction
from fedsim.auditor import LeakageAuditor
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.apps.server_app import run_federation
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.message_keys import SCENARIO_KEY
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
from fedsim.scenario import Scenario, scenario_to_toml
from fedsim.scenario.build import build_federation
from fedsim.scenario.loading import validate_scenario


class NoisyCopyAttack:
    """A stand-in attack: random images from its `seed` (which the auditor sets per round
    and attack) and, as labels, the argmin of the last-layer bias update."""

    def __init__(self, fail: bool = False, seed: int = 0) -> None:
        self.fail = fail
        self.seed = seed
        self.calls: list[int] = []

    def reconstruct(self, target: AttackTarget, budget: Budget) -> Reconstruction:
        if self.fail:
            raise RuntimeError("optimiser diverged")
        self.calls.append(target.batch_size)
        generator = torch.Generator().manual_seed(self.seed)
        inputs = torch.rand((target.batch_size, *target.input_shape), generator=generator)
        label = int(torch.argmin(target.update[-1]))
        labels = torch.full((target.batch_size,), label, dtype=torch.long)
        return Reconstruction(
            inputs=inputs,
            labels=labels,
            objective=torch.tensor([float(target.update[-1].abs().sum())]),
            best=0,
            iterations=budget.iterations,
            seconds=0.0,
            labels_inferred=True,
        )


def make_scenario(**changes: object) -> Scenario:
    raw: dict = {
        "name": "audit-test",
        "seed": 3,
        "device": "cpu",
        "defenses": ["gaussian:sigma=0.01"],
        "data": {"dataset": "mnist-sample", "eval_samples": 100},
        "model": {"name": "cnn"},
        "federation": {"clients": 3, "rounds": 2},
        "protocol": {"kind": "fedsgd", "lr": 0.1, "batch_size": 2},
        "attacks": [{"name": "stand-in"}],
        "audit": {"worker": "inline", "grids": False, "budget": {"iterations": 3}},
    }
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return validate_scenario(raw)


def fedavg(scenario: Scenario) -> FedAvg:
    clients = scenario.federation.clients
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=clients, min_available_nodes=clients)


def auditor(scenario: Scenario, attack: object | None = None, **kwargs: object) -> LeakageAuditor:
    federation = build_federation(scenario)
    attacks = [(scenario.attacks[0], attack or NoisyCopyAttack())]
    return LeakageAuditor(fedavg(scenario), federation, attacks=attacks, **kwargs)


def train_config(scenario: Scenario) -> ConfigRecord:
    return ConfigRecord({SCENARIO_KEY: scenario_to_toml(scenario)})


def initial_arrays(scenario: Scenario) -> ArrayRecord:
    return ArrayRecord(build_federation(scenario).build_model().state_dict())


def assert_bitwise_equal(a: ArrayRecord, b: ArrayRecord) -> None:
    assert list(a.keys()) == list(b.keys())
    for key in a:
        x, y = a[key].numpy(), b[key].numpy()
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), f"{key} differs"


def test_aggregate_identical_with_and_without_auditor_full_loop() -> None:
    """Same seeds, the whole strategy loop: final parameters equal bit for bit."""
    scenario = make_scenario(federation__rounds=3)
    finals = []
    for strategy in (fedavg(scenario), auditor(scenario)):
        random.seed(0)  # FedAvg samples nodes with Python's random
        grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
        result = strategy.start(
            grid=grid,
            initial_arrays=initial_arrays(scenario),
            num_rounds=3,
            train_config=train_config(scenario),
        )
        if isinstance(strategy, LeakageAuditor):
            strategy.close()
            assert strategy.runner.attacks[0][1].calls  # the auditor did attack
        finals.append(result.arrays)
    assert_bitwise_equal(finals[0], finals[1])


def test_aggregate_train_passes_the_same_replies_through() -> None:
    """Hand the same replies to FedAvg and to the auditor: same aggregate, same messages seen."""
    scenario = make_scenario()
    audited = auditor(scenario)
    seen: list[list[Message]] = []
    inner_aggregate = audited.inner.aggregate_train
    audited.inner.aggregate_train = lambda rnd, replies: (
        seen.append(replies),
        inner_aggregate(rnd, replies),
    )[1]
    plain = fedavg(scenario)
    grid = LocalGrid(client_app, scenario.federation.clients, seed=1)
    arrays = initial_arrays(scenario)
    for server_round in (1, 2):
        messages = audited.configure_train(server_round, arrays, train_config(scenario), grid)
        replies = list(grid.send_and_receive(messages))
        random.Random(server_round).shuffle(replies)
        expected = plain.aggregate_train(server_round, iter(list(replies)))
        got = audited.aggregate_train(server_round, iter(replies))  # an iterator: materialised once
        assert [id(m) for m in seen[-1]] == [id(m) for m in replies]
        assert_bitwise_equal(expected[0], got[0])
        assert dict(expected[1]) == dict(got[1])
        arrays = got[0]
    audited.close()


def _reply(message: Message, partition: int | None, arrays: ArrayRecord) -> Message:
    content = RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"num-examples": 2, "train-loss": 1.0})}
    )
    if partition is not None:
        content["fedsim"] = ConfigRecord({"partition-id": partition})
    return Message(content=content, reply_to=message)


def test_failures_and_foreign_replies_never_fail_the_round() -> None:
    scenario = make_scenario()
    records: list[dict] = []
    audited = auditor(
        scenario, NoisyCopyAttack(fail=True), on_round_audited=lambda r, rec: records.extend(rec)
    )
    grid = LocalGrid(client_app, scenario.federation.clients, seed=1)
    arrays = initial_arrays(scenario)
    messages = list(audited.configure_train(1, arrays, train_config(scenario), grid))
    replies = list(grid.send_and_receive(messages[:2]))
    # a client that is not fedsim's (no partition record) and one whose update has NaNs
    replies.append(_reply(messages[2], None, arrays))
    bad = ArrayRecord({k: Array(np.full_like(v.numpy(), np.nan)) for k, v in arrays.items()})
    (missing,) = {0, 1, 2} - {int(r.content["fedsim"]["partition-id"]) for r in replies[:2]}
    replies.append(_reply(messages[2], missing, bad))
    aggregated, _ = audited.aggregate_train(1, replies)
    audited.close()
    assert aggregated is not None
    statuses = dict((r["client"], r["status"]) for r in records)
    # issue 7: an update with NaNs is rejected (no attack runs on it); the others fail
    assert len(records) == 3 and statuses.pop(missing) == "rejected"
    assert all(status == "failed" for status in statuses.values())
    messages_by_client = {r["client"]: r["message"] for r in records}
    assert "NaN" in messages_by_client.pop(missing)
    assert all("optimiser diverged" in m for m in messages_by_client.values())


def test_schedule_selects_rounds_and_a_seeded_sample_of_clients() -> None:
    scenario = make_scenario(
        federation__rounds=4, audit__rounds={"every": 2}, audit__clients={"sample": 2}
    )
    runs = []
    for _ in range(2):
        records: list[dict] = []
        audited = auditor(scenario, on_round_audited=lambda r, rec, out=records: out.extend(rec))
        random.seed(0)
        grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
        audited.start(
            grid=grid,
            initial_arrays=initial_arrays(scenario),
            num_rounds=4,
            train_config=train_config(scenario),
        )
        audited.close()
        runs.append([(r["round"], r["client"]) for r in records])
    assert runs[0] == runs[1]
    assert sorted({rnd for rnd, _ in runs[0]}) == [1, 3]
    assert len(runs[0]) == 4


def test_threaded_worker_records_everything_before_close() -> None:
    scenario = make_scenario(audit__worker="thread", federation__rounds=3)

    class SlowAttack(NoisyCopyAttack):
        def reconstruct(self, target: AttackTarget, budget: Budget) -> Reconstruction:
            time.sleep(0.05)
            return super().reconstruct(target, budget)

    records: list[dict] = []
    audited = auditor(scenario, SlowAttack(), on_round_audited=lambda r, rec: records.extend(rec))
    random.seed(0)
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    audited.start(
        grid=grid,
        initial_arrays=initial_arrays(scenario),
        num_rounds=3,
        train_config=train_config(scenario),
    )
    audited.close()
    assert sorted((r["round"], r["client"]) for r in records) == [
        (r, c) for r in (1, 2, 3) for c in range(3)
    ]


def _leakage_without_seconds(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in record.items() if k != "seconds"}
        for record in read_jsonl(run_dir / LEAKAGE_FILE)
    ]


@pytest.mark.parametrize("attack", ["stand-in", "l2"])
def test_same_scenario_and_seed_give_the_same_leakage_records(tmp_path: Path, attack: str) -> None:
    """Two runs of one scenario: identical leakage.jsonl except for the seconds spent."""
    scenario = make_scenario(
        attacks=[{"name": attack}],
        audit__worker="thread",
        audit__threat={"labels": "given"},
        protocol={"kind": "fedsgd", "lr": 0.1, "batch_size": 1},
    )
    outputs = []
    for name in ("first", "second"):
        recorder = RunRecorder(tmp_path / name)
        grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
        attacks = [(scenario.attacks[0], NoisyCopyAttack())] if attack == "stand-in" else None
        run_federation(grid, scenario, recorder, attacks=attacks)
        outputs.append(_leakage_without_seconds(tmp_path / name))
        assert len(read_jsonl(tmp_path / name / ROUNDS_FILE)) == scenario.federation.rounds + 1
    assert len(outputs[0]) == scenario.federation.rounds * scenario.federation.clients
    assert all(r["status"] == "ok" and r["psnr"] is not None for r in outputs[0]), outputs[0]
    assert json.dumps(outputs[0]) == json.dumps(outputs[1])


def test_records_name_the_priors_and_untuned_ones_are_printed_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An MLP has no tuned prior weights: the records and the console say so, once per attack."""
    scenario = make_scenario(
        model={"name": "mlp"},
        attacks=[{"name": "cos"}],
        audit__budget={"iterations": 2},
        protocol={"kind": "fedsgd", "lr": 0.1, "batch_size": 1},
    )
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    with caplog.at_level("WARNING", logger="fedsim.auditor.attack_runner"):
        run_federation(grid, scenario, RunRecorder(tmp_path / "run"))
    records = read_jsonl(tmp_path / "run" / LEAKAGE_FILE)
    assert records and all(r["priors"] == {"tv": 0.01} for r in records)
    assert all(r["priors_source"].startswith("untuned") for r in records)
    warnings = [r for r in caplog.records if "untuned" in r.getMessage()]
    assert len(warnings) == 1 and "MLP 1×28×28" in warnings[0].getMessage()


def test_an_attack_over_its_time_budget_is_stopped_recorded_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """10,000 iterations in 0.2 s cannot fit: the loop stops itself, the record says
    `timeout` with the iterations done, and every round is still trained and audited."""
    scenario = make_scenario(
        attacks=[{"name": "l2"}],
        audit__budget={"iterations": 10_000, "seconds": 0.2},
        audit__worker="thread",
    )
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    started = time.perf_counter()
    run_federation(grid, scenario, RunRecorder(tmp_path / "run"))
    assert time.perf_counter() - started < 60
    records = read_jsonl(tmp_path / "run" / LEAKAGE_FILE)
    rounds = read_jsonl(tmp_path / "run" / ROUNDS_FILE)
    assert len(rounds) == scenario.federation.rounds + 1
    assert len(records) == scenario.federation.rounds * scenario.federation.clients
    for record in records:
        assert record["status"] == "timeout" and "time budget" in record["message"]
        assert 0 <= record["iterations"] < 10_000 and record["psnr"] is not None


def test_the_audit_thread_runs_at_a_lower_priority_than_the_federation() -> None:
    import os
    import threading

    from fedsim.auditor.worker import NICENESS, AuditWorker

    if not hasattr(os, "getpriority"):
        pytest.skip("this system has no Unix scheduling priorities")
    worker = AuditWorker(threaded=True)
    seen: dict[str, int] = {}
    worker.submit(
        lambda: seen.update(nice=os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    )
    worker.close()
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["nice"] == min(main + NICENESS, 19)
