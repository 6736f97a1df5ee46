"""A run whose runtime fails ends in one line and keeps its records; the pieces that make
it so (the guarded grid, the lost-worker reply, the cluster probe and Ray's arguments);
the server strategies a scenario names and the state they checkpoint. The Ray cluster
itself is exercised in test_ray_cluster.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from flwr.app import Error, Message, MessageType, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp.strategy import FedAdam, FedAvg, FedMedian

from fedsim.checkpoints import Checkpoints
from fedsim.cli import main as cli_main
from fedsim.errors import ConfigError
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.runtimes.faults import FAULTS_ENV
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.flower.runtimes.ray_cluster import ClusterUnreachable, init_args, probe
from fedsim.flower.runtimes.runtime_guard import (
    GuardedGrid,
    RuntimeCrashed,
    RuntimeGuard,
    RuntimeStopped,
    lost_worker,
    one_line,
)
from fedsim.records import ROUNDS_FILE, read_jsonl
from fedsim.scenario.audit import AuditConfig
from fedsim.scenario.config import SimulationConfig
from fedsim.scenario.federation import StrategyConfig
from fedsim.scenario.loading import validate_scenario
from fedsim.strategies.aggregators import (
    StrategyStateUnknown,
    build_inner_strategy,
    has_state,
    restore_strategy_state,
    strategy_state,
)

SCENARIO = {
    "name": "failures",
    "seed": 2,
    "device": "cpu",
    "data": {"dataset": "mnist-sample", "eval_samples": 20},
    "federation": {"clients": 2, "rounds": 3},
    "protocol": {"kind": "fedsgd", "batch_size": 1},
    "attacks": [{"name": "l2"}],
    "audit": {"worker": "thread", "grids": False, "budget": {"iterations": 2}},
    "simulation": {"engine": "inprocess"},
}


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "failures.toml"
    path.write_text(tomli_w.dumps(SCENARIO))
    return path


@pytest.fixture
def failing_round_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process runtime raises when round 2's train messages go out."""
    original = LocalGrid.send_and_receive

    def send_and_receive(
        self: LocalGrid, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        rounds = {int(m.content.config_records["config"].get("server-round", 0)) for m in messages}
        if 2 in rounds:
            raise RuntimeError("the transport broke\nsecond line of detail")
        return original(self, messages, timeout=timeout)

    monkeypatch.setattr(LocalGrid, "send_and_receive", send_and_receive)


def test_a_failing_runtime_ends_the_run_in_one_line_with_the_resume_command(
    scenario_file: Path,
    tmp_path: Path,
    failing_round_2: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert cli_main(["run", str(scenario_file), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"fedsim run: RuntimeError: the transport broke; finished rounds are in {out};"
        f" continue with `fedsim run --resume {out}`"
    ]
    assert "Traceback" not in captured.out + captured.err
    assert [r["round"] for r in read_jsonl(out / ROUNDS_FILE)] == [0, 1]


def test_debug_shows_the_traceback(
    scenario_file: Path,
    tmp_path: Path,
    failing_round_2: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["run", str(scenario_file), "--debug", "--out", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert "Traceback" in captured.out and "send_and_receive" in captured.out
    assert captured.err.count("fedsim run: RuntimeError: the transport broke") == 1


def _claimed_message() -> Message:
    LocalGrid(client_app, 1)  # claims the run and node identity messages need
    return Message(RecordDict(), dst_node_id=7, message_type=MessageType.TRAIN)


def test_a_dead_actor_reply_names_ray_s_reason_and_a_client_s_own_error_does_not() -> None:
    sent = _claimed_message()
    dead = Message(
        Error(
            ErrorCode.UNKNOWN,
            "<class 'ray.exceptions.ActorDiedError'>:<'The actor died unexpectedly before"
            " finishing this task.\n\tclass_name: ClientAppActor'>",
        ),
        reply_to=sent,
    )
    assert lost_worker(dead) == (
        "ActorDiedError: The actor died unexpectedly before finishing this task."
    )
    raised = Message(
        Error(
            ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
            "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'boom'>",
        ),
        reply_to=sent,
    )
    assert lost_worker(raised) is None
    other = Message(Error(ErrorCode.UNKNOWN, "<class 'ValueError'>:<'x'>"), reply_to=sent)
    assert lost_worker(other) is None


class SilentGrid(LocalGrid):
    """A grid whose nodes never answer."""

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return [str(i) for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return []


def test_a_guarded_grid_stops_waiting_when_the_runtime_ends() -> None:
    guard = RuntimeGuard()
    grid = GuardedGrid(SilentGrid(client_app, 2), guard)
    threading.Timer(0.3, guard.stop).start()
    started = time.monotonic()
    with pytest.raises(RuntimeStopped):
        grid.send_and_receive([_claimed_message()], timeout=None)
    assert time.monotonic() - started < 5


def test_one_line_names_the_innermost_cause() -> None:
    try:
        try:
            raise ValueError("When connecting to an existing cluster, num_cpus must not be given.")
        except ValueError as inner:
            raise RuntimeError("Simulation Runtime crashed.") from inner
    except RuntimeError as outer:
        assert one_line(outer) == (
            "ValueError: When connecting to an existing cluster, num_cpus must not be given."
        )
    assert one_line(RuntimeCrashed("the runtime lost a worker")) == "the runtime lost a worker"


def test_ray_is_given_resources_only_for_the_instance_fedsim_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "2:1:exit")
    joined = init_args(SimulationConfig(num_cpus=2, address="10.0.0.5:6379"))
    assert joined["address"] == "10.0.0.5:6379"
    assert "num_cpus" not in joined and "num_gpus" not in joined
    assert joined["runtime_env"]["env_vars"][FAULTS_ENV] == "2:1:exit"
    local = init_args(SimulationConfig(num_cpus=2))
    assert local["address"] == "local" and local["num_cpus"] == 2


def test_the_cluster_probe_refuses_a_dead_address_and_what_is_not_a_ray_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable, match=f"127.0.0.1:{port}: no Ray cluster answers"):
        probe(f"127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - started < 5
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    # 'auto' reads $RAY_ADDRESS (Ray swaps loopback for this machine's address).
    with pytest.raises(ClusterUnreachable, match=f"'auto' \\([^)]*:{port}\\): no Ray cluster"):
        probe("auto", timeout=5)
    with pytest.raises(ClusterUnreachable, match="expected HOST:PORT"):
        probe("head-without-port", timeout=5)


def test_the_cluster_probe_needs_a_ray_head_to_answer_in_time() -> None:
    """A listening socket that never speaks (a TCP connection alone proves nothing)."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ClusterUnreachable, match="no Ray cluster answered within 1 s"):
            probe(f"127.0.0.1:{port}", timeout=1.0)
        assert time.monotonic() - started < 3


def test_run_refuses_a_dead_cluster_address_before_making_the_run_directory(
    scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    out = tmp_path / "run"
    code = cli_main(
        [
            "run",
            str(scenario_file),
            "--set",
            f"simulation.address='127.0.0.1:{port}'",
            "--set",
            "audit.worker='ray'",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and not out.exists()
    assert f"simulation.address 127.0.0.1:{port}: no Ray cluster answers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"name": "fedavg", "eta": 0.1}, "federation.strategy.eta: fedavg takes no options"),
        ({"name": "fedadagrad", "beta_1": 0.5}, "federation.strategy.beta_1: fedadagrad takes"),
        ({"name": "fedadam", "beta_2": 1.0}, "federation.strategy.beta_2"),
        ({"name": "fedprox"}, "federation.strategy.name"),
    ],
)
def test_strategy_options_are_checked(strategy: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"scenario: {field}"):
        validate_scenario({"federation": {"strategy": strategy}})


def test_secure_aggregation_refuses_another_strategy() -> None:
    with pytest.raises(
        ConfigError, match="federation.strategy.name: federation.secure_aggregation runs"
    ):
        validate_scenario(
            {"federation": {"secure_aggregation": True, "strategy": {"name": "fedyogi"}}}
        )


def test_attack_task_resources_belong_to_the_ray_worker() -> None:
    with pytest.raises(ConfigError, match="audit.gpus: per-task resources apply to worker = 'ray'"):
        validate_scenario({"audit": {"gpus": 1}})
    audit = AuditConfig(worker="ray", gpus=0.5)
    assert audit.task_resources(clients_hold_cpus=False) == (1.0, 0.5)
    assert audit.task_resources(clients_hold_cpus=True) == (0.0, 0.5)
    assert AuditConfig(worker="ray", cpus=2).task_resources(clients_hold_cpus=True) == (2.0, 0.0)


def test_fedadam_state_round_trips_exactly_and_unknown_strategies_are_named() -> None:
    config = StrategyConfig(name="fedadam", eta=0.02, tau=1e-4)
    strategy = build_inner_strategy(config, min_train_nodes=1)
    assert isinstance(strategy, FedAdam) and strategy.eta == 0.02 and strategy.tau == 1e-4
    assert has_state(strategy) and not has_state(FedAvg())
    rng = np.random.default_rng(0)
    strategy.m_t = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2).astype(np.float32)}
    strategy.v_t = {"w": rng.random((3, 2)), "b": rng.random(2).astype(np.float32)}
    state = strategy_state(strategy)
    twin = build_inner_strategy(config, min_train_nodes=1)
    restore_strategy_state(twin, state)
    for attribute in ("m_t", "v_t"):
        for key, array in getattr(strategy, attribute).items():
            restored = getattr(twin, attribute)[key]
            assert restored.dtype == array.dtype and np.array_equal(restored, array)
    assert strategy_state(FedAdam()) == {}  # before its first aggregate
    with pytest.raises(StrategyStateUnknown, match="strategy FedMedian: fedsim cannot save"):
        has_state(FedMedian())


def test_strategy_checkpoints_are_pruned_and_kept_with_the_model(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    model = {"w": torch.ones(2)}
    for server_round in (1, 2, 3):
        checkpoints.save(server_round, model, {"m_t/w": torch.full((2,), float(server_round))})
    checkpoints.prune(keep_from=2)
    checkpoints.keep_through(2)
    assert sorted(p.name for p in checkpoints.folder.glob("*.pt")) == [
        "round-0002.pt",
        "strategy-0002.pt",
    ]
    assert torch.equal(checkpoints.load_strategy(2)["m_t/w"], torch.full((2,), 2.0))
    with pytest.raises(ConfigError, match="strategy-0001.pt is missing"):
        checkpoints.load_strategy(1)
