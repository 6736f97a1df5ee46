"""Fraction of a batch's labels recovered, regardless of their order.

An attack on a batch returns labels in no particular order, so the batch's labels are
compared as multisets: the score is Σ_c min(#c in preds, #c in target) / N, which is
the accuracy under the best one-to-one matching of predicted to true labels.
"""

from __future__ import annotations

import torch


def _matched_count(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if preds.ndim != 1 or preds.shape != target.shape:
        raise ValueError(
            f"expected two label vectors of one length, got {tuple(preds.shape)} and {tuple(target.shape)}"
        )
    if preds.is_floating_point() or target.is_floating_point():
        raise ValueError("labels must be integer class indices")
    if preds.numel() == 0:
        return torch.zeros((), dtype=torch.long, device=preds.device)
    classes = int(torch.maximum(preds.max(), target.max())) + 1
    counts_preds = torch.bincount(preds, minlength=classes)
    counts_target = torch.bincount(target.to(preds.device), minlength=classes)
    return torch.minimum(counts_preds, counts_target).sum()


def label_accuracy(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Order-independent fraction (float64 scalar) of the labels in `target` found in `preds`."""
    matched = _matched_count(preds, target)
    return matched.double() / max(target.numel(), 1)


class LabelAccuracy:
    """Accumulating twin of `label_accuracy`: each batch is matched on its own, and
    `compute` returns all matched labels over all labels seen."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._matched = 0
        self._total = 0

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._matched += int(_matched_count(preds, target))
        self._total += target.numel()

    def compute(self) -> torch.Tensor:
        if self._total == 0:
            raise RuntimeError("LabelAccuracy.compute called before any update")
        return torch.tensor(self._matched / self._total, dtype=torch.float64)

    def __call__(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Accumulate this batch and return its own accuracy."""
        self.update(preds, target)
        return label_accuracy(preds, target)
