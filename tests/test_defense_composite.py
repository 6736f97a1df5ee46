"""Stacked defenses: stage order, the composed mechanism, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from defenses import Composite, DefenseError, compose, defended_gradient, parse_defense
from defenses.dpsgd import DPSGD
from defenses.mechanisms import (
    ClippedGaussianMechanism,
    GaussianMechanism,
    PruneNoiseMixtureMechanism,
)
from fedsim.models.cnn import PaperCNN


def test_stages_apply_in_order() -> None:
    model = PaperCNN((1, 8, 8), 3, [0.5], [0.25])
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
    defense = parse_defense("ats:policy=7-4-15 | dpsgd:clip=0.1,sigma=0 | prune:p=0.5")
    assert isinstance(defense, Composite) and defense.stages == {"batch", "gradient", "update"}
    sent = defended_gradient(defense, model, x, y, torch.Generator().manual_seed(0))
    # Clipping then pruning: the norm is at most C, and at least about half the coordinates are zero.
    flat = torch.cat([s.reshape(-1) for s in sent])
    assert flat.norm() <= 0.1 + 1e-6
    assert 0.45 < (flat == 0).float().mean() < 1


def test_one_perturbing_stage_gives_its_mechanism() -> None:
    defense = parse_defense("ats:policy=21-13-3 | dpsgd:clip=1,sigma=0.5")
    mechanism = defense.mechanism_for(1)
    assert isinstance(mechanism, ClippedGaussianMechanism) and mechanism.std == pytest.approx(0.5)
    assert parse_defense("ats").mechanism is None


def test_gaussian_after_gaussian_adds_variances() -> None:
    defense = compose([parse_defense("gaussian:0.3"), parse_defense("gaussian:0.4")])
    assert isinstance(defense.mechanism, GaussianMechanism)
    assert defense.mechanism.sigma == pytest.approx(0.5)
    noise = defense.transform_update([torch.zeros(20000)], torch.Generator().manual_seed(0))[0]
    n = noise.numel()
    assert abs(noise.var() - 0.25) < 5 * 0.25 * math.sqrt(2 / (n - 1))
    dp = parse_defense("dpsgd:clip=2,sigma=1 | gaussian:0.5").mechanism_for(4)
    assert isinstance(dp, ClippedGaussianMechanism) and dp.std == pytest.approx(
        math.sqrt(0.25 + 0.25)
    )


def test_prune_then_noise_is_a_mixture_and_unknown_compositions_get_none() -> None:
    mixture = parse_defense("random-prune:0.3 | laplacian:0.2").mechanism
    assert isinstance(mixture, PruneNoiseMixtureMechanism)
    assert (mixture.keep, mixture.noise, mixture.scale) == (0.7, "laplacian", 0.2)
    fixed = parse_defense("prune:0.3,mask_seed=4 | laplacian:0.2").mechanism
    assert fixed == parse_defense("prune+laplacian:p=0.3,b=0.2,mask_seed=4").mechanism
    unknown = parse_defense("soteria | gaussian:0.1")
    assert unknown.mechanism is None and "no closed-form" in unknown.mechanism_note


def test_two_model_stages_are_refused_and_nesting_flattens() -> None:
    with pytest.raises(DefenseError, match="model-stage"):
        parse_defense("precode | precode:beta=0.1")
    nested = compose([parse_defense("ats | gaussian"), parse_defense("prune")])
    assert isinstance(nested, Composite) and len(nested.parts) == 3
    assert isinstance(parse_defense("dpsgd"), DPSGD)  # a single spec is not wrapped


def test_precode_model_stage_adds_its_kl_term() -> None:
    from fedsim.models.cnn import PaperCNN as Plain
    from fedsim.models.precode import Precode

    defense = parse_defense("ats:padding=0 | precode:beta=0.5")
    assert defense.model_name == "precode" and defense.kl_weight == 0.5
    model = Precode((1, 8, 8), 3, [0.5], [0.25], hidden=16, depth=1, latent=8)
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
    model.generator = torch.Generator().manual_seed(5)
    only_precode = parse_defense("precode:beta=0.5")
    sent = defended_gradient(only_precode, model, x, y, torch.Generator())
    model.generator = torch.Generator().manual_seed(5)
    loss = torch.nn.functional.cross_entropy(model(x), y) + 0.5 * model.kl_loss
    expected = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.allclose(a, b) for a, b in zip(sent, expected, strict=True))
    with pytest.raises(DefenseError, match="precode network"):
        defended_gradient(only_precode, Plain((1, 8, 8), 3, [0.5], [0.25]), x, y, torch.Generator())


@pytest.mark.parametrize(
    ("spec", "lost"),
    [
        ("soteria | dpsgd", "soteria's change to the gradient"),
        ("dpsgd:sigma=0.1 | dpsgd", "dpsgd's change to the gradient"),
        ("precode | dpsgd", "precode's loss term"),
        ("dpsgd | precode", "precode's loss term"),
    ],
)
def test_a_stack_that_would_silently_drop_a_part_is_refused_in_one_line(
    spec: str, lost: str
) -> None:
    """DP-SGD recomputes the per-sample gradients: Soteria's mask before it, an earlier
    DP-SGD's noise and PRECODE's KL term would vanish without a trace."""
    from fedsim.errors import ConfigError
    from fedsim.scenario.components import build_defense

    with pytest.raises(DefenseError) as refused:
        parse_defense(spec)
    message = str(refused.value)
    assert lost in message and "\n" not in message and "refused" in message
    with pytest.raises(ConfigError, match=r"defenses: compose: '.*dpsgd.*' refused"):
        build_defense([part.strip() for part in spec.split("|")])


def test_soteria_after_dpsgd_keeps_both_and_the_likelihood_says_none() -> None:
    """The order that composes honestly: DP-SGD's update, then Soteria's mask on it."""
    model = PaperCNN((1, 8, 8), 3, [0.5], [0.25])
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])

    def sent(spec: str) -> list[torch.Tensor]:
        return defended_gradient(parse_defense(spec), model, x, y, torch.Generator().manual_seed(0))

    alone, both = sent("dpsgd:sigma=0.1"), sent("dpsgd:sigma=0.1 | soteria:rate=50")
    assert any(not torch.equal(a, b) for a, b in zip(alone, both, strict=True))
    defense = parse_defense("dpsgd | soteria")
    assert defense.mechanism_for(2) is None and "no closed-form" in defense.mechanism_note


def test_composed_likelihoods_follow_the_order_the_parts_act_in() -> None:
    """`gaussian | dpsgd` adds its noise after DP-SGD's step, whatever the listing order."""
    listed_first = parse_defense("gaussian:0.5 | dpsgd:clip=2,sigma=1").mechanism_for(4)
    listed_last = parse_defense("dpsgd:clip=2,sigma=1 | gaussian:0.5").mechanism_for(4)
    assert listed_first == listed_last
    assert isinstance(listed_first, ClippedGaussianMechanism)
    assert listed_first.std == pytest.approx(math.sqrt(0.25 + 0.25))
    assert listed_first.per_sample_clip == 2.0  # still clipped per sample
