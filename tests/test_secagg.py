"""Secure aggregation with Flower's SecAgg+: the protocol runs, the aggregate is FedAvg's
up to the quantisation step, and the auditor records per-client attacks as impossible."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
from flwr.app import Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from fedsim.cli import main as cli_main
from fedsim.errors import ConfigError
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.apps.secagg import quantisation_step
from fedsim.flower.apps.server_app import run_federation
from fedsim.flower.runtimes.faults import FAULTS_ENV
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
from fedsim.scenario import Scenario
from fedsim.scenario.acts import refuse_ignored
from fedsim.scenario.loading import validate_scenario

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "scenarios" / "quickstart.toml"


def scenario(secure: bool = True, rounds: int = 1, **changes: dict) -> Scenario:
    raw: dict = {
        "name": "secagg-test",
        "seed": 3,
        "device": "cpu",
        "defenses": ["gaussian:sigma=0.01"],
        "data": {"dataset": "mnist-sample", "eval_samples": 50},
        "federation": {"clients": 4, "rounds": rounds, "secure_aggregation": secure},
        "protocol": {"kind": "fedsgd", "lr": 0.1, "batch_size": 2},
        "attacks": [{"name": "l2"}, {"name": "bayes"}],
        "audit": {"worker": "inline", "grids": False, "budget": {"iterations": 2}},
    }
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    return validate_scenario(raw)


class WatchedGrid(LocalGrid):
    """A LocalGrid that keeps every reply the server receives."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.replies: list[Message] = []

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = list(super().send_and_receive(messages, timeout=timeout))
        self.replies.extend(replies)
        return replies


def final_weights(chosen: Scenario, out: Path, grid_seed: int = 0) -> dict[str, torch.Tensor]:
    recorder = RunRecorder(out)
    run_federation(
        LocalGrid(client_app, chosen.federation.clients, seed=grid_seed), chosen, recorder
    )
    return recorder.checkpoints.load(chosen.federation.rounds)


