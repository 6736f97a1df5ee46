"""A scenario's clients train with the optimiser it declares, and the auditor's attacks
model exactly that training; without one, nothing changes (plain SGD)."""

from __future__ import annotations

import pytest
import torch

from attacks.local_training import client_options
from attacks.updates import build_updates
from fedsim.flower.apps.local_update import local_update, recover_update
from fedsim.scenario.build import build_federation
from fedsim.scenario.loading import scenario_to_toml, validate_scenario

PROTOCOL = {"kind": "fedavg", "lr": 0.05, "batch_size": 4, "local_batch_size": 2, "local_epochs": 2}


def _federation(**optimizer: object):
    scenario = validate_scenario(
        {
            "seed": 5,
            "federation": {"clients": 2, "rounds": 1},
            "protocol": {**PROTOCOL, **optimizer},
            "model": {"name": "mlp"},
        }
    )
    return build_federation(scenario)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
        {"optimizer": "adamw", "betas": [0.8, 0.99]},
    ],
    ids=["nesterov", "adamw"],
)
def test_simulated_clients_train_as_the_attack_models_them(optimizer: dict) -> None:
    federation = _federation(**optimizer)
    protocol = federation.attack_protocol()
    assert protocol.optimizer.name == optimizer["optimizer"] and not protocol.plain_sgd
    model = federation.build_model().double()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    sent = local_update(federation, model, client=1, server_round=2).state
    names = [name for name, _ in model.named_parameters()]
    real = recover_update(federation, start, sent, names)
    x, y = federation.client_batch(1, 2)
    fresh = federation.build_model().double()
    fresh.load_state_dict(start)
    updates = build_updates(fresh, 4, True, protocol=protocol, unroll=True)
    modelled = [u[0] for u in updates(x.double()[None], y[None]).updates]
    scale = max(float(u.abs().max()) for u in real)
    worst = max(float((m - r).abs().max()) for m, r in zip(modelled, real, strict=True))
    assert worst <= 1e-9 * scale, f"{worst:.3g} against {scale:.3g}"


def test_without_an_optimiser_clients_take_plain_sgd_steps_as_before() -> None:
    federation = _federation()
    protocol = federation.attack_protocol()
    assert protocol.plain_sgd
    assert client_options(protocol)["optimizer"] is None  # θ − lr·g, bit for bit as before
    assert "optimizer" not in scenario_to_toml(federation.scenario)
    assert "momentum" not in scenario_to_toml(federation.scenario)


def test_a_declared_optimiser_is_in_the_resolved_scenario() -> None:
    federation = _federation(optimizer="adam", eps=1e-6)
    text = scenario_to_toml(federation.scenario)
    assert 'optimizer = "adam"' in text and "eps = 1e-06" in text
    assert federation.attack_protocol().optimizer.eps == 1e-6
    assert torch.optim.Adam is type(
        client_options(federation.attack_protocol())["optimizer"]([torch.zeros(1)])
    )
