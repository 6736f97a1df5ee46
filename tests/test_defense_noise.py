"""Noise and pruning defenses: the noise they add matches their parameters, and their
mechanisms rank the clean update above perturbed candidates."""

from __future__ import annotations

import math

import pytest
import torch

from defenses import DEFENSES, parse_defense
from defenses.base import stated_mechanism
from defenses.mechanisms import GaussianMechanism
from defenses.mechanisms.masked import fixed_mask

SHAPES = [(40, 30), (40,), (10, 40), (10,)]  # 2 050 coordinates, like a small dense net
Z = 5.0  # tolerance in standard errors: a false failure has probability < 1e-6


def clean_update(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) * 0.3 for s in SHAPES]


def flat(update: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([u.reshape(-1) for u in update])


def draws(spec: str, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, observed) flattened: `count` independent defended copies of one update."""
    defense = parse_defense(spec)
    clean = clean_update()
    g = torch.Generator().manual_seed(seed)
    observed = torch.stack([flat(defense.transform_update(clean, g)) for _ in range(count)])
    return flat(clean), observed


def test_gaussian_noise_matches_sigma() -> None:
    sigma = 0.1
    clean, observed = draws(f"gaussian:sigma={sigma}", 20)
    noise = (observed - clean).reshape(-1)
    n = noise.numel()
    assert abs(noise.mean()) < Z * sigma / math.sqrt(n)
    # Standard error of the sample variance of a normal: σ² √(2 / (n − 1)).
    assert abs(noise.var() - sigma**2) < Z * sigma**2 * math.sqrt(2 / (n - 1))


def test_laplacian_noise_matches_scale() -> None:
    b = 0.1
    clean, observed = draws(f"laplacian:b={b}", 20)
    noise = (observed - clean).reshape(-1)
    n = noise.numel()
    # Var(X) = 2b²; |X| is exponential with mean b and variance b².
    assert abs(noise.mean()) < Z * math.sqrt(2) * b / math.sqrt(n)
    assert abs(noise.abs().mean() - b) < Z * b / math.sqrt(n)
    # Median of |X| is b·ln 2 (checks the shape, not only the scale); its standard error is b/√n.
    assert abs(noise.abs().median() - b * math.log(2)) < Z * b / math.sqrt(n)


@pytest.mark.parametrize(
    "spec",
    [
        "random-prune:p=0.3",
        "random-prune+gaussian:p=0.3,sigma=0.1",
        "random-prune+laplacian:p=0.3,b=0.1",
    ],
)
def test_random_pruning_prunes_fraction_p_with_a_fresh_mask(spec: str) -> None:
    p = 0.3
    clean, observed = draws(spec, 20)
    kept = observed != 0
    n = kept.numel()
    assert abs(kept.float().mean() - (1 - p)) < Z * math.sqrt(p * (1 - p) / n)
    assert not torch.equal(kept[0], kept[1])  # fresh mask per update


def test_random_soft_pruning_adds_noise_on_kept_coordinates_only() -> None:
    sigma = 0.1
    clean, observed = draws(f"random-prune+gaussian:p=0.5,sigma={sigma}", 20)
    kept = observed != 0
    noise = (observed - clean)[kept]
    n = noise.numel()
    assert abs(noise.var() - sigma**2) < Z * sigma**2 * math.sqrt(2 / (n - 1))
    # Pruned coordinates are exact zeros: the mechanism reads the mask from them.
    assert torch.all(observed[~kept] == 0)


@pytest.mark.parametrize("spec", ["prune:p=0.5", "random-prune:p=0.5"])
def test_plain_pruning_copies_kept_coordinates_exactly(spec: str) -> None:
    clean, observed = draws(spec, 5)
    kept = observed != 0
    assert torch.equal(observed[kept], clean.expand_as(observed)[kept])


def test_the_papers_pruning_uses_one_fixed_mask_known_to_the_adversary() -> None:
    """As `soft_gaussian_pruning` in the paper's code: the mask is drawn once (here from
    the public mask_seed, never from the client's generator) and prunes with probability p."""
    p = 0.3
    clean, observed = draws(f"prune:p={p}", 20)
    kept = observed != 0
    assert all(torch.equal(kept[0], k) for k in kept[1:])  # one mask for every update
    _, other_generator = draws(f"prune:p={p}", 1, seed=9)
    assert torch.equal(kept[0], other_generator[0] != 0)
    _, other_seed = draws(f"prune:p={p},mask_seed=1", 1)
    assert not torch.equal(kept[0], other_seed[0] != 0)
    n = kept[0].numel()
    assert abs(kept[0].float().mean() - (1 - p)) < Z * math.sqrt(p * (1 - p) / n)
    mask = flat([fixed_mask(u, p, 0) for u in clean_update()])
    assert torch.equal(kept[0], mask.bool())


@pytest.mark.parametrize("noise", ["gaussian:p=0.3,sigma=0.1", "laplacian:p=0.3,b=0.1"])
def test_the_papers_soft_pruning_noises_every_coordinate(noise: str) -> None:
    clean, observed = draws(f"prune+{noise}", 20)
    mask = flat([fixed_mask(u, 0.3, 0) for u in clean_update()])
    residual = observed - mask * clean
    assert not torch.any(observed == 0)  # pruned coordinates carry noise too
    pruned, kept = residual[:, mask == 0].reshape(-1), residual[:, mask == 1].reshape(-1)
    variance = 0.1**2 if "gaussian" in noise else 2 * 0.1**2
    for part in (pruned, kept):
        assert abs(part.var() - variance) < Z * variance * math.sqrt(8 / (part.numel() - 1))


def split(vector: torch.Tensor) -> list[torch.Tensor]:
    """(N, D) → per-parameter tensors with a leading candidate dimension."""
    out, start = [], 0
    for s in SHAPES:
        size = math.prod(s)
        out.append(vector[:, start : start + size].reshape(vector.shape[0], *s))
        start += size
    return out


@pytest.mark.parametrize(
    "spec, noise_scale",
    [
        ("gaussian:sigma=0.1", 0.1),
        ("laplacian:b=0.1", 0.1 * math.sqrt(2)),
        ("prune+gaussian:p=0.5,sigma=0.1", 0.1),
        ("prune+laplacian:p=0.5,b=0.1", 0.1 * math.sqrt(2)),
        ("prune:p=0.5", 0.1),
        ("prune:0.5 | gaussian:0.1", 0.1),
        ("random-prune+gaussian:p=0.5,sigma=0.1", 0.1),
        ("random-prune+laplacian:p=0.5,b=0.1", 0.1 * math.sqrt(2)),
        ("random-prune:p=0.5", 0.1),
        ("random-prune:0.5 | gaussian:0.1", 0.1),
    ],
)
def test_mechanism_ranks_clean_update_first(spec: str, noise_scale: float) -> None:
    """Over many noisy updates, the clean update beats every perturbed candidate.

    Perturbations have half the noise's norm; the clean update's expected margin is
    then about √D/4 ≈ 11 standard deviations, so every comparison must go its way.
    """
    defense = parse_defense(spec)
    mechanism = defense.mechanism
    assert mechanism is not None
    clean = clean_update()
    dim = flat(clean).numel()
    g = torch.Generator().manual_seed(3)
    wins = 0
    trials, others = 50, 10
    for _ in range(trials):
        observed = defense.transform_update(clean, g)
        delta = torch.randn(others, dim, generator=g)
        delta = delta / delta.norm(dim=1, keepdim=True) * 0.5 * noise_scale * math.sqrt(dim)
        candidates = torch.cat([flat(clean).unsqueeze(0), flat(clean).unsqueeze(0) + delta])
        ll = mechanism.log_likelihood(observed, split(candidates))
        assert ll.shape == (others + 1,)
        wins += int((ll[0] > ll[1:]).all())
    assert wins == trials


def test_gaussian_mechanism_is_the_exact_log_density() -> None:
    """Differences of the mechanism equal differences of the true Gaussian log density."""
    sigma = 0.1
    clean = clean_update()
    observed = parse_defense(f"gaussian:{sigma}").transform_update(
        clean, torch.Generator().manual_seed(0)
    )
    candidates = flat(clean).unsqueeze(0) + 0.05 * torch.randn(4, flat(clean).numel())
    ll = GaussianMechanism(sigma).log_likelihood(observed, split(candidates))
    density = torch.distributions.Normal(candidates, sigma).log_prob(flat(observed)).sum(dim=1)
    torch.testing.assert_close(ll - ll[0], density - density[0], rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("spec", ["prune+gaussian:p=0.4,sigma=0.1", "prune:0.4 | gaussian:0.1"])
def test_fixed_mask_mechanism_is_the_exact_log_density(spec: str) -> None:
    """The paper's log_prob: Normal(0, σ) of g − m ⊙ c over every coordinate."""
    defense = parse_defense(spec)
    clean = clean_update()
    observed = defense.transform_update(clean, torch.Generator().manual_seed(0))
    obs = flat(observed)
    candidates = flat(clean).unsqueeze(0) + 0.05 * torch.randn(3, obs.numel())
    mask = flat([fixed_mask(u, 0.4, 0) for u in clean])
    density = torch.distributions.Normal(mask * candidates, 0.1).log_prob(obs).sum(dim=1)
    ll = defense.mechanism.log_likelihood(observed, split(candidates))
    torch.testing.assert_close(ll - ll[0], density - density[0], rtol=1e-4, atol=1e-2)


def test_fixed_mask_agrees_on_any_subset_of_the_tensors() -> None:
    """Defense (a Flower mod sees buffers too) and likelihood (a weighted attack splits the
    parameters) may see different tensor lists; each tensor's mask depends on its shape."""
    update = clean_update()
    whole = parse_defense("prune:p=0.5").transform_update(update, torch.Generator())
    part = parse_defense("prune:p=0.5").transform_update(update[2:], torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(whole[2:], part, strict=True))


def test_random_prune_noise_mixture_is_the_exact_log_density() -> None:
    p, sigma = 0.6, 0.1  # prune with probability 0.6: keep 0.4
    mechanism = parse_defense(f"random-prune:{p} | gaussian:{sigma}").mechanism
    assert mechanism is not None
    clean = clean_update()
    observed = parse_defense(f"random-prune:{p} | gaussian:{sigma}").transform_update(
        clean, torch.Generator().manual_seed(0)
    )
    obs = flat(observed)
    candidates = flat(clean).unsqueeze(0) + 0.05 * torch.randn(3, obs.numel())
    normal = torch.distributions.Normal(0.0, sigma)
    density = torch.logaddexp(
        math.log(1 - p) + normal.log_prob(obs - candidates),
        math.log(p) + normal.log_prob(obs).expand_as(candidates),
    ).sum(dim=1)
    ll = mechanism.log_likelihood(observed, split(candidates))
    torch.testing.assert_close(ll, density, rtol=1e-5, atol=1e-2)


STATED = [
    (spec, batch)
    for cls in DEFENSES.values()
    for spec in (cls.name, *cls.examples)
    for batch in (1, 4)
]
"""Every registered defense at its defaults and examples, for one sample and four."""


@pytest.mark.parametrize("spec, batch", STATED)
def test_mechanism_is_differentiable_in_candidate(spec: str, batch: int) -> None:
    """Wherever a defense states a likelihood, the Bayes attack can follow its gradient."""
    defense = parse_defense(spec)
    mechanism, _ = stated_mechanism(defense, batch)
    if mechanism is None:
        return
    clean = clean_update()
    observed = defense.transform_update(clean, torch.Generator().manual_seed(0))
    candidate = [
        (u + 0.01).unsqueeze(0).repeat(2, *([1] * u.dim())).requires_grad_(True) for u in clean
    ]
    ll = mechanism.log_likelihood(observed, candidate)
    ll.sum().backward()
    assert all(c.grad is not None and torch.isfinite(c.grad).all() for c in candidate), spec


def test_topk_keeps_the_largest_magnitudes() -> None:
    clean = clean_update()
    sent = parse_defense("topk:p=0.1").transform_update(clean, torch.Generator())
    for u, s in zip(clean, sent, strict=True):
        kept = s != 0
        assert kept.sum() == math.ceil(0.1 * u.numel())
        assert u[kept].abs().min() >= u[~kept].abs().max()
