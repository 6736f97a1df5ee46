"""Input domains: feature rows without a box, one-hot groups relaxed by softmax, priors
that refuse shapes they cannot handle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks import AttackError, AttackTarget, ThreatModel, build_attack
from attacks.domain import FeatureDomain, ImageDomain
from attacks.priors import build_prior

FEATURES, CLASSES = 8, 3
GROUP = (5, 8)  # columns 5, 6, 7 are one one-hot categorical column


def feature_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.Sigmoid(), nn.Linear(32, CLASSES))


def gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    loss = nn.functional.cross_entropy(model(x), y)
    return [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]


@pytest.mark.parametrize(
    ("name", "shape"), [("tv", (1, 1, 10)), ("tv", (10,)), ("tv_squared", (3, 8, 1))]
)
def test_image_priors_refuse_shapes_they_cannot_handle_at_construction(name, shape) -> None:
    with pytest.raises(AttackError) as caught:
        build_prior(name, shape, ImageDomain() if len(shape) == 3 else FeatureDomain())
    message = str(caught.value)
    assert "\n" not in message and repr(name) in message and str(tuple(shape)) in message


def test_feature_prior_needs_granted_statistics() -> None:
    with pytest.raises(AttackError, match="'features'.*mean and std"):
        build_prior("features", (FEATURES,), FeatureDomain())
    prior = build_prior(
        "features", (FEATURES,), FeatureDomain(mean=[1.0] * FEATURES, std=[2.0] * FEATURES)
    )
    at_mean = torch.ones(2, 1, FEATURES)
    assert prior(at_mean, None).tolist() == [0.0, 0.0]  # type: ignore[arg-type]


def test_feature_domain_relaxes_one_hot_groups_and_refuses_bad_layouts() -> None:
    domain = FeatureDomain(categorical=(GROUP,))
    z = torch.randn(2, 3, FEATURES)
    seen = domain.to_input(z)
    assert torch.equal(seen[..., :5], z[..., :5])
    assert torch.allclose(seen[..., 5:].sum(-1), torch.ones(2, 3))
    final = domain.finalize(z)
    assert torch.equal(final[..., 5:].sum(-1), torch.ones(2, 3))
    assert torch.equal(final[..., 5:].argmax(-1), z[..., 5:].argmax(-1))
    for bad in (FeatureDomain(categorical=((6, 9),)), FeatureDomain(categorical=((2, 3),))):
        with pytest.raises(AttackError, match="one-hot group"):
            bad.check((FEATURES,))
    with pytest.raises(AttackError, match="feature vectors need"):
        domain.check((1, 2, 4))


def test_a_feature_row_outside_the_unit_box_is_recovered() -> None:
    """The image box would clamp these values; the feature domain leaves them free."""
    model = feature_model()
    x = torch.tensor([[-2.5, 3.0, 0.4, -1.0, 1.7, 0.0, 1.0, 0.0]])
    y = torch.tensor([2])
    target = AttackTarget(
        model,
        gradient(model, x, y),
        batch_size=1,
        input_shape=(FEATURES,),
        num_classes=CLASSES,
        labels=y,
        threat=ThreatModel(labels_known=True),
        domain=FeatureDomain(categorical=(GROUP,)),
    )
    result = build_attack("l2", iterations=200, lr=0.3, decay=0.99).reconstruct(target)
    assert result.status == "ok"
    assert torch.equal(result.inputs[0, 5:], x[0, 5:])  # the category, exactly one-hot
    assert (result.inputs[0, :5] - x[0, :5]).abs().max() < 0.01
    with pytest.raises(AttackError, match="images need"):
        AttackTarget(model, target.update, 1, (FEATURES,), CLASSES)  # the image domain refuses
