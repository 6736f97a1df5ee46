"""The auditor and a defense mod dropped into a Flower app that does not otherwise use fedsim.

The app below has its own model, random data, ClientApp and ServerApp; fedsim gives
only `LeakageAuditor.for_model` (server) and `defenses.flower.mod` (client). Without a
scenario the auditor is in deployment mode: no ground truth, it records the attack
objectives and stores the reconstructions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from defenses.flower import mod
from fedsim.auditor import LeakageAuditor
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, read_jsonl

SHAPE, CLASSES, BATCH, LR, ROUNDS = (1, 6, 6), 3, 2, 0.1, 2


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.Sigmoid(), nn.Linear(8, CLASSES))


# ------------------------------------------------------------------ the user's ClientApp

client = ClientApp(mods=[mod("gaussian", sigma=0.01)])


@client.train()
def train(msg: Message, context: Context) -> Message:
    model = net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    generator = torch.Generator().manual_seed(int(context.node_config["partition-id"]))
    x = torch.rand((BATCH, *SHAPE), generator=generator)
    y = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": BATCH, "train-loss": loss.item()}),
        }
    )
    return Message(content=content, reply_to=msg)


# ------------------------------------------------------------------ the user's ServerApp


def server_app(out_dir: Path) -> ServerApp:
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = LeakageAuditor.for_model(
            FedAvg(fraction_evaluate=0.0, min_available_nodes=2),
            net,
            input_shape=SHAPE,
            num_classes=CLASSES,
            batch_size=BATCH,
            attacks=["l2"],
            defense="gaussian:sigma=0.01",
            domain="image",
            protocol="fedavg",
            lr=LR,
            local_steps=1,
            audit={"budget": {"iterations": 4}},
            out_dir=out_dir,
        )
        strategy.start(grid=grid, initial_arrays=ArrayRecord(net().state_dict()), num_rounds=ROUNDS)
        strategy.close()

    return server


def check_records(out_dir: Path) -> None:
    leakage = read_jsonl(out_dir / LEAKAGE_FILE)
    assert sorted(r["round"] for r in leakage) == [1, 1, 2, 2]
    assert len({r["client"] for r in leakage}) == 2  # node ids: no partition ids in replies
    for record in leakage:
        assert record["status"] == "ok" and record["attack"] == "l2"
        assert record["psnr"] is None and record["ssim"] is None  # no ground truth
        assert record["objective"] is not None and record["defense"] == "gaussian:sigma=0.01"
    saved = sorted((out_dir / RECONSTRUCTIONS_DIR).glob("*.pt"))
    assert len(saved) == 4 and len(list((out_dir / RECONSTRUCTIONS_DIR).glob("*.png"))) == 4
    images = torch.load(saved[0])["l2"]
    assert images.shape == (BATCH, *SHAPE)


def test_standalone_app_in_process(tmp_path: Path) -> None:
    # a test harness: the app itself is Flower's
    from fedsim.flower.runtimes.local_grid import LocalGrid

    grid = LocalGrid(client, num_nodes=2, seed=0)
    server_app(tmp_path)(grid=grid, context=Context(1, 1, {}, RecordDict(), {}))
    check_records(tmp_path)


@pytest.mark.slow
def test_standalone_app_on_flowers_simulation_engine(tmp_path: Path) -> None:
    from flwr.simulation import run_simulation

    run_simulation(
        server_app=server_app(tmp_path),
        client_app=client,
        num_supernodes=2,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
    )
    check_records(tmp_path)
