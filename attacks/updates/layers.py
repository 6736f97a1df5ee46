"""The model as both routes run it: a private copy in the client's mode, layer swaps."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def private_copy(model: nn.Module, bn_train_mode: bool) -> nn.Module:
    """A detached copy in the client's mode, with in-place activations turned off."""
    clone = copy.deepcopy(model)
    for p in clone.parameters():
        p.requires_grad_(False)
    clone.train(bn_train_mode)
    for m in clone.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False
    return clone


def running_stats(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    stats = []
    for m in model.modules():
        if isinstance(m, BN_TYPES) and m.running_mean is not None:
            stats.append((m.running_mean.detach().clone(), m.running_var.detach().clone()))
    return stats


def batch_moments(
    x: torch.Tensor, sample_dims: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=sample_dims)
    var = x.var(dim=sample_dims, unbiased=False)
    return mean, var


def swap_layers(parent: nn.Module, swap: Callable[[nn.Module], nn.Module | None]) -> None:
    """Replace every descendant layer for which `swap` returns a module by that module;
    the others are searched in turn."""
    for name, child in parent.named_children():
        new = swap(child)
        if new is not None:
            setattr(parent, name, new)
        else:
            swap_layers(child, swap)
