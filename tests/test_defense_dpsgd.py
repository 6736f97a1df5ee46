"""DP-SGD: per-sample clipping, noise σ·C/B, batch norm refused, ε from Opacus' accountant,
and the likelihood in the units of the update (refused where it has no closed form)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attacks import AttackError, AttackTarget, Budget, Protocol, ThreatModel, build_attack
from defenses import (
    DefenseError,
    MechanismRefused,
    batch_gradient,
    client_update,
    dp_epsilon,
    parse_defense,
)
from defenses.base import stated_mechanism
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
    accountant.history = [(sigma, q, steps)]
    expected = accountant.get_epsilon(delta=delta)
    assert dp_epsilon(sigma, q, steps, delta) == pytest.approx(expected, rel=1e-9)
    assert 1.0 < expected < 10.0


LR, CLIP, SIGMA = 0.05, 0.5, 2.0


def _fedavg_draws(count: int, steps: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(clean delta −lr·clip_C(g), `count` DP-SGD FedAvg deltas) of one image."""
    model, (x, y) = small_model(), batch(1)
    clean = [-LR * g[0] for g in clip_per_sample(per_sample_gradients(model, x, y), CLIP)]
    defense = parse_defense(f"dpsgd:clip={CLIP},sigma={SIGMA}")
    g = torch.Generator().manual_seed(11)
    draws = [
        torch.cat([d.reshape(-1) for d in client_update(
            defense, model, x, y, g, kind="fedavg", local_steps=steps, local_lr=LR
        ).update])
        for _ in range(count)
    ]  # fmt: skip
    return clean, draws


def test_fedavg_one_step_likelihood_matches_the_sampled_noise() -> None:
    """Under FedAvg the update is a weight delta: bound lr·C, noise lr·σ·C/B. The stated
    scale matches an empirical histogram of sampled noise, and the log-likelihood is the
    log-density of that noise around the clipped candidate."""
    mechanism = parse_defense(f"dpsgd:clip={CLIP},sigma={SIGMA}").mechanism_for(
        1, Protocol(kind="fedavg", local_steps=1, local_lr=LR)
    )
    assert isinstance(mechanism, ClippedGaussianMechanism)
    assert (mechanism.clip, mechanism.noise_scale) == pytest.approx((LR * CLIP, LR * SIGMA * CLIP))
    clean, draws = _fedavg_draws(40)
    flat_clean = torch.cat([c.reshape(-1) for c in clean])
    residual = torch.cat([d - flat_clean for d in draws]).double()
    scale = mechanism.noise_scale
    edges = torch.linspace(-3 * scale, 3 * scale, 25, dtype=torch.float64)
    observed = torch.histogram(residual, bins=edges).hist
    normal = torch.distributions.Normal(0.0, scale)
    expected = (normal.cdf(edges[1:]) - normal.cdf(edges[:-1])) * residual.numel()
    assert torch.all((observed - expected).abs() < 5 * expected.sqrt() + 5)
    # The gradient-unit scale σ·C/B it was compared with before is 20× too wide.
    wide = torch.distributions.Normal(0.0, SIGMA * CLIP)
    assert not torch.all(
        (observed - (wide.cdf(edges[1:]) - wide.cdf(edges[:-1])) * residual.numel()).abs()
        < 5 * expected.sqrt() + 5
    )
    shapes = [c.shape for c in clean]
    sample = _split(draws[0], shapes)
    candidates = flat_clean.unsqueeze(0) + 0.5 * scale * torch.randn(4, flat_clean.numel())
    candidates[1] *= 50  # far outside the bound: clipped back to lr·C
    ll = mechanism.log_likelihood(sample, _split(candidates, shapes, batched=True))
    clipped = mechanism.clip_candidates(_split(candidates, shapes, batched=True))
    flat_clipped = torch.cat([c.reshape(4, -1) for c in clipped], dim=1)
    density = normal.log_prob((draws[0] - flat_clipped).double()).sum(dim=1)
    torch.testing.assert_close(ll.double() - ll[0], density - density[0], rtol=1e-4, atol=1e-2)


