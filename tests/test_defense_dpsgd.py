"""DP-SGD: per-sample clipping, noise σ·C/B, batch norm refused, ε from Opacus' accountant."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from defenses import DefenseError, PrivacyLedger, batch_gradient, dp_epsilon, parse_defense
from defenses.dpsgd import clip_per_sample, per_sample_gradients
from defenses.mechanisms import ClippedGaussianMechanism
from fedsim.models.cnn import PaperCNN


def small_model() -> nn.Module:
    return PaperCNN((1, 8, 8), 4, [0.5], [0.25])


def batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_per_sample_gradients_match_one_backward_per_sample() -> None:
    model, (x, y) = small_model(), batch(3)
    per_sample = per_sample_gradients(model, x, y)
    for i in range(3):
        single = batch_gradient(model, x[i : i + 1], y[i : i + 1])
        for a, b in zip(per_sample, single, strict=True):
            torch.testing.assert_close(a[i], b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("clip", [1e-3, 0.05, 1.0, 100.0])
def test_clipped_per_sample_norms_never_exceed_c(clip: float) -> None:
    model, (x, y) = small_model(), batch(8)
    x = x * 5  # large inputs give large gradients
    clipped = clip_per_sample(per_sample_gradients(model, x, y), clip)
    norms = torch.cat([g.reshape(8, -1) for g in clipped], dim=1).norm(dim=1)
    assert torch.all(norms <= clip * (1 + 1e-5))


def test_dpsgd_noise_on_the_mean_has_std_sigma_c_over_b() -> None:
    model, (x, y) = small_model(), batch(4)
    clip, sigma = 0.5, 2.0
    noiseless = parse_defense(f"dpsgd:clip={clip},sigma=0").transform_gradients(
        model, x, y, [], torch.Generator()
    )
    defense = parse_defense(f"dpsgd:clip={clip},sigma={sigma}")
    g = torch.Generator().manual_seed(0)
    noise = torch.cat(
        [
            torch.cat(
                [
                    (a - b).reshape(-1)
                    for a, b in zip(
                        defense.transform_gradients(model, x, y, [], g), noiseless, strict=True
                    )
                ]
            )
            for _ in range(3)
        ]
    )
    std = sigma * clip / 4
    n = noise.numel()
    assert abs(noise.var() - std**2) < 5 * std**2 * math.sqrt(2 / (n - 1))
    # Without noise, the step is the mean of the clipped per-sample gradients.
    mean = [g.mean(dim=0) for g in clip_per_sample(per_sample_gradients(model, x, y), clip)]
    for a, b in zip(noiseless, mean, strict=True):
        torch.testing.assert_close(a, b)


def test_batch_norm_models_are_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 4))
    x, y = batch(2)
    with pytest.raises(DefenseError, match="batch norm"):
        parse_defense("dpsgd").transform_gradients(model, x, y, [], torch.Generator())


def test_mechanism_clips_candidates_and_scales_noise_by_batch() -> None:
    mechanism = parse_defense("dpsgd:clip=1,sigma=0.5").mechanism_for(4)
    assert isinstance(mechanism, ClippedGaussianMechanism)
    assert mechanism.std == pytest.approx(0.5 * 1 / 4)
    big = [torch.full((1, 4), 10.0)]
    clipped = mechanism.clip_candidates(big)
    assert clipped[0].norm() == pytest.approx(1.0)
    observed = [torch.full((4,), 0.5)]
    ll = mechanism.log_likelihood(observed, [torch.cat([torch.full((1, 4), 0.5), big[0]])])
    assert ll[0] == 0 and ll[1] == 0  # the clipped big candidate is exactly the observed update


def test_epsilon_equals_the_opacus_accountant() -> None:
    """A standard setting (MNIST, batch 256 of 60 000, σ = 1.1, 60 epochs, δ = 1e-5)."""
    from opacus.accountants import RDPAccountant

    sigma, q, delta = 1.1, 256 / 60000, 1e-5
    steps = 60 * math.ceil(60000 / 256)
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    expected = accountant.get_epsilon(delta=delta)
    assert dp_epsilon(sigma, q, steps, delta) == pytest.approx(expected, rel=1e-12)
    assert parse_defense(f"dpsgd:sigma={sigma},delta={delta}").epsilon(q, steps) == pytest.approx(
        expected, rel=1e-12
    )
    assert 1.0 < expected < 10.0


def test_ledger_reports_round_and_cumulative_epsilon() -> None:
    ledger = PrivacyLedger(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5)
    first_round, first_total = ledger.record_round(5)
    second_round, second_total = ledger.record_round(5)
    assert first_round == pytest.approx(first_total) == pytest.approx(second_round)
    assert second_total > first_total
    assert second_total == pytest.approx(dp_epsilon(1.0, 0.1, 10, 1e-5))
    assert second_total < 2 * first_total  # RDP composes better than adding ε
