"""Stochastic quantisation is unbiased and on its grid; its mechanism prefers the clean update."""

from __future__ import annotations

import math

import torch

from defenses import parse_defense
from defenses.quantize import stochastic_quantize


def test_stochastic_quantization_is_unbiased_and_on_grid() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(500, generator=g)
    bits, draws = 2, 400
    samples = torch.stack([stochastic_quantize(t, bits, g) for _ in range(draws)])
    step = (t.max() - t.min()) / (2**bits - 1)
    levels = (samples - t.min()) / step
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert torch.all((samples - t).abs() <= step + 1e-6)
    # Per coordinate the rounding variance is at most Δ²/4: mean error within 5 standard errors.
    error = samples.mean(dim=0) - t
    assert error.abs().max() < 5 * (step / 2) / math.sqrt(draws) * 1.5


def test_quantization_mechanism_prefers_clean_and_penalises_outside_cells() -> None:
    defense = parse_defense("quantize:bits=3")
    g = torch.Generator().manual_seed(1)
    clean = [torch.randn(200, generator=g)]
    observed = defense.transform_update(clean, g)
    step = float((observed[0].max() - observed[0].min()) / 7)
    far = clean[0] + 2 * step
    near = clean[0] + 0.3 * step * torch.randn(200, generator=g)
    ll = defense.mechanism.log_likelihood(observed, [torch.stack([clean[0], near, far])])
    assert ll[0] > ll[1] > ll[2]


def test_sign_compression_and_mechanism() -> None:
    defense = parse_defense("sign")
    clean = [torch.tensor([0.5, -2.0, 0.0, 3.0])]
    (sent,) = defense.transform_update(clean, torch.Generator())
    assert sent.tolist() == [1.0, -1.0, 0.0, 1.0]
    flipped = clean[0] * torch.tensor([1.0, -1.0, 1.0, 1.0])
    ll = defense.mechanism.log_likelihood([sent], [torch.stack([clean[0], flipped])])
    assert ll[0] > ll[1]
