"""Batch norm in train mode, normalised per candidate batch, never across candidates.

The fast route folds the candidates into the channel axis and runs the native kernel
(`FoldedBatchNorm`); the generic route, vmapped over candidates, normalises with mean and
variance ops (`GroupBatchNorm`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attacks.updates.layers import BN_TYPES, swap_layers


class GroupBatchNorm(nn.Module):
    """Batch norm in train mode from elementary ops (generic route).

    Under torch.func, the native batch norm's double backward inside `grad` + `vmap`
    returned wrong input gradients (torch 2.x; first-order updates were right), so the
    generic route normalises with mean/var ops, whose derivatives compose correctly.
    Each vmapped call sees one candidate's batch, so its statistics are per candidate.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias
        self.eps = source.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0, *range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, unbiased=False, keepdim=True)
        out = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out


class FoldedBatchNorm(nn.Module):
    """Batch norm in train mode per candidate with the native kernel (fast route).

    The N candidates are folded into the channel axis, (N·B, C, …) → (B, N·C, …), so the
    kernel's per-channel statistics are per candidate; the affine weight and bias enter
    repeated N times as fresh leaves, whose gradients are then exactly the per-candidate
    gradients of the layer's weight and bias.
    """

    def __init__(self, source: nn.Module, batch_size: int) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias
        self.eps = source.eps
        self.batch_size = batch_size
        self.leaves: dict[str, torch.Tensor] = {}
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, spatial = self.batch_size, x.shape[1], x.shape[2:]
        n = x.shape[0] // b
        folded = x.reshape(n, b, c, *spatial).transpose(0, 1).reshape(b, n * c, *spatial)
        self.leaves = {}
        for key in ("weight", "bias"):
            p = getattr(self, key)
            if p is not None:
                self.leaves[key] = p.detach().repeat(n).requires_grad_(True)
        out = F.batch_norm(
            folded,
            None,
            None,
            self.leaves.get("weight"),
            self.leaves.get("bias"),
            True,
            0.0,
            self.eps,
        )
        dims = (0, *range(2, folded.dim()))
        self.stats = (
            folded.mean(dim=dims).reshape(n, c),
            folded.var(dim=dims, unbiased=False).reshape(n, c),
        )
        return out.reshape(b, n, c, *spatial).transpose(0, 1).reshape(x.shape)


def leaf_gradient(
    leaves: dict[str, torch.Tensor], grads: dict[str, torch.Tensor | None], key: str, n: int
) -> torch.Tensor | None:
    """A folded batch norm's (N·C,) leaf gradient as (N, C); zeros where unused, None if absent."""
    if key not in leaves:
        return None
    g = grads[key]
    return (torch.zeros_like(leaves[key]) if g is None else g).reshape(n, -1)


def replace_batch_norm(parent: nn.Module, batch_size: int | None) -> None:
    """Swap train-mode batch norms for `FoldedBatchNorm` (batch_size given) or `GroupBatchNorm`."""

    def swap(layer: nn.Module) -> nn.Module | None:
        if not isinstance(layer, BN_TYPES):
            return None
        return FoldedBatchNorm(layer, batch_size) if batch_size else GroupBatchNorm(layer)

    swap_layers(parent, swap)
