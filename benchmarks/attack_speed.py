"""Attack speed: N reconstructions batched in the engine vs one at a time with plain autograd.

One attack iteration = candidate updates (gradient of the loss w.r.t. the parameters),
the L2 gradient-matching objective, its gradient w.r.t. the images (second order) and an
Adam step. The baseline is the textbook loop: per image, `autograd.grad(create_graph=True)`
on the model, the same objective, backward, Adam. Both run on the same model, images and
observed updates, batch norm in train mode (the client's default); the ratio is baseline
seconds / batched seconds for the same N. The paper CNN runs on MNIST, ConvNet-64 on
CIFAR-10 (MNIST where CIFAR-10 is absent; the row says which).

Each row also gives the floor: the floating-point operations of one plain iteration
(`torch.utils.flop_counter`), the rate the plain loop reaches, and the rate of a large
matrix product on the same device. A plain loop already near that rate cannot be beaten
by batching, which only removes per-operation overhead.

    python benchmarks/attack_speed.py --data-root DATA [--models cnn convnet64] [--n 1 8 32]
        [--device cpu|cuda] [--out FILE]

Prints JSON. `--device cuda` on a machine without CUDA prints why it is skipped (on
stderr and in the JSON) and exits 0. Timings are the minimum over `--repeats` rounds,
taken in alternation, so a machine shared with other jobs disturbs them less (it still
does: say so when reporting).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from attacks import AttackTarget, Budget, ThreatModel, build_attack
from attacks.engine import chunks, gradient
from attacks.updates import ActivationUpdates
from fedsim.data import load_dataset
from fedsim.errors import FedsimError
from fedsim.models import build_model

DATASET = {"cnn": "mnist", "convnet64": "cifar10"}
ROUTES = ("fast", "vmap")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(model, images, labels):
    targets = []
    for i in range(images.shape[0]):
        x, y = images[i : i + 1], labels[i : i + 1]
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        targets.append(
            AttackTarget(
                model=model,
                update=[g.detach() for g in grads],
                batch_size=1,
                input_shape=tuple(x.shape[1:]),
                num_classes=10,
                labels=y,
                threat=ThreatModel(labels_known=True),
            )
        )
    return targets


def _timed(step: Callable[[], None], steps: int, device: torch.device) -> float:
    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _batched_step(targets, route: str, device: torch.device) -> tuple[Callable[[], None], str]:
    attack = build_attack("l2", priors={}, route=route)
    problem, x0 = attack._problem(targets, [t.labels for t in targets], Budget(restarts=1), device)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    parts = chunks(problem, x.shape[0])  # as the engine takes them

    def step():
        x.grad = gradient(parts, x, 1.0)
        opt.step()

    kind = "fast" if isinstance(problem.updates, ActivationUpdates) else "vmap"
    return step, kind


def _plain_step(model, targets, device: torch.device) -> Callable[[], None]:
    params = list(model.parameters())
    xs = [
        torch.rand(1, *t.input_shape, generator=torch.Generator().manual_seed(i)).to(device)
        for i, t in enumerate(targets)
    ]
    xs = [x.requires_grad_(True) for x in xs]
    opts = [torch.optim.Adam([x], lr=0.1) for x in xs]

    def step():
        for x, opt, t in zip(xs, opts, targets, strict=True):
            grads = torch.autograd.grad(
                F.cross_entropy(model(x), t.labels), params, create_graph=True
            )
            loss = sum(((g - o) ** 2).sum() for g, o in zip(grads, t.update, strict=True))
            (x.grad,) = torch.autograd.grad(loss, x)
            opt.step()

    return step


class _FlopCount(TorchDispatchMode):
    """Floating-point operations of the ops torch's flop counter knows (matmuls,
    convolutions and their backward), without its module tracking, which refuses
    `autograd.grad` on leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def _flops(step: Callable[[], None]) -> int:
    with _FlopCount() as counter:
        step()
    return int(counter.total)


def _matmul_rate(device: torch.device, size: int = 2048) -> float:
    """GFLOP/s of a size × size float32 matrix product (best of five)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = min(_timed(lambda: a @ b, 1, device) for _ in range(5))
    return 2 * size**3 / seconds / 1e9


def _data(model_name: str, root: str | None):
    name = DATASET[model_name]
    try:
        return name, load_dataset(name, "test", root)
    except (FedsimError, OSError):
        return "mnist", load_dataset("mnist", "test", root)


def _row(model_name: str, n: int, args: argparse.Namespace, device: torch.device) -> dict:
    dataset, data = _data(model_name, args.data_root)
    torch.manual_seed(0)
    model = build_model(model_name, data.info).to(device)
    model.train(True)
    steps = args.steps if model_name == "cnn" else max(1, args.steps // 3)
    images, labels = data.images[:n].to(device), data.labels[:n].to(device)
    targets = _targets(model, images, labels)
    plain = _plain_step(model, targets, device)
    auto_route = _batched_step(targets, "auto", device)[1]
    batched = {}
    for route in ROUTES:
        try:
            batched[route] = _batched_step(targets, route, device)[0]
        except NotImplementedError:
            continue
    best = {key: float("inf") for key in ("plain", *batched)}
    for _ in range(args.repeats):  # alternate, so that load from other jobs hits all alike
        best["plain"] = min(best["plain"], _timed(plain, steps, device))
        for route, step in batched.items():
            best[route] = min(best[route], _timed(step, steps, device))
    flops = _flops(plain) / n
    row = {
        "model": model_name,
        "dataset": dataset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "n": n,
        "batch_size": 1,
        "auto_route": auto_route,
        "plain_seconds_per_iteration": best["plain"],
        "batched_seconds_per_iteration": best[auto_route],
        "plain_seconds_per_reconstruction_iteration": best["plain"] / n,
        "batched_seconds_per_reconstruction_iteration": best[auto_route] / n,
        "reconstructions_per_second_at_200_iterations": n / (200 * best[auto_route]),
        "speedup_vs_plain": best["plain"] / best[auto_route],
        "plain_gflop_per_reconstruction_iteration": flops / 1e9,
        "plain_gflops_per_second": flops * n / best["plain"] / 1e9,
    }
    for route in ROUTES:
        if route in best:
            row[f"{route}_seconds_per_iteration"] = best[route]
            row[f"{route}_speedup_vs_plain"] = best["plain"] / best[route]
    return row


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    report = {
        "benchmark": "attack_speed",
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "device": args.device,
    }
    if args.device == "cuda" and not torch.cuda.is_available():
        reason = "skipped: --device cuda but torch.cuda.is_available() is False on this machine"
        print(reason, file=sys.stderr)
        return {**report, "skipped": reason, "results": []}
    device = torch.device(args.device)
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
    report["matmul_gflops_per_second"] = _matmul_rate(device)
    results = []
    for model_name in args.models:
        for n in args.n:
            row = _row(model_name, n, args, device)
            results.append(row)
            print(json.dumps(row), flush=True, file=sys.stderr)
    return {**report, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--models", nargs="+", default=["cnn", "convnet64"], choices=DATASET)
    parser.add_argument("--n", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--steps", type=int, default=6, help="timed iterations (a third for larger models)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
