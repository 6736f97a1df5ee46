"""Label counts from the head's update on real MNIST batches of 64: FedSGD, FedAvg with
several local steps (plain SGD, momentum, Adam), a large batch, and the record field."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from attacks.labels import count_labels
from attacks.local_optimizer import LocalOptimizer
from attacks.local_training import client_options
from attacks.target import AttackTarget, Protocol
from defenses.client import client_update
from defenses.identity import NoDefense
from fedsim.auditor.label_counts import label_counts_field
from fedsim.data import LabeledImages, load_dataset
from fedsim.models import build_model

B = 64


@pytest.fixture(scope="module")
def mnist(data_root) -> LabeledImages:
    return load_dataset("mnist", "test", data_root)


def _batches(data: LabeledImages) -> list[torch.Tensor]:
    """Two batches of 64: one drawn from every class, one from three classes."""
    gen = torch.Generator().manual_seed(1)
    mixed = torch.randperm(len(data.labels), generator=gen)[:B]
    pool = torch.nonzero(torch.isin(data.labels, torch.tensor([2, 5, 7]))).flatten()
    skewed = pool[torch.randperm(len(pool), generator=gen)[:B]]
    return [mixed, skewed]


def _target(model, data, index, protocol: Protocol) -> AttackTarget:
    x, y = data.images[index], data.labels[index]
    made = client_update(
        NoDefense(), copy.deepcopy(model), x, y, torch.Generator(), **client_options(protocol)
    )
    return AttackTarget(
        model, made.update, len(index), data.info.input_shape, 10, protocol=protocol
    )


PROTOCOLS = {
    "fedsgd": (Protocol(), 0.9),
    "fedavg-sgd": (Protocol("fedavg", 8, 0.05, 16), 0.8),  # two passes of 4 mini-batches
    "fedavg-momentum": (
        Protocol("fedavg", 8, 0.05, 16, optimizer=LocalOptimizer("sgd", momentum=0.9)),
        0.8,
    ),
}


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_counts_of_a_batch_of_64_are_accurate(mnist, name):
    protocol, bound = PROTOCOLS[name]
    torch.manual_seed(0)
    model = build_model("cnn", mnist.info)
    scores = []
    for index in _batches(mnist):
        target = _target(model, mnist, index, protocol)
        field = label_counts_field(target, mnist.labels[index])
        assert sum(field["recovered"].values()) == B
        scores.append((field["accuracy"], field["guess_accuracy"]))
    print(
        f"{name}, B=64, untrained CNN: accuracy (mixed, three classes) "
        f"{[round(a, 3) for a, _ in scores]}, even-split guess {[round(g, 3) for _, g in scores]}"
    )
    assert min(a for a, _ in scores) >= bound
    assert all(a > g for a, g in scores)


def test_adam_gives_away_which_classes_are_present(mnist):
    torch.manual_seed(0)
    model = build_model("cnn", mnist.info)
    protocol = Protocol("fedavg", 8, 1e-3, 16, optimizer=LocalOptimizer("adam"))
    index = _batches(mnist)[1]
    found = count_labels(_target(model, mnist, index, protocol))
    assert set(torch.nonzero(found.counts).flatten().tolist()) == {2, 5, 7}
    assert "adam" in found.method


def test_a_large_batch_is_counted_without_optimisation(mnist):
    """An update from 1,864 images in 59 local steps (Flower's quickstart client): counts
    cost no forward pass, so they are there at any batch size."""
    torch.manual_seed(0)
    model = build_model("mlp", mnist.info)
    index = torch.arange(1864)
    protocol = Protocol(
        "fedavg", 59, 0.01, 32, optimizer=LocalOptimizer("sgd", momentum=0.9), last_batch="short"
    )
    target = _target(model, mnist, index, protocol)
    started = time.perf_counter()
    field = label_counts_field(target, mnist.labels[index])
    seconds = time.perf_counter() - started
    print(
        f"B=1864, 59 steps: accuracy {field['accuracy']:.3f} (guess "
        f"{field['guess_accuracy']:.3f}) in {seconds:.2f} s"
    )
    assert sum(field["recovered"].values()) == 1864
    assert seconds < 2.0
    assert field["accuracy"] > field["guess_accuracy"]


def test_without_ground_truth_the_counts_stand_unscored(mnist):
    torch.manual_seed(0)
    model = build_model("cnn", mnist.info)
    field = label_counts_field(_target(model, mnist, torch.arange(8), Protocol()), None)
    assert field["true"] is None and field["accuracy"] is None and field["exact"] is None
    assert sum(field["recovered"].values()) == 8 and field["method"]


def test_counts_after_training_still_beat_the_guess(mnist, data_root):
    """A trained model maps random inputs to a few confident classes, so the mean
    softmax output on them misleads (`infer_labels`); the counts calibrate on the batch."""
    torch.manual_seed(0)
    model = build_model("mlp", mnist.info)
    train = load_dataset("mnist", "train", data_root)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        index = torch.randint(0, len(train.labels), (32,), generator=gen)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(
            model(train.images[index]), train.labels[index]
        ).backward()
        optimizer.step()
    scores = {}
    for name in ("fedsgd", "fedavg-momentum"):
        protocol = PROTOCOLS[name][0]
        fields = [
            label_counts_field(_target(model, mnist, index, protocol), mnist.labels[index])
            for index in _batches(mnist)
        ]
        scores[name] = [(f["accuracy"], f["guess_accuracy"]) for f in fields]
    print(f"after 300 steps of training (MLP), B=64 (accuracy, guess): {scores}")
    for (mixed, mixed_guess), (skewed, skewed_guess) in scores.values():
        assert skewed >= 0.9 > 0.3 > skewed_guess  # three classes of ten: the histogram leaks
        assert mixed >= mixed_guess - 0.05  # every class present: little beyond the guess
