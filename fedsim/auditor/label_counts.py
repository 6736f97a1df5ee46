"""The `label_counts` field of a leakage record: the class histogram an update gives away.

Read from the head's update alone (`attacks.labels.count_labels`: a few forward passes,
no optimisation), so it is there for every audited update, at any batch size, with or
without ground truth. Where the true labels are known (simulation) it is scored: the
share of the batch's labels counted right, Σ_c min(true_c, recovered_c) / B, whether the
histogram is exact, and beside them `guess_accuracy`, the same share for the guess that
ignores the update (the batch split evenly over the classes): counts leak only where
they beat it.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.labels import count_labels
from attacks.target import AttackTarget


def label_counts_field(target: AttackTarget, true_labels: torch.Tensor | None) -> dict[str, Any]:
    """{"method", "recovered", "true", "accuracy", "exact", "guess_accuracy"}: counts by
    class (str keys, classes with none left out); `true` and the scores None without
    ground truth; `recovered` None (and `message` why) where the head cannot be read."""
    true = None if true_labels is None else _histogram(torch.bincount(true_labels.cpu().long()))
    guess = None if true is None else _accuracy(true, _even_split(target), target.batch_size)
    try:
        found = count_labels(target)
    except Exception as error:  # noqa: BLE001 - the audit goes on without the counts
        message = (f"{type(error).__name__}: {error}".splitlines() or [""])[0]
        return {
            "method": None,
            "recovered": None,
            "true": true,
            "accuracy": None,
            "exact": None,
            "guess_accuracy": guess,
            "message": message,
        }
    recovered = _histogram(found.counts)
    accuracy = exact = None
    if true is not None:
        accuracy = _accuracy(true, recovered, target.batch_size)
        exact = recovered == true
    return {
        "method": found.method,
        "recovered": recovered,
        "true": true,
        "accuracy": accuracy,
        "exact": exact,
        "guess_accuracy": guess,
    }


def _accuracy(true: dict[str, int], found: dict[str, int], size: int) -> float:
    """Σ_c min(true_c, found_c) / B: the share of the batch's labels counted right."""
    return sum(min(n, found.get(c, 0)) for c, n in true.items()) / max(1, size)


def _even_split(target: AttackTarget) -> dict[str, int]:
    """The batch split as evenly as it goes over the classes, the first ones taking the rest."""
    base, rest = divmod(target.batch_size, target.num_classes)
    return _histogram(torch.tensor([base + (c < rest) for c in range(target.num_classes)]))


def _histogram(counts: torch.Tensor) -> dict[str, int]:
    return {str(c): int(n) for c, n in enumerate(counts.tolist()) if n}
