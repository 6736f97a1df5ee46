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
