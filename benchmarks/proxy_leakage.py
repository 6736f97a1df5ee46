"""Where leakage stops: the recognisable share of proxy clients' images against their batch
size and local steps, for Flower's quickstart CNN on CIFAR-10, early and trained.

The model is the quickstart-pytorch `Net` (two 5 × 5 convolutions with max pooling, three
linear layers; 62,006 parameters) on images normalised to [−1, 1] as its transform does.
Two states: its seeded initialisation, and `--train-epochs` epochs of centralised SGD
(lr 0.01, momentum 0.9, batches of 32) on the CIFAR-10 training split. At each state and
each (batch size B, local steps T ≤ B), proxy clients train as quickstart clients do —
SGD with lr 0.1 and momentum 0.9, one epoch over their B images in T shuffled
mini-batches of ⌈B / T⌉ — and the auditor's proxy audit (`fedsim.auditor.proxy`, the code a Flower app's
auditor runs) attacks their updates, drawn from the test split, with fresh batches
(⌈4 / B⌉ clients a time) until at least `--images` images are attacked. Each image
counts as recovered as the judgement counts it (SSIM ≥ 0.4 and above the flat guess
from held-back test images).

    python benchmarks/proxy_leakage.py --data-root DATA [--attacks bayes cos]
        [--sizes 1 2 4 8 16 32 64] [--steps 1 4] [--iterations 300] [--images 8]
        [--train-epochs 8] [--out FILE] [--plot FILE.png]

Prints JSON: per state its test accuracy and per cell the images recovered of those
attacked, mean PSNR and SSIM, the label counts recovered exactly, and the seconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attacks.domain import ImageDomain
from fedsim.auditor.attack_runner import AttackRunner, RoundJob
from fedsim.auditor.cost_plan import AttackPlan, CostPlan, ProxyCall, proxy_clients
from fedsim.auditor.proxy import ProxyAudit
from fedsim.auditor.proxy_data import read_proxy_data
from fedsim.auditor.setup import AuditSetup
from fedsim.data import load_dataset
from fedsim.judgement import read_record

DOMAIN = ImageDomain(low=-1.0, high=1.0)


class Net(nn.Module):
    """Flower's quickstart-pytorch CNN (CIFAR-10, 3 × 32 × 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def trained_state(root: str, epochs: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The seeded initialisation trained `epochs` epochs on the training split, and its
    test accuracy before and after."""
    torch.manual_seed(0)
    net = Net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    train = load_dataset("cifar10", "train", root)
    test = load_dataset("cifar10", "test", root)
    x, y = DOMAIN.low + (DOMAIN.high - DOMAIN.low) * train.images.float(), train.labels.long()
    before = accuracy(net, test)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), 32):
            batch = order[i : i + 32]
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
    return start, {
        "early": {"accuracy": before},
        "trained": {"accuracy": accuracy(net, test), "epochs": epochs},
        "trained_state": {k: v.detach().clone() for k, v in net.state_dict().items()},
    }


@torch.no_grad()
def accuracy(net: nn.Module, data: Any) -> float:
    x = DOMAIN.low + (DOMAIN.high - DOMAIN.low) * data.images.float()
    return float((net(x).argmax(1) == data.labels).float().mean())


def cell(
    root: str,
    state: dict[str, torch.Tensor],
    attack: str,
    size: int,
    steps: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Proxy clients of `size` images taking `steps` local steps, attacked by `attack`
    until `--images` images are."""
    chunk = math.ceil(size / steps)
    setup = AuditSetup.for_model(
        Net,
        input_shape=(3, 32, 32),
        num_classes=10,
        batch_size=size,
        domain=DOMAIN,
        protocol="fedavg",
        optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        local_steps=steps,
        local_batch_size=chunk,
        shuffle=True,
        attacks=[attack],
        audit={"budget": {"iterations": args.iterations}},
        seed=args.seed,
        device="cpu",
    )
    runner = AttackRunner(setup, torch.device("cpu"))
    call = ProxyCall(size, proxy_clients(size), args.iterations, None, 0.0)
    plan = CostPlan(size, steps, None, [AttackPlan(attack, args.iterations, 1, 0.0, True)])
    plan.attacks[0].proxy = [call]
    proxy = ProxyAudit(setup, _test_split(root), plan, runner)
    started = time.perf_counter()
    records = []
    repeats = math.ceil(args.images / (size * call.clients))
    for repeat in range(1, repeats + 1):
        outcomes = proxy.audit(RoundJob(repeat, state))
        records += [outcome.record for _, outcome in outcomes]
    flags, psnr, ssim = [], [], []
    for record in records:
        for reading in read_record(record):
            if reading.kind == "scored" and not reading.series.trained_on:
                flags += reading.recovered
                psnr += reading.psnr
                ssim += reading.ssim
    exact = [bool(r["label_counts"].get("exact")) for r in records]
    return {
        "attack": attack,
        "batch_size": size,
        "local_steps": steps,
        "mini_batch": chunk,
        "images": len(flags),
        "recovered": sum(flags),
        "share": sum(flags) / len(flags) if flags else None,
        "psnr": statistics.fmean(psnr) if psnr else None,
        "ssim": statistics.fmean(ssim) if ssim else None,
        "label_counts_exact": f"{sum(exact)}/{len(exact)}",
        "statuses": sorted({r["status"] for r in records}),
        "seconds": round(time.perf_counter() - started, 1),
    }


