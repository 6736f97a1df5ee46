"""The fast route's pieces: Linear gradients kept as factors, average pooling as a convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.updates import avg_pool, candidates
from attacks.updates.avg_pool import ConvolutionAvgPool, replace_avg_pools
from attacks.updates.candidates import LinearFactors


def _factors(rows: int) -> tuple[LinearFactors, torch.Tensor]:
    gen = torch.Generator().manual_seed(rows)
    a = torch.randn(3, rows, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    d = torch.randn(3, rows, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(3, 5, 7, dtype=torch.float64, generator=gen)
    return LinearFactors(a, d), g


@pytest.mark.parametrize("rows", [1, 3, candidates.LEFT_MULTIPLY_ROWS + 4])
def test_factor_inner_products_equal_those_of_the_materialised_gradient(rows):
    """Both ways `dot` multiplies (few rows, many rows) give the values and gradients of
    the (N, out, in) gradient they stand for."""
    factors, g = _factors(rows)
    full = factors.materialize()
    torch.testing.assert_close(factors.dot(g), (full * g).flatten(1).sum(1))
    torch.testing.assert_close(factors.sq_norm(), full.square().flatten(1).sum(1))
    wrt = [factors.a, factors.d]
    got = torch.autograd.grad((factors.dot(g) + factors.sq_norm()).sum(), wrt)
    want = torch.autograd.grad(((full * g).sum() + full.square().sum()), wrt)
    for u, v in zip(got, want, strict=True):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize(
    ("kernel", "stride", "size"),
    [(2, None, (8, 8)), (2, None, (7, 9)), (3, 2, (8, 7)), ((2, 3), (1, 2), (6, 8))],
)
def test_pooling_as_a_convolution_equals_average_pooling_to_second_order(
    monkeypatch, kernel, stride, size
):
    """Values, gradients and the gradients of gradients (what the attack differentiates)
    agree, odd sizes whose last rows the pooling drops included."""
    monkeypatch.setattr(avg_pool, "POOL_AS_CONVOLUTION_FROM", 0)
    pool = nn.AvgPool2d(kernel, stride)
    swapped = ConvolutionAvgPool(pool)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=gen, requires_grad=True)
    outputs = [pool(x), swapped(x)]
    torch.testing.assert_close(outputs[1], outputs[0])
    v = torch.randn(outputs[0].shape, dtype=torch.float64, generator=gen, requires_grad=True)
    firsts = [torch.autograd.grad(y, x, v, create_graph=True)[0] for y in outputs]
    torch.testing.assert_close(firsts[1], firsts[0])
    w = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    seconds = [torch.autograd.grad(f, v, w)[0] for f in firsts]
    torch.testing.assert_close(seconds[1], seconds[0])


def test_only_plain_average_pools_are_swapped():
    model = nn.Sequential(
        nn.AvgPool2d(2),
        nn.Sequential(nn.AvgPool2d(2, padding=1), nn.AvgPool2d(3)),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.AvgPool2d(2, divisor_override=3),
        nn.MaxPool2d(2),
    )
    replace_avg_pools(model)
    layers = [model[0], model[1][0], model[1][1], model[2], model[3], model[4]]
    assert [type(m) for m in layers] == [
        ConvolutionAvgPool,
        nn.AvgPool2d,
        ConvolutionAvgPool,
        nn.AvgPool2d,
        nn.AvgPool2d,
        nn.MaxPool2d,
    ]
