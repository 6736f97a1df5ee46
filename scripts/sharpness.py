"""The largest learning rate plain SGD can take at a model's initialisation: 2 / λ_max.

Gradient descent on a loss whose Hessian has top eigenvalue λ_max diverges along
that eigenvector once lr > 2 / λ_max. This measures λ_max of the mean cross-entropy
of random training batches at the seeded initial weights (power iteration on
Hessian-vector products), for fedsim's initialisation of a model and, for contrast,
PyTorch's default one (`reset_parameters`), and prints 2 / λ_max.

    python scripts/sharpness.py --model cnn --batch 4 64
    python scripts/sharpness.py --dataset cifar10 --data-root DATA --model convbig
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fedsim.data import load_dataset
from fedsim.models import build_model


def top_eigenvalue(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int = 30
) -> float:
    """λ_max of the Hessian of the mean cross-entropy on (x, y) at the model's weights."""
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())

    def loss(*values: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            functional_call(model, dict(zip(names, values, strict=True)), (x,)), y
        )

    generator = torch.Generator().manual_seed(0)
    vector = [torch.randn(p.shape, generator=generator) for p in params]
    value = 0.0
    for _ in range(iterations):
        norm = math.sqrt(sum(float((v * v).sum()) for v in vector))
        vector = [v / norm for v in vector]
        _, product = torch.autograd.functional.hvp(loss, params, tuple(vector))
        value = sum(float((a * b).sum()) for a, b in zip(product, vector, strict=True))
        vector = list(product)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--draws", type=int, default=3, help="random batches per size")
    args = parser.parse_args()
    data = load_dataset(args.dataset, "train", args.data_root).as_float()
    for init in ("fedsim", "pytorch-default"):
        torch.manual_seed(0)
        model = build_model(args.model, data.info)
        if init == "pytorch-default":
            for module in model.modules():
                if module is not model and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        model.train()
        for batch in args.batch:
            generator = torch.Generator().manual_seed(batch)
            values = []
            for _ in range(args.draws):
                index = torch.randperm(len(data), generator=generator)[:batch]
                values.append(top_eigenvalue(model, data.images[index], data.labels[index]))
            mean = statistics.fmean(values)
            print(
                f"{args.model} {init:>15} init, batch {batch:>3}: λ_max "
                f"{' '.join(f'{v:.1f}' for v in values)} → lr < 2/λ ≈ {2 / mean:.3f}"
            )


if __name__ == "__main__":
    main()