@functools.cache
def _test_split(root: str) -> Any:
    """The test split as a proxy data set, as a Flower app's transform gives it: floats
    in the domain's box [−1, 1]."""
    test = load_dataset("cifar10", "test", root)
    inputs = DOMAIN.low + (DOMAIN.high - DOMAIN.low) * test.images.float()
    return read_proxy_data(
        (inputs, test.labels), input_shape=(3, 32, 32), num_classes=10, domain=DOMAIN, limit=10**6
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = report["attacks"]
    figure, axes = plt.subplots(1, len(attacks), figsize=(5.2 * len(attacks), 4.0), squeeze=False)
    for axis, attack in zip(axes[0], attacks, strict=True):
        for state, styles in (("early", "-"), ("trained", "--")):
            cells = [c for c in report["states"][state]["cells"] if c["attack"] == attack]
            steps_seen = sorted({c["local_steps"] for c in cells})
            for steps, marker in zip(steps_seen, "os^D", strict=False):
                mine = sorted(
                    (c for c in cells if c["local_steps"] == steps), key=lambda c: c["batch_size"]
                )
                accuracy = 100 * report["states"][state]["accuracy"]
                axis.plot(
                    [c["batch_size"] for c in mine],
                    [100 * (c["share"] or 0.0) for c in mine],
                    styles,
                    marker=marker,
                    label=f"{state} ({accuracy:.0f} %), T = {steps}",
                )
        axis.set_xscale("log", base=2)
        axis.set_xlabel("proxy client's batch size B")
        axis.set_ylabel("images recovered (%)")
        axis.set_ylim(-3, 103)
        axis.set_title(f"{attack}, {report['iterations']} iterations", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("Where leakage stops: Flower's quickstart Net on CIFAR-10", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--attacks", nargs="+", default=["bayes", "cos"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    start, states = trained_state(args.data_root, args.train_epochs)
    report: dict[str, Any] = {
        "model": "Flower quickstart Net (62,006 parameters), inputs in [-1, 1]",
        "attacks": args.attacks,
        "iterations": args.iterations,
        "images_per_cell": args.images,
        "client": "SGD lr 0.1 momentum 0.9, one epoch over B images in T shuffled mini-batches",
        "states": {},
    }
    for name, state in (("early", start), ("trained", states["trained_state"])):
        report["states"][name] = {**states[name], "cells": []}
        for attack in args.attacks:
            for size in args.sizes:
                for steps in (t for t in args.steps if t <= size):
                    result = cell(args.data_root, state, attack, size, steps, args)
                    report["states"][name]["cells"].append(result)
                    print(json.dumps({"state": name, **result}), file=sys.stderr, flush=True)
        report["states"][name]["leaks_up_to_batch"] = {
            f"{attack}, T = {steps}": max(
                (
                    c["batch_size"]
                    for c in report["states"][name]["cells"]
                    if c["attack"] == attack and c["local_steps"] == steps and c["recovered"]
                ),
                default=None,
            )
            for attack in args.attacks
            for steps in args.steps
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.plot:
        plot(report, Path(args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
