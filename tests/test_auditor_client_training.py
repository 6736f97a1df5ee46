"""`for_model` takes the clients' training as they build it: their torch optimiser, a
learning-rate schedule, their DataLoader's shuffle and drop_last; what it cannot model it
refuses in one line, and a shuffled order it cannot know is recorded as an approximation."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import test_auditor_checks as checks
import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from test_auditor_checks import FEATURES, NODES, net
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsim.auditor import LeakageAuditor
from fedsim.errors import ConfigError
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.records import LEAKAGE_FILE, read_jsonl

ROWS, CHUNK, EPOCHS = 8, 4, 2
MOMENTUM = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)
CLIENTS = {
    "batch_size": ROWS,
    "local_steps": EPOCHS * ROWS // CHUNK,
    "local_batch_size": CHUNK,
    "optimizer": MOMENTUM,
    "shuffle": True,
}
"""How the client below trains, as `for_model` is told (lr 0.1 is the optimiser's)."""


def shuffling_client() -> ClientApp:
    """Trains as Flower's quickstart does: momentum, a shuffled DataLoader, local epochs."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        model = checks.received(msg)
        generator = torch.Generator().manual_seed(int(context.node_config["partition-id"]))
        x = torch.randn(ROWS, FEATURES, generator=generator)
        y = torch.randint(0, 2, (ROWS,), generator=generator)
        loader = DataLoader(TensorDataset(x, y), batch_size=CHUNK, shuffle=True)
        optimizer = MOMENTUM(model.parameters())
        for _ in range(EPOCHS):
            for xb, yb in loader:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                optimizer.step()
        return checks.reply(msg, model, ROWS)

    return app


def auditor(out_dir: Path | None = None, **changes: object) -> LeakageAuditor:
    return checks.auditor(out_dir, **{**CLIENTS, **changes})


def test_the_clients_optimiser_is_modelled_and_shuffling_recorded(tmp_path: Path) -> None:
    strategy = auditor(tmp_path)
    protocol = strategy.setup.protocol
    assert protocol.optimizer.momentum == 0.9 and protocol.local_lr == 0.1
    assert protocol.shuffled and protocol.last_batch == "short"
    torch.set_num_threads(1)
    strategy.start(
        grid=LocalGrid(shuffling_client(), num_nodes=NODES, seed=0),
        initial_arrays=ArrayRecord(net().state_dict()),
        num_rounds=1,
    )
    strategy.close()
    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    assert len(records) == NODES and all(r["status"] == "ok" for r in records)
    for record in records:
        assert (
            "batch order unknown (shuffled): modelled as consecutive mini-batches"
            in (record["approximations"])
        )
        counts = record["label_counts"]
        assert sum(counts["recovered"].values()) == ROWS
        assert counts["true"] is None and counts["accuracy"] is None  # no ground truth here


def test_a_scheduler_becomes_the_learning_rate_of_every_step() -> None:
    schedule = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.1)
    protocol = auditor(lr_schedule=schedule, shuffle=False).setup.protocol
    assert protocol.lr_schedule == pytest.approx((0.1, 0.1, 0.01, 0.01))
    assert not protocol.shuffled


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"optimizer": functools.partial(torch.optim.RMSprop, lr=0.1)},
            "optimizer: RMSprop is not modelled; the FedAvg attack unrolls torch.optim.SGD, "
            "Adam and AdamW",
        ),
        ({"lr": 0.5}, "lr: 0.5 contradicts the optimizer's lr \\(0.1\\); give one"),
        ({"optimizer": None, "lr": None}, "lr: required"),
        (
            {"lr_schedule": torch.optim.lr_scheduler.ReduceLROnPlateau},
            "lr_schedule: ReduceLROnPlateau is not modelled",
        ),
        ({"lr_schedule": [0.1, 0.2]}, "lr_schedule: 2 learning rates for 4 local steps"),
        (
            {"protocol": "fedsgd", "optimizer": functools.partial(torch.optim.Adam, lr=0.1)},
            "optimizer: fedsgd clients send θ − lr·g; a client that steps adam",
        ),
    ],
)
def test_training_the_auditor_cannot_model_is_refused_in_one_line(
    changes: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        auditor(**changes)
    assert "\n" not in str(caught.value)
