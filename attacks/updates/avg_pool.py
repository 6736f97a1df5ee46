"""Average pooling as a depthwise strided convolution, for the fast route on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attacks.updates.layers import swap_layers


class ConvolutionAvgPool(nn.Module):
    """2-D average pooling as a depthwise strided convolution with a constant kernel (fast route).

    The same values up to rounding. On a CPU the convolution kernels are several times
    faster than average pooling's on a batch of candidates, forward and backward (a
    transposed convolution), and the attack differentiates through both (EXPERIMENTS.md
    §6: pooling was a fifth of the paper CNN's step). The two are each other's adjoint
    (`_PoolFunction`, `_UnpoolFunction`), so autograd never takes the grouped
    convolution's own double backward, which loops over the channels. Only pools without
    padding, ceiling or divisor override are swapped (`replace_avg_pools`); small
    inputs, inputs other than (N, C, H, W) and other devices than the CPU use the
    pooling kernel (`POOL_AS_CONVOLUTION_FROM`).
    """

    def __init__(self, source: nn.AvgPool2d) -> None:
        super().__init__()
        self.source = source
        self.kernel_size = _pair(source.kernel_size)
        self.stride = _pair(source.stride or source.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.device.type != "cpu" or x.numel() < POOL_AS_CONVOLUTION_FROM:
            return self.source(x)
        return _PoolFunction.apply(x, self.kernel_size, self.stride)


POOL_AS_CONVOLUTION_FROM = 300_000
"""Inputs of at least this many elements are pooled as convolutions; below it the pooling
kernel is as fast (the crossover measured on a CPU: EXPERIMENTS.md §6). On other devices
the pooling kernel is used."""


def _mean_kernel(channels: int, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    return torch.full(
        (channels, 1, *size), 1.0 / (size[0] * size[1]), dtype=like.dtype, device=like.device
    )


class _PoolFunction(torch.autograd.Function):
    """x (N, C, H, W) → its window means; backward `_UnpoolFunction`."""

    @staticmethod
    def forward(ctx, x, size, stride):
        ctx.size, ctx.stride, ctx.input_size = size, stride, tuple(x.shape[-2:])
        channels = x.shape[1]
        return F.conv2d(x, _mean_kernel(channels, size, x), stride=stride, groups=channels)

    @staticmethod
    def backward(ctx, grad):
        return _UnpoolFunction.apply(grad, ctx.size, ctx.stride, ctx.input_size), None, None


class _UnpoolFunction(torch.autograd.Function):
    """The adjoint of `_PoolFunction`: each window's value spread evenly over the window."""

    @staticmethod
    def forward(ctx, grad, size, stride, input_size):
        ctx.size, ctx.stride = size, stride
        channels, out_h, out_w = grad.shape[1:]
        # rows and columns the pooling dropped at the far edges come back as zeros
        padding = tuple(
            full - ((out - 1) * s + k)
            for full, out, s, k in zip(input_size, (out_h, out_w), stride, size, strict=True)
        )
        return F.conv_transpose2d(
            grad,
            _mean_kernel(channels, size, grad),
            stride=stride,
            groups=channels,
            output_padding=padding,
        )

    @staticmethod
    def backward(ctx, grad):
        return _PoolFunction.apply(grad, ctx.size, ctx.stride), None, None, None


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def replace_avg_pools(parent: nn.Module) -> None:
    """Swap plain `nn.AvgPool2d` layers for `ConvolutionAvgPool`."""

    def swap(layer: nn.Module) -> nn.Module | None:
        plain = (
            isinstance(layer, nn.AvgPool2d)
            and _pair(layer.padding) == (0, 0)
            and not layer.ceil_mode
            and layer.divisor_override is None
        )
        return ConvolutionAvgPool(layer) if plain else None

    swap_layers(parent, swap)
