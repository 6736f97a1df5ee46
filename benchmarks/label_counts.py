"""Label counts from one update: how well the head's update gives a batch's class histogram away.

For each model (the paper CNN, the MLP) at several training states (SGD steps of 32
MNIST training images, lr 0.05), each protocol (FedSGD; FedAvg with 8 local steps of
16 images, plain SGD or momentum 0.9) and each batch of MNIST test images (mixed: drawn
from every class; skewed: from 3 to 6 classes; at B = 64 and B = 1024), the share of
the batch's labels counted right, Σ_c min(true_c, recovered_c) / B, of:

- `count_labels`: the counts the audit records (`label_counts`);
- `infer_labels`: the labels the attacks optimise with (p̄ from random inputs);
- `guess`: the batch split evenly over the classes, which ignores the update.

    python benchmarks/label_counts.py --data-root DATA [--states 0 30 300]
        [--models cnn mlp] [--train-split train|test] [--out FILE]

`--train-split test` trains the model on the split the batches come from, so that it
has seen the batch's images, as a global model has seen a client's after a few rounds.

Prints JSON: one row per (model, state, protocol) with the mean share of each method
and the shares on each batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
import torch.nn.functional as F

from attacks.labels import count_labels, infer_labels
from attacks.local_optimizer import LocalOptimizer
from attacks.local_training import client_options
from attacks.target import AttackTarget, Protocol
from defenses.client import client_update
from defenses.identity import NoDefense
from fedsim.data import load_dataset
from fedsim.models import build_model

PROTOCOLS = {
    "fedsgd": Protocol(),
    "fedavg-sgd": Protocol("fedavg", 8, 0.05, 16),
    "fedavg-momentum": Protocol(
        "fedavg", 8, 0.05, 16, optimizer=LocalOptimizer("sgd", momentum=0.9)
    ),
}


def batches(labels: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Mixed and skewed batches of 64, and one of each of 1,024 (seeded)."""
    gen = torch.Generator().manual_seed(1)
    out = []
    for k in range(8):
        size = 64 if k < 6 else 1024
        if k % 2 == 0:
            out.append((f"mixed-{size}", torch.randperm(len(labels), generator=gen)[:size]))
            continue
        classes = torch.randperm(10, generator=gen)[: 3 + k % 4]
        pool = torch.nonzero(torch.isin(labels, classes)).flatten()
        out.append(
            (f"skewed{len(classes)}-{size}", pool[torch.randperm(len(pool), generator=gen)[:size]])
        )
    return out


def share(counts: torch.Tensor, labels: torch.Tensor) -> float:
    true = torch.bincount(labels, minlength=counts.numel())
    return float(torch.minimum(counts, true).sum()) / len(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--states", type=int, nargs="+", default=[0, 30, 300])
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"])
    parser.add_argument("--train-split", choices=["train", "test"], default="train")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    test = load_dataset("mnist", "test", args.data_root)
    train = test if args.train_split == "test" else load_dataset("mnist", "train", args.data_root)
    chosen = batches(test.labels)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, test.info)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(0)
        trained = 0
        for state in sorted(args.states):
            for _ in range(state - trained):
                index = torch.randint(0, len(train.labels), (32,), generator=gen)
                optimizer.zero_grad()
                F.cross_entropy(model(train.images[index]), train.labels[index]).backward()
                optimizer.step()
            trained = state
            for label, protocol in PROTOCOLS.items():
                shares: dict[str, dict[str, float]] = {
                    "count_labels": {},
                    "infer_labels": {},
                    "guess": {},
                }
                for batch, index in chosen:
                    x, y = test.images[index], test.labels[index]
                    made = client_update(
                        NoDefense(),
                        copy.deepcopy(model),
                        x,
                        y,
                        torch.Generator(),
                        **client_options(protocol),
                    )
                    target = AttackTarget(
                        model, made.update, len(index), test.info.input_shape, 10, protocol=protocol
                    )
                    shares["count_labels"][batch] = share(count_labels(target).counts, y)
                    inferred = torch.bincount(infer_labels(target), minlength=10)
                    shares["infer_labels"][batch] = share(inferred, y)
                    base, rest = divmod(len(index), 10)
                    even = torch.tensor([base + (c < rest) for c in range(10)])
                    shares["guess"][batch] = share(even, y)
                row = {"model": name, "state": state, "protocol": label}
                for method, values in shares.items():
                    row[method] = round(sum(values.values()) / len(values), 3)
                row["batches"] = {
                    m: {b: round(v, 3) for b, v in vs.items()} for m, vs in shares.items()
                }
                rows.append(row)
                print(json.dumps({k: row[k] for k in row if k != "batches"}), file=sys.stderr)
    text = json.dumps({"rows": rows}, indent=1)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