def test_fedavg_with_several_local_steps_refuses_the_likelihood_in_one_line() -> None:
    defense = parse_defense(f"dpsgd:clip={CLIP},sigma={SIGMA}")
    with pytest.raises(MechanismRefused) as refused:
        defense.mechanism_for(1, Protocol(kind="fedavg", local_steps=3, local_lr=LR))
    assert "3 local steps" in str(refused.value) and "\n" not in str(refused.value)
    composed = parse_defense(f"ats | dpsgd:clip={CLIP},sigma={SIGMA} | gaussian:0.1")
    mechanism, why = stated_mechanism(composed, 1, Protocol(kind="fedavg", local_steps=3))
    assert mechanism is None and why == str(refused.value)
    model, (_, y) = small_model(), batch(1)
    target = AttackTarget(
        model=model, update=[torch.zeros_like(p) for p in model.parameters()], batch_size=1,
        input_shape=(1, 8, 8), num_classes=4, labels=y, mechanism=None, mechanism_refusal=why,
        protocol=Protocol(kind="fedavg", local_steps=3, local_lr=LR),
        threat=ThreatModel(labels_known=True),
    )  # fmt: skip
    with pytest.raises(AttackError, match=r"attack 'bayes' refused: dpsgd under fedavg"):
        build_attack("bayes").reconstruct(target, Budget(iterations=1))
    assert build_attack("l2").reconstruct(target, Budget(iterations=1)).status == "ok"


def _split(flat: torch.Tensor, shapes: list, batched: bool = False) -> list[torch.Tensor]:
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        part = flat[..., start : start + size]
        out.append(part.reshape(flat.shape[0], *shape) if batched else part.reshape(shape))
        start += size
    return out


def _true_batch_nll(target: AttackTarget, x: torch.Tensor, route: str) -> torch.Tensor:
    """−log p(observed | true batch) as the Bayes attack evaluates it (its data term at x)."""
    from attacks.updates import ActivationUpdates

    attack = build_attack("bayes", priors={}, route=route)
    problem, _ = attack._problem([target], [target.labels], Budget(), torch.device("cpu"))
    unrolled = target.protocol.kind == "fedavg"  # the generic route unrolls local steps
    assert isinstance(problem.updates, ActivationUpdates) == (route == "auto" and not unrolled)
    data, _ = problem.terms(x.unsqueeze(0))
    return data.detach().double()[0]


@pytest.mark.parametrize("kind", ["fedsgd", "fedavg"])
@pytest.mark.parametrize("route", ["auto", "vmap"])
def test_dpsgd_batch_of_four_likelihood_is_the_density_of_the_sampled_noise(
    kind: str, route: str
) -> None:
    """B = 4: the client clips each sample; the attack, which knows its candidate batch,
    clips each candidate sample, so at the true batch the likelihood is the Gaussian
    log-density of the noise the client actually drew (up to the constant, here 0)."""
    model, (x, y) = small_model(), batch(4)
    x = x * 4  # gradients well above the clip: the clipping matters
    protocol = Protocol(kind=kind, local_steps=1, local_lr=LR)
    defense = parse_defense(f"dpsgd:clip={CLIP},sigma=0.2")
    mechanism = defense.mechanism_for(4, protocol)
    assert mechanism.per_sample_clip == CLIP

    def sent(d: str, seed: int) -> list[torch.Tensor]:
        made = client_update(parse_defense(d), model, x, y, torch.Generator().manual_seed(seed),
                             kind=kind, local_steps=1, local_lr=LR)  # fmt: skip
        return made.update

    clean = sent(f"dpsgd:clip={CLIP},sigma=0", 0)
    for seed in range(3):
        update = sent(defense.spec, seed)
        noise = torch.cat([(u - c).reshape(-1) for u, c in zip(update, clean, strict=True)])
        density = -noise.double().square().sum() / (2 * mechanism.noise_scale**2)
        target = AttackTarget(
            model=model, update=update, batch_size=4, input_shape=(1, 8, 8), num_classes=4,
            labels=y, mechanism=mechanism, protocol=protocol,
            threat=ThreatModel(labels_known=True),
        )  # fmt: skip
        nll = _true_batch_nll(target, x, route)
        assert abs(float(-nll - density)) < 0.02  # of about 22,000 nats
        # The clipped batch mean it used to model is off by many nats.
        mean_gradient = batch_gradient(model, x, y)
        if kind == "fedavg":
            mean_gradient = [-LR * g for g in mean_gradient]
        approximate = mechanism.log_likelihood(update, [g.unsqueeze(0) for g in mean_gradient])
        assert abs(float(approximate[0]) - float(density)) > 10.0
