"""Attack quality: mean PSNR of each attack under no defense, Gaussian and Laplacian noise.

Untrained paper CNN, MNIST, batch size 1, the first `--images` test images, each
attack's default budget; noise drawn with a per-image seed. With `--tune`, instead
grid-search each attack's prior weight on the first `--images` *training* images (held
out from the scored test images) by PSNR, and print the best settings.

    python benchmarks/attack_quality.py --data-root DATA [--out FILE] [--tune]
        [--attacks bayes l2 ...] [--defenses none gaussian:sigma=0.1 ...] [--images N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from attacks import AttackTarget, ThreatModel, build_attack
from attacks.tuning import search
from defenses.mechanisms import GaussianMechanism, LaplacianMechanism
from fedsim.data import load_dataset
from fedsim.metrics.psnr import psnr_per_image
from fedsim.models import build_model

DEFENSES = {
    "none": None,
    "gaussian:sigma=0.1": GaussianMechanism(sigma=0.1),
    "laplacian:scale=0.1": LaplacianMechanism(scale=0.1),
}
ATTACK_NAMES = ("bayes", "l2", "l1", "cos", "cos-paper")


def make_targets(model, images, labels, mechanism) -> list[AttackTarget]:
    targets = []
    for i in range(images.shape[0]):
        x, y = images[i : i + 1], labels[i : i + 1]
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        gen = torch.Generator().manual_seed(1000 + i)
        if isinstance(mechanism, GaussianMechanism):
            grads = [g + mechanism.sigma * torch.randn(g.shape, generator=gen) for g in grads]
        elif isinstance(mechanism, LaplacianMechanism):
            laplace = torch.distributions.Laplace(0.0, mechanism.scale)
            # inverse-CDF sampling from a seeded uniform keeps the draw reproducible
            grads = [
                g + laplace.icdf(torch.rand(g.shape, generator=gen).clamp(1e-7, 1 - 1e-7))
                for g in grads
            ]
        targets.append(
            AttackTarget(
                model=model,
                update=[g.detach() for g in grads],
                batch_size=1,
                input_shape=tuple(x.shape[1:]),
                num_classes=10,
                labels=y,
                mechanism=mechanism,
                threat=ThreatModel(labels_known=True),
            )
        )
    return targets


def score(recs, truth) -> float:
    return float(
        psnr_per_image(torch.cat([r.inputs for r in recs]), torch.cat(list(truth)))
        .clamp(max=100)
        .mean()
    )


def evaluate(args, model, data) -> dict:
    images, labels = data.images[: args.images], data.labels[: args.images]
    rows = []
    for defense in args.defenses:
        mechanism = DEFENSES[defense]
        targets = make_targets(model, images, labels, mechanism)
        for name in args.attacks:
            start = time.perf_counter()
            recs = build_attack(name).reconstruct_many(targets)
            seconds = time.perf_counter() - start
            values = psnr_per_image(torch.cat([r.inputs for r in recs]), images).clamp(max=100)
            row = {
                "attack": name,
                "defense": defense,
                "psnr": [round(float(v), 2) for v in values],
                "psnr_mean": float(values.mean()),
                "psnr_median": float(values.median()),
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"{name:6s} {defense:22s} PSNR mean {row['psnr_mean']:.2f} ({seconds:.0f} s)",
                file=sys.stderr,
            )
    return {"benchmark": "attack_quality", "images": args.images, "split": "test", "results": rows}


def tune(args, model, data) -> dict:
    images, labels = data.images[: args.images], data.labels[: args.images]
    grids = {
        "bayes": [{"tv": w} for w in (100.0, 300.0, 1000.0, 3000.0)],
        "l2": [{"tv": w} for w in (0.1, 1.0, 10.0, 100.0)],
        "l1": [{"tv": w} for w in (1.0, 10.0, 100.0, 1000.0)],
        "cos": [{"tv": w} for w in (0.0, 1e-3, 1e-2, 1e-1)],
        "cos-paper": [{"tv": w} for w in (0.0, 1e-4, 1e-3, 1e-2, 1e-1)],
    }
    rows = []
    for defense in args.defenses:
        mechanism = DEFENSES[defense]
        if mechanism is None:
            continue
        targets = make_targets(model, images, labels, mechanism)
        for name in args.attacks:
            result = search(
                name, {"priors": grids[name]}, targets, truth=list(images.split(1)), score=score
            )
            rows.append(
                {
                    "attack": name,
                    "defense": defense,
                    "best": result.best,
                    "trials": [{"params": t.params, "psnr": t.value} for t in result.trials],
                }
            )
            print(f"{name:6s} {defense:22s} best {result.best}", file=sys.stderr)
    return {
        "benchmark": "attack_quality_tuning",
        "images": args.images,
        "split": "train",
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACK_NAMES))
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tune", action="store_true", help="tune prior weights on training images")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", "train" if args.tune else "test", args.data_root)
    torch.manual_seed(0)
    model = build_model("cnn", data.info)
    report = tune(args, model, data) if args.tune else evaluate(args, model, data)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
