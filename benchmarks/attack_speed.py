"""Attack speed: N reconstructions batched in the engine vs one at a time with plain autograd.

One attack iteration = candidate updates (gradient of the loss w.r.t. the parameters),
the L2 gradient-matching objective, its gradient w.r.t. the images (second order) and an
Adam step. The baseline is the textbook loop: per image, `autograd.grad(create_graph=True)`
on the model, the same objective, backward, Adam. Both run on the same model, images and
observed updates; the ratio is baseline seconds / batched seconds for the same N.

    python benchmarks/attack_speed.py --data-root DATA [--models cnn convnet64] [--out FILE]

Prints JSON. Timings are the minimum over `--repeats` rounds, taken in alternation, so a
machine shared with other jobs disturbs them less (it still does: say so when reporting).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from attacks import AttackTarget, Budget, ThreatModel, build_attack
from attacks.updates import ActivationUpdates
from fedsim.data import load_dataset
from fedsim.models import build_model


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


def _batched_step_seconds(targets, route: str, steps: int) -> tuple[float, str]:
    attack = build_attack("l2", priors={}, route=route)
    problem, x0 = attack._problem(
        targets, [t.labels for t in targets], Budget(restarts=1), torch.device("cpu")
    )
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)

    def step():
        data, prior = problem.terms(x)
        (g,) = torch.autograd.grad((data + prior).sum(), x)
        x.grad = g
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    kind = "fast" if isinstance(problem.updates, ActivationUpdates) else "vmap"
    return (time.perf_counter() - start) / steps, kind


def _plain_step_seconds(model, targets, steps: int) -> float:
    params = list(model.parameters())
    xs = [
        torch.rand(1, *t.input_shape, generator=torch.Generator().manual_seed(i))
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

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", "test", args.data_root)
    results = []
    for model_name in args.models:
        torch.manual_seed(0)
        model = build_model(model_name, data.info)
        model.train(True)
        params = sum(p.numel() for p in model.parameters())
        steps = args.steps if model_name == "cnn" else max(1, args.steps // 3)
        for n in args.n:
            targets = _targets(model, data.images[:n], data.labels[:n])
            best = {"plain": float("inf"), "fast": float("inf"), "vmap": float("inf")}
            route_used = ""
            for _ in range(args.repeats):
                best["plain"] = min(best["plain"], _plain_step_seconds(model, targets, steps))
                seconds, route_used = _batched_step_seconds(targets, "auto", steps)
                best["fast"] = min(best["fast"], seconds)
                if not args.skip_vmap:
                    best["vmap"] = min(
                        best["vmap"], _batched_step_seconds(targets, "vmap", steps)[0]
                    )
            row = {
                "model": model_name,
                "parameters": params,
                "n": n,
                "batch_size": 1,
                "auto_route": route_used,  # route the engine picked by default
                "plain_seconds_per_iteration": best["plain"],
                "batched_seconds_per_iteration": best["fast"],
                "batched_seconds_per_reconstruction_iteration": best["fast"] / n,
                "plain_seconds_per_reconstruction_iteration": best["plain"] / n,
                "reconstructions_per_second_at_200_iterations": n / (200 * best["fast"]),
                "speedup_vs_plain": best["plain"] / best["fast"],
            }
            if not args.skip_vmap:
                row["vmap_seconds_per_iteration"] = best["vmap"]
                row["vmap_speedup_vs_plain"] = best["plain"] / best["vmap"]
            results.append(row)
            print(json.dumps(row), flush=True, file=__import__("sys").stderr)
    return {
        "benchmark": "attack_speed",
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "device": "cpu",
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--models", nargs="+", default=["cnn", "convnet64"])
    parser.add_argument("--n", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument(
        "--steps", type=int, default=6, help="timed iterations (a third for larger models)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skip-vmap", action="store_true", help="do not time the generic vmap route"
    )
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
