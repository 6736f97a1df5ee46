"""A Flower app built as Flower's quickstart-pytorch is, with the auditor and proxy data added.

Everything above the README's lines is plain Flower and PyTorch in the shape of
`examples/quickstart-pytorch`: its CNN `Net` (two convolutions with max pooling, three
linear layers), a `DataLoader` with `shuffle=True` per partition whose items are the
dicts flwr-datasets gives (`{"img": normalised tensor, "label": int}`, normalised to
[−1, 1] as its `Normalize((0.5,), (0.5,))` does), `train` stepping
`torch.optim.SGD(lr=0.1, momentum=0.9)` for one local epoch of several mini-batches,
FedAvg, and a centralised test set on the server. Only the data differ: the packaged
MNIST sample (one channel, 28 × 28, so `Net`'s first layer takes one channel), in a few
tiny partitions, so that a test runs in seconds. The fedsim lines are the README's: one
line in the ClientApp (its partition id) and the auditor around the strategy, given the
test set as `proxy_data`.

Run: python tests/quickstart_app.py OUT_DIR [--rounds 2] (clients answered in this process
by fedsim's test grid, `LocalGrid`; `tests/test_flower_quickstart_app.py` runs it on
Flower's simulation engine).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn
from torch.utils.data import DataLoader, Dataset

NUM_PARTITIONS, LOCAL_EPOCHS, LR = 3, 1, 0.1
INPUT_SHAPE = (1, 28, 28)
"""One image as `Net` takes it (the quickstart's CIFAR-10: (3, 32, 32))."""
PARTITION_SIZE, BATCH_SIZE = 24, 8
"""A client's training examples and its loader's batch size (the quickstart's CIFAR-10
with 10 partitions: 4,000 and 32)."""
ROUND_SECONDS = 4.0
"""What each attack may spend on a round's audit (audit.budget.seconds)."""


class Net(nn.Module):
    """The quickstart's CNN, for one-channel 28 × 28 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Digits(Dataset):
    """Images as flwr-datasets' `with_transform` gives them: dicts, normalised to [−1, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"img": (self.images[index] - 0.5) / 0.5, "label": int(self.labels[index])}


@functools.cache
def _split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from fedsim.data import load_dataset  # the local copy standing in for flwr-datasets

    data = load_dataset("mnist-sample", split)
    return data.images.float(), data.labels.long()


def load_data(partition_id: int) -> DataLoader:
    images, labels = _split("train")
    chosen = slice(partition_id * PARTITION_SIZE, (partition_id + 1) * PARTITION_SIZE)
    return DataLoader(Digits(images[chosen], labels[chosen]), batch_size=BATCH_SIZE, shuffle=True)


def load_centralized_dataset() -> DataLoader:
    return DataLoader(Digits(*_split("test")), batch_size=128)


def train(net: Net, trainloader: DataLoader, epochs: int, lr: float) -> float:
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for batch in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(batch["img"]), batch["label"])
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
    trainloader = load_data(partition_id)
    loss = train(model, trainloader, LOCAL_EPOCHS, float(msg.content["config"]["lr"]))
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(trainloader.dataset)}),
        }
    )
    # --- the README's client line: which partition this is (records name clients by it)
    content["fedsim"] = ConfigRecord({"partition-id": partition_id})
    return Message(content=content, reply_to=msg)


def server_app(out_dir: Path, rounds: int) -> ServerApp:
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=NUM_PARTITIONS)
        # --- the README's server lines: the auditor around the strategy
        from attacks.domain import ImageDomain
        from fedsim.auditor import LeakageAuditor

        steps = LOCAL_EPOCHS * -(-PARTITION_SIZE // BATCH_SIZE)  # epochs × len(trainloader)
        strategy = LeakageAuditor.for_model(
            strategy,
            Net,
            input_shape=INPUT_SHAPE,
            num_classes=10,
            batch_size=PARTITION_SIZE,  # len(trainloader.dataset) on each client
            domain=ImageDomain(low=-1.0, high=1.0),  # Normalize((0.5,), (0.5,)) in the transform
            protocol="fedavg",
            optimizer=functools.partial(torch.optim.SGD, lr=LR, momentum=0.9),  # as in train()
            local_steps=steps,
            local_batch_size=BATCH_SIZE,
            shuffle=True,  # DataLoader(..., shuffle=True)
            attacks=["bayes"],
            proxy_data=load_centralized_dataset(),  # the server's test set: {"img", "label"} items
            audit={"budget": {"iterations": 200, "seconds": ROUND_SECONDS}},
            out_dir=out_dir,
        )
        # then, as before:
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(Net().state_dict()),
            train_config=ConfigRecord({"lr": LR}),
            num_rounds=rounds,
        )
        strategy.close()

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from fedsim.flower.runtimes.local_grid import LocalGrid  # the test harness, not part of the app

    torch.manual_seed(0)
    grid = LocalGrid(client, num_nodes=NUM_PARTITIONS, seed=0)
    app = server_app(args.out_dir, args.rounds)
    app(grid=grid, context=Context(1, 1, {}, RecordDict(), {}))


if __name__ == "__main__":
    main()
