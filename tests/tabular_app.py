"""A stock Flower app on tabular data, as a Flower user writes one, with the auditor added.

Everything above the README's lines is plain Flower and PyTorch in the shape of
Flower's PyTorch quickstart: a model, a data loader per partition, a `train` that runs
`EPOCHS` passes of an SGD loop over the client's `DataLoader`, a ServerApp with FedAvg.
The client's data are standard-normal feature rows labelled by a fixed linear rule
(the partition id seeds them). The only fedsim lines are the ones the README's "Add the
auditor to your Flower app" gives: one line in the ClientApp (its partition id) and the
auditor around the strategy.

Run: python tests/tabular_app.py OUT_DIR [--batch-size 4] [--rounds 2]
(clients are answered in this process by fedsim's test grid, `LocalGrid`; under
`flwr run` or `run_simulation` the app itself is the same).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FEATURES, CLASSES, LR, EPOCHS = 6, 2, 0.05, 3


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(FEATURES, 64)
        self.fc2 = nn.Linear(64, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def load_data(partition_id: int, batch_size: int) -> DataLoader:
    """This client's rows: `batch_size` standard-normal feature vectors and their labels."""
    generator = torch.Generator().manual_seed(1000 + partition_id)
    x = torch.randn(batch_size, FEATURES, generator=generator)
    y = (x[:, 0] + x[:, 1] - x[:, 2] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


def train(net: Net, trainloader: DataLoader, epochs: int, lr: float) -> float:
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for x, y in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(x), y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    return running_loss / (epochs * len(trainloader))


client = ClientApp()


@client.train()
def client_train(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    partition_id = int(context.node_config["partition-id"])
    batch_size = int(msg.content["config"]["batch-size"])
    trainloader = load_data(partition_id, batch_size)
    loss = train(model, trainloader, EPOCHS, float(msg.content["config"]["lr"]))
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(trainloader.dataset)}),
        }
    )
    # --- the README's client line: which partition this is (records name clients by it)
    content["fedsim"] = ConfigRecord({"partition-id": partition_id})
    return Message(content=content, reply_to=msg)


def server_app(out_dir: Path, batch_size: int, rounds: int) -> ServerApp:
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=2)
        # --- the README's server lines: the auditor around the strategy
        from fedsim.auditor import LeakageAuditor

        strategy = LeakageAuditor.for_model(
            strategy,
            Net,
            input_shape=(FEATURES,),
            num_classes=CLASSES,
            batch_size=batch_size,
            domain="features",
            protocol="fedavg",
            lr=LR,
            local_steps=EPOCHS,
            attacks=["bayes", "l2"],
            audit={"worker": "inline", "budget": {"iterations": 200, "restarts": 2}},
            out_dir=out_dir,
        )
        # ---
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(Net().state_dict()),
            train_config=ConfigRecord({"lr": LR, "batch-size": batch_size}),
            num_rounds=rounds,
        )
        strategy.close()

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    # the test harness, not part of the app
    from fedsim.flower.runtimes.local_grid import LocalGrid

    torch.manual_seed(0)
    grid = LocalGrid(client, num_nodes=2, seed=0)
    app = server_app(args.out_dir, args.batch_size, args.rounds)
    app(grid=grid, context=Context(1, 1, {}, RecordDict(), {}))


if __name__ == "__main__":
    main()
