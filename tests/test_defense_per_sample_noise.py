"""The paper's noise defenses (noise on each sample's gradient, then the mean) beside
fedsim's (noise once on the update): distinct names, distinct scales at B > 1."""

from __future__ import annotations

import math

import pytest
import torch

from attacks import Protocol
from attacks.local_optimizer import LocalOptimizer
from defenses import MechanismRefused, batch_gradient, client_update, parse_defense
from defenses.base import stated_mechanism
from defenses.mechanisms import GaussianMechanism, LaplacianMechanism
from fedsim.models.cnn import PaperCNN

B, LR = 4, 0.5


def _noise(spec: str, kind: str = "fedsgd", draws: int = 3) -> torch.Tensor:
    """What `spec` added to a batch of B images' update, over `draws` updates."""
    torch.manual_seed(0)
    model = PaperCNN((1, 8, 8), 4, [0.5], [0.25])
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(B, 1, 8, 8, generator=g), torch.randint(0, 4, (B,), generator=g)
    clean = batch_gradient(model, x, y)
    if kind == "fedavg":
        clean = [-LR * c for c in clean]
    out = []
    for seed in range(draws):
        sent = client_update(parse_defense(spec), model, x, y, torch.Generator().manual_seed(seed),
                             kind=kind, local_lr=LR).update  # fmt: skip
        out.append(torch.cat([(s - c).reshape(-1) for s, c in zip(sent, clean, strict=True)]))
    return torch.cat(out).double()


def _close(var: torch.Tensor, expected: float, n: int) -> bool:
    return abs(float(var) - expected) < 6 * expected * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("kind", ["fedsgd", "fedavg"])
def test_gaussian_per_sample_puts_sigma_over_root_b_on_the_mean(kind: str) -> None:
    factor = LR if kind == "fedavg" else 1.0
    noise = _noise("gaussian-per-sample:sigma=0.2", kind)
    expected = (factor * 0.2 / math.sqrt(B)) ** 2
    assert _close(noise.var(), expected, noise.numel())
    mechanism = parse_defense("gaussian-per-sample:sigma=0.2").mechanism_for(
        B, Protocol(kind=kind, local_lr=LR)
    )
    assert isinstance(mechanism, GaussianMechanism)
    assert mechanism.sigma == pytest.approx(factor * 0.2 / math.sqrt(B))
    # fedsim's own `gaussian` adds σ once: B times the variance, and says so
    once = _noise("gaussian:sigma=0.2")
    assert _close(once.var(), 0.2**2, once.numel()) and not _close(
        once.var(), expected, once.numel()
    )
    assert parse_defense("gaussian:sigma=0.2").mechanism_for(B).noise_scale == 0.2


def test_laplacian_per_sample_averages_b_draws_and_states_a_likelihood_for_one_sample() -> None:
    noise = _noise("laplacian-per-sample:b=0.2")
    assert _close(noise.var(), 2 * 0.2**2 / B, noise.numel())
    # the mean of Laplace draws is lighter-tailed than Laplace: excess kurtosis 3/B, not 3
    kurtosis = float(((noise - noise.mean()) ** 4).mean() / noise.var() ** 2) - 3
    assert abs(kurtosis - 3 / B) < 0.3
    defense = parse_defense("laplacian-per-sample:b=0.2")
    assert defense.mechanism_for(1) == LaplacianMechanism(0.2)
    assert defense.mechanism_for(1, Protocol(kind="fedavg", local_lr=LR)).noise_scale == 0.1
    mechanism, why = stated_mechanism(defense, B)
    assert mechanism is None and "4 Laplace draws" in why and "\n" not in why


@pytest.mark.parametrize("spec", ["gaussian-per-sample", "laplacian-per-sample"])
def test_several_local_steps_refuse_the_likelihood(spec: str) -> None:
    with pytest.raises(MechanismRefused, match="3 local steps"):
        parse_defense(spec).mechanism_for(1, Protocol(kind="fedavg", local_steps=3))


@pytest.mark.parametrize("spec", ["gaussian-per-sample", "laplacian-per-sample", "dpsgd"])
@pytest.mark.parametrize("optimizer", [LocalOptimizer("sgd", momentum=0.9), LocalOptimizer("adam")])
def test_another_local_optimiser_refuses_the_likelihood(
    spec: str, optimizer: LocalOptimizer
) -> None:
    """Under FedAvg a gradient-stage defense states its likelihood for plain SGD steps only
    (the delta −lr·(g + n)): nesterov momentum scales the noise by 1 + μ and Adam's step is
    not linear in it, so the client's optimiser is refused rather than modelled wrongly."""
    protocol = Protocol(kind="fedavg", local_lr=LR, optimizer=optimizer)
    with pytest.raises(MechanismRefused, match="plain SGD steps"):
        parse_defense(spec).mechanism_for(1, protocol)


def test_per_sample_gaussian_composes_with_later_gaussian_noise() -> None:
    mechanism = parse_defense("gaussian-per-sample:0.2 | gaussian:0.1").mechanism_for(B)
    assert mechanism.sigma == pytest.approx(math.sqrt((0.2 / 2) ** 2 + 0.1**2))