def test_secagg_rounds_complete_and_only_the_aggregate_is_attacked(tmp_path: Path) -> None:
    chosen = scenario(rounds=3)
    grid = WatchedGrid(client_app, 4, seed=1)
    run_federation(grid, chosen, RunRecorder(tmp_path / "run"))

    rounds = read_jsonl(tmp_path / "run" / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert all(r["clients"] == [0, 1, 2, 3] and r["failures"] == 0 for r in rounds[1:])
    assert rounds[3]["loss"] < rounds[0]["loss"]  # it trains
    leakage = read_jsonl(tmp_path / "run" / LEAKAGE_FILE)
    hidden = [r for r in leakage if "aggregate_of" not in r]
    assert sorted((r["round"], r["attack"]) for r in hidden) == [
        (n, a) for n in (1, 2, 3) for a in ("bayes", "l2")
    ]
    assert {r["status"] for r in hidden} == {"impossible"}
    assert all(r["client"] is None and r["psnr"] is None for r in hidden)
    # The sum the server saw, attacked as one batch of every client's images: l2 runs and
    # is scored; Bayes is refused, since the summed noise's likelihood is not stated.
    summed = {(r["round"], r["attack"]): r for r in leakage if "aggregate_of" in r}
    assert sorted(summed) == [(n, a) for n in (1, 2, 3) for a in ("bayes", "l2")]
    for (_, attack), record in summed.items():
        assert record["aggregate_of"] == [0, 1, 2, 3] and record["batch_size"] == 4 * 2
        assert record["client"] is None
        if attack == "l2":
            assert record["status"] == "ok" and len(record["ssim_images"]) == 8
        else:
            assert record["status"] == "refused" and "not stated" in record["message"]

    # What reached the server: no weights in the clear, 4 masked vectors per round.
    train = [m for m in grid.replies if RECORD_KEY_CONFIGS in m.content.config_records]
    assert all(not any(len(a) for a in m.content.array_records.values()) for m in train)
    masked = [
        m for m in train if Key.MASKED_PARAMETERS in m.content.config_records[RECORD_KEY_CONFIGS]
    ]
    assert len(masked) == 3 * 4


COARSE = 2**12
"""A quantisation grid coarse enough that its step shows in the weights."""


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return final_weights(scenario(secure=False), tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def coarse_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    chosen = scenario(federation={"secagg": {"quantization_range": COARSE}})
    return final_weights(chosen, tmp_path_factory.mktemp("coarse"), grid_seed=1)


@pytest.mark.parametrize("quantization_range", [2**22, COARSE])
def test_secagg_aggregate_is_fedavg_up_to_the_quantisation_step(
    tmp_path: Path,
    quantization_range: int,
    plain_weights: dict[str, torch.Tensor],
    coarse_weights: dict[str, torch.Tensor],
) -> None:
    """|SecAgg+ − FedAvg| < 2·clipping_range / quantization_range per coordinate (+ float32)."""
    secure = scenario(federation={"secagg": {"quantization_range": quantization_range}})
    got = coarse_weights if quantization_range == COARSE else final_weights(secure, tmp_path)
    step = quantisation_step(secure)
    worst = max(float((got[k] - plain_weights[k]).abs().max()) for k in plain_weights)
    assert worst <= step + 1e-6
    if quantization_range == COARSE:
        assert worst > step / 100  # the coarse grid shows: SecAgg+ really quantised
    assert all(got[k].dtype == plain_weights[k].dtype for k in plain_weights)


def test_secagg_aggregate_repeats_with_the_seed(
    tmp_path: Path, coarse_weights: dict[str, torch.Tensor]
) -> None:
    """Masks cancel exactly and the stochastic rounding is seeded: two runs (other node
    ids, other keys), the same weights."""
    chosen = scenario(federation={"secagg": {"quantization_range": COARSE}})
    again = final_weights(chosen, tmp_path, grid_seed=2)
    assert all(torch.equal(coarse_weights[k], again[k]) for k in again)


def test_secagg_survives_a_client_dropping_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client 2 fails after the key exchange; its masks are removed with its neighbours' shares."""
    monkeypatch.setenv(FAULTS_ENV, "1:2:raise")
    chosen = scenario(rounds=2)
    run_federation(LocalGrid(client_app, 4, seed=0), chosen, RunRecorder(tmp_path / "run"))
    rounds = read_jsonl(tmp_path / "run" / ROUNDS_FILE)
    assert rounds[1]["clients"] == [0, 1, 3] and rounds[1]["failures"] == 1
    assert rounds[2]["clients"] == [0, 1, 2, 3]
    assert all(r["loss"] == r["loss"] for r in rounds)  # no NaN


@pytest.mark.parametrize(
    ("federation", "field"),
    [
        ({"clients": 3, "clients_per_round": 1}, "federation.secure_aggregation"),
        ({"secagg": {"num_shares": 2}}, "federation.secagg.num_shares"),
        ({"secagg": {"num_shares": 5}}, "federation.secagg.num_shares"),
        (
            {"secagg": {"num_shares": 3, "reconstruction_threshold": 3}},
            "federation.secagg.reconstruction_threshold",
        ),
        (
            {"clients": 2, "secagg": {"reconstruction_threshold": 3}},
            "federation.secagg.reconstruction_threshold",
        ),
        (
            {"secagg": {"reconstruction_threshold": 1.5}},
            "federation.secagg.reconstruction_threshold",
        ),
        ({"secagg": {"modulus_range": 3000}}, "federation.secagg.modulus_range"),
        ({"secagg": {"quantization_range": 2**30}}, "federation.secagg.modulus_range"),
    ],
)
def test_secagg_refuses_settings_it_cannot_run(federation: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"scenario: {field}"):
        scenario(federation=federation)


def test_secagg_refuses_an_audited_client_sample() -> None:
    with pytest.raises(ConfigError, match="scenario: audit"):
        scenario(audit={"clients": {"sample": 1}})


def test_secagg_settings_are_checked_only_when_it_is_on() -> None:
    off = scenario(secure=False, federation={"secagg": {"num_shares": 9}})
    scenario(federation={"clients": 2})  # the smallest secure federation
    # valid, but they would do nothing: a scenario file giving them is refused
    with pytest.raises(ConfigError, match="federation.secagg.num_shares configures SecAgg"):
        refuse_ignored(off)


@pytest.mark.slow
def test_fedsim_run_quickstart_with_secure_aggregation(tmp_path: Path) -> None:
    """The quickstart on Flower's simulation engine (Ray) with SecAgg+, two rounds."""
    out = tmp_path / "run"
    code = cli_main(
        [
            "run",
            str(QUICKSTART),
            "--set",
            "federation.secure_aggregation=true",
            "--set",
            "federation.clients=4",
            "--set",
            "audit.clients={}",  # secure aggregation hides individual updates: no sample
            "--set",
            "simulation.engine='ray'",
            "--set",
            "federation.rounds=2",
            "--set",
            "data.eval_samples=100",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rounds = read_jsonl(out / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert all(r["clients"] == [0, 1, 2, 3] for r in rounds[1:])
    leakage = read_jsonl(out / LEAKAGE_FILE)
    assert sorted((r["round"], r["attack"], r["status"]) for r in leakage) == [
        (n, "bayes", status) for n in (1, 2) for status in ("impossible", "refused")
    ]
