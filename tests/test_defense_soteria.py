"""Soteria prunes the defended layer's weight columns of the least sensitive representation elements."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defenses import DefenseError, batch_gradient, parse_defense
from defenses.soteria import find_defended_layer, representation_scores
from fedsim.models.cnn import PaperCNN


def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = PaperCNN((3, 8, 8), 4, [0.5] * 3, [0.25] * 3)
    return model, torch.rand(2, 3, 8, 8, generator=g), torch.tensor([1, 3])


def test_scores_match_one_backward_per_element() -> None:
    model, x, _ = setup()
    _, layer = find_defended_layer(model, "auto")
    scores = representation_scores(model, layer, x)
    xr = x.clone().requires_grad_(True)
    rep = model.body[:-1](model.normalize(xr))
    for i in [0, 7, 42]:
        (dx,) = torch.autograd.grad(rep[:, i].sum(), xr, retain_graph=True)
        expected = (dx.flatten(1).norm(dim=1) / rep[:, i].detach().abs().clamp_min(1e-12)).sum()
        torch.testing.assert_close(scores[i], expected, rtol=1e-4, atol=0)


def test_prunes_rate_percent_of_the_defended_columns_only() -> None:
    model, x, y = setup()
    grads = batch_gradient(model, x, y)
    sent = parse_defense("soteria:rate=80").transform_gradients(
        model, x, y, grads, torch.Generator()
    )
    index = [p is model.body[-1].weight for p in model.parameters()].index(True)
    columns_zero = (sent[index] == 0).all(dim=0)
    originally_zero = (grads[index] == 0).all(dim=0)  # dead ReLU elements
    assert (columns_zero & ~originally_zero).sum() >= 80 - originally_zero.sum()
    assert columns_zero.sum() <= 80 + originally_zero.sum()
    for i, (a, b) in enumerate(zip(grads, sent, strict=True)):
        if i != index:
            assert torch.equal(a, b)


def test_layer_by_path_and_bad_layer_refused() -> None:
    model, x, y = setup()
    name, layer = find_defended_layer(model, "body.7")
    assert layer is model.body[7]
    with pytest.raises(DefenseError, match="'layer'"):
        parse_defense("soteria:layer=body.0").transform_gradients(
            model, x, y, batch_gradient(model, x, y), torch.Generator()
        )


def test_batch_norm_buffers_are_restored() -> None:
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)
    )
    x, y = torch.rand(4, 12), torch.tensor([0, 1, 0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parse_defense("soteria:rate=50").transform_gradients(
        model, x, y, batch_gradient(model, x, y), torch.Generator()
    )
    after = model.state_dict()
    # batch_gradient ran one train-mode forward; compare against a second plain forward.
    model.load_state_dict(before)
    batch_gradient(model, x, y)
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())


def test_convbig_default_layer_is_its_representation_layer() -> None:
    from fedsim.models.convbig import ConvBig

    model = ConvBig((3, 16, 16), 10, [0.5] * 3, [0.25] * 3)
    name, layer = find_defended_layer(model, "auto")
    assert name == "body.fc2" and layer.in_features == 2000
    x, y = torch.rand(1, 3, 16, 16), torch.tensor([3])
    grads = batch_gradient(model, x, y)
    sent = parse_defense("soteria:rate=80").transform_gradients(
        model, x, y, grads, torch.Generator()
    )
    index = [p is layer.weight for p in model.parameters()].index(True)
    pruned = (sent[index] == 0).all(dim=0) & ~(grads[index] == 0).all(dim=0)
    assert pruned.sum() > 0


def test_adapted_attacks() -> None:
    from fedsim.models.convbig import ConvBig

    model = ConvBig((3, 16, 16), 10, [0.5] * 3, [0.25] * 3)
    soteria = parse_defense("soteria").adapted_attack(model)
    assert soteria is not None and soteria.exclude_parameters == ("body.fc2.weight",)
    weights = soteria.parameter_weights(model)
    assert weights.count(0.0) == 1 and len(weights) == len(list(model.parameters()))
    assert parse_defense("ats").adapted_attack().attack == "cos"
    assert parse_defense("precode").adapted_attack().attack == "analytic-fc"
    assert parse_defense("gaussian").adapted_attack() is None
    assert parse_defense("gaussian | soteria | ats").adapted_attack(model) == soteria
