"""What the image metrics share: input checks, reductions, and the accumulating module base."""

from __future__ import annotations

from typing import Literal

import torch

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def check_images(preds: torch.Tensor, target: torch.Tensor) -> None:
    """Both (N, C, H, W) of one shape; raise ValueError otherwise."""
    if preds.ndim != 4 or preds.shape != target.shape:
        raise ValueError(
            f"expected preds and target of one (N, C, H, W) shape, got "
            f"{tuple(preds.shape)} and {tuple(target.shape)}"
        )


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply `reduction` to per-image values."""
    check_reduction(reduction)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


class PerImageMetric:
    """Accumulates per-image scores over batches; `compute` reduces them all at once,
    so the result equals the functional form applied to the concatenated batches."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        check_reduction(reduction)
        self.reduction = reduction
        self._values: list[torch.Tensor] = []

    def per_image(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, values: torch.Tensor) -> torch.Tensor:
        """Turn accumulated per-image values into the result (a reduction by default)."""
        return reduce(values, self.reduction)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._values.append(self.per_image(preds.detach(), target.detach()))

    def compute(self) -> torch.Tensor:
        if not self._values:
            raise RuntimeError(f"{type(self).__name__}.compute called before any update")
        return self.finish(torch.cat(self._values))

    def reset(self) -> None:
        self._values = []

    def __call__(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Accumulate this batch and return its own value."""
        values = self.per_image(preds.detach(), target.detach())
        self._values.append(values)
        return self.finish(values)
