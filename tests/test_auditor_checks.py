"""The auditor in deployment mode refuses a set-up it cannot run before round 1, and says
at run time what it could not attack and where the replies do not fit what it was told."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from fedsim.auditor import LeakageAuditor
from fedsim.errors import ConfigError
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.records import LEAKAGE_FILE, read_jsonl

FEATURES, ROWS, NODES = 5, 2, 2


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Linear(8, 2))


def client_app(steps: int, lr: float = 0.1, num_examples: int = ROWS) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        model = received(msg)
        generator = torch.Generator().manual_seed(int(context.node_config["partition-id"]))
        x = torch.randn(ROWS, FEATURES, generator=generator)
        y = torch.tensor([0, 1])
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        return reply(msg, model, num_examples)

    return app


def received(msg: Message) -> nn.Module:
    """The global model a client was sent."""
    model = net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return model


def reply(msg: Message, model: nn.Module, num_examples: int) -> Message:
    """A client's reply: its trained weights and the number of examples it trained on."""
    metrics = MetricRecord({"num-examples": num_examples})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


def auditor(out_dir: Path | None = None, **changes: object) -> LeakageAuditor:
    setup: dict = {
        "input_shape": (FEATURES,),
        "num_classes": 2,
        "batch_size": ROWS,
        "domain": "features",
        "protocol": "fedavg",
        "lr": 0.1,
        "local_steps": 1,
        "attacks": ["l2"],
        "audit": {"worker": "inline", "budget": {"iterations": 2}},
        **changes,
    }
    return LeakageAuditor.for_model(
        FedAvg(fraction_evaluate=0.0, min_available_nodes=NODES), net, out_dir=out_dir, **setup
    )


def run(strategy: LeakageAuditor, app: ClientApp, rounds: int = 2) -> None:
    torch.set_num_threads(1)
    strategy.start(
        grid=LocalGrid(app, num_nodes=NODES, seed=0),
        initial_arrays=ArrayRecord(net().state_dict()),
        num_rounds=rounds,
    )
    strategy.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_shape": (7,)}, "input_shape: the model cannot take a batch of shape \\(2, 7\\)"),
        (
            {"num_classes": 3},
            "num_classes: the model maps a batch of shape \\(2, 5\\) to \\(2, 2\\)",
        ),
        ({"local_steps": None}, "local_steps: required with protocol 'fedavg'"),
        ({"domain": "pixels"}, "domain: expected one of image, features"),
        ({"protocol": "fedprox"}, "protocol: expected 'fedavg' or 'fedsgd'"),
    ],
)
def test_a_wrong_setup_fails_when_the_auditor_is_built(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        auditor(**changes)


def test_an_image_prior_on_a_one_pixel_high_image_fails_before_round_one() -> None:
    """The first failure the issue saw at run time: TV on (1, 1, 10) gave NaN objectives."""

    def flat() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(10, 2))

    with pytest.raises(ConfigError) as caught:
        LeakageAuditor.for_model(
            FedAvg(),
            flat,
            input_shape=(1, 1, 10),
            num_classes=2,
            batch_size=1,
            domain="image",
            protocol="fedsgd",
            lr=0.1,
            attacks=["bayes"],
            defense="gaussian:sigma=0.01",
        )
    assert str(caught.value) == (
        "attack 'bayes' cannot run here: AttackError: prior 'tv': needs images (channels, "
        "height, width) with height and width ≥ 2, got input shape (1, 1, 10)"
    )


def test_replies_that_do_not_fit_the_declared_protocol_are_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedsim.auditor")
    app = client_app(steps=200, lr=0.5, num_examples=64)  # far more than declared
    run(auditor(tmp_path, defense=None), app, rounds=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("reports num-examples=64" in w and "batch_size=2" in w for w in warnings) == 1
    assert sum("update norm" in w and "check local_steps" in w for w in warnings) == 1
    assert any(
        "audit summary: 2 rounds audited; attacks: 4 ok" in r.getMessage() for r in caplog.records
    )
    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    assert {r["seconds_shared_by"] for r in records} == {NODES}  # one batched call per round


def test_declared_noise_that_never_came_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fedsim.auditor")
    run(auditor(defense="gaussian:sigma=0.1"), client_app(steps=1), rounds=1)
    assert any(
        "below the noise std 0.1 of the declared defense" in r.getMessage() for r in caplog.records
    )


def test_a_round_where_every_attack_failed_is_a_warning_with_the_reason(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="fedsim.auditor")
    strategy = auditor()
    attack = strategy.runner.attacks[0][1]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("optimiser diverged")

    monkeypatch.setattr(type(attack), "reconstruct_many", broken)  # after the preflight
    run(strategy, client_app(steps=1), rounds=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "audit round 1: 2 failed; nothing was attacked: RuntimeError: optimiser diverged" in w
        for w in warnings
    )
    assert "not attacked: RuntimeError: optimiser diverged" in warnings
