"""analytic-fc: closed-form inversion of a leading fully connected layer, on real MNIST digits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attacks.analytic import AnalyticFC
from attacks.errors import AttackError
from attacks.target import AttackTarget, Protocol, ThreatModel
from fedsim.data import LabeledImages, load_dataset
from fedsim.metrics import match_by_psnr, psnr
from fedsim.models import ImageClassifier, build_model


@pytest.fixture(scope="module")
def mnist(data_root) -> LabeledImages:
    return load_dataset("mnist", "test", data_root)


def _model(name: str, info) -> ImageClassifier:
    torch.manual_seed(0)
    return build_model(name, info)


def _target(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    info,
    steps: int = 0,
    lr: float = 0.1,
    **kwargs,
) -> AttackTarget:
    """FedSGD gradient (steps=0) or FedAvg delta after `steps` local SGD steps."""
    params = list(model.parameters())
    if steps == 0:
        loss = nn.functional.cross_entropy(model(images), labels)
        update = [g.detach() for g in torch.autograd.grad(loss, params)]
        protocol = Protocol()
    else:
        start = [p.detach().clone() for p in params]
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(images), labels)
            with torch.no_grad():
                for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
                    p -= lr * g
        with torch.no_grad():
            update = [p.detach() - s for p, s in zip(params, start, strict=True)]
            for p, s in zip(params, start, strict=True):
                p.copy_(s)
        protocol = Protocol(kind="fedavg", local_steps=steps, local_lr=lr)
    return AttackTarget(
        model,
        update,
        len(labels),
        info.input_shape,
        info.num_classes,
        protocol=protocol,
        **kwargs,
    )


@pytest.mark.parametrize("name", ["mlp", "precode"])
def test_single_image_is_recovered_exactly(mnist, name):
    # Measured: 150–165 dB on every image (float rounding only), MLP and PRECODE alike.
    model = _model(name, mnist.info)
    attack = AnalyticFC()
    for i in range(5):
        images, labels = mnist.images[i : i + 1], mnist.labels[i : i + 1]
        result = attack.reconstruct(_target(model, images, labels, mnist.info))
        assert result.inputs.shape == images.shape
        assert float(psnr(result.inputs, images)) > 60.0
        assert result.iterations == 0 and result.status == "ok"
        assert result.labels_inferred and torch.equal(result.labels, labels)
        assert float(result.objective[0]) < 1e-8


def test_precode_bottleneck_in_train_mode_does_not_protect(mnist):
    # The bottleneck samples fresh noise in train mode; the first layer's gradient is
    # still rank one per sample, so the inversion stays exact (Balunović et al., 2022).
    model = _model("precode", mnist.info)
    model.train()
    images, labels = mnist.images[10:11], mnist.labels[10:11]
    result = AnalyticFC().reconstruct(_target(model, images, labels, mnist.info))
    assert float(psnr(result.inputs, images)) > 60.0


def test_fedavg_local_steps_keep_the_inversion_exact(mnist):
    # Every local step adds δ_t z to the first layer's rows for the same input z, so the
    # delta stays rank one per sample: measured ≥ 100 dB (the PSNR cap) after 3 steps, and
    # all 4 images of a batch recovered.
    model = _model("mlp", mnist.info)
    images, labels = mnist.images[20:21], mnist.labels[20:21]
    result = AnalyticFC().reconstruct(_target(model, images, labels, mnist.info, steps=3))
    assert float(psnr(result.inputs, images)) > 60.0
    images, labels = mnist.images[20:24], mnist.labels[20:24]
    result = AnalyticFC().reconstruct(_target(model, images, labels, mnist.info, steps=3))
    matched = match_by_psnr(result.inputs, images)
    print(f"fedavg 3 steps, B=4: {result.message}; PSNR {matched.psnr.tolist()}")
    assert bool((matched.psnr > 60.0).all()), matched.psnr


def test_batch_images_from_rows_a_single_sample_activates(mnist):
    # Untrained MLP (200 hidden units), B = 4: every image has units only it activates,
    # measured > 150 dB for all 4 of the first 3 batches.
    model = _model("mlp", mnist.info)
    for start in range(0, 12, 4):
        images, labels = mnist.images[start : start + 4], mnist.labels[start : start + 4]
        result = AnalyticFC().reconstruct(_target(model, images, labels, mnist.info))
        matched = match_by_psnr(result.inputs, images)
        assert result.message.startswith("4 of 4")
        assert bool((matched.psnr > 60.0).all()), matched.psnr


def test_given_labels_are_used_when_granted(mnist):
    model = _model("mlp", mnist.info)
    images, labels = mnist.images[:2], mnist.labels[:2]
    target = _target(model, images, labels, mnist.info)
    target.labels, target.threat = labels, ThreatModel(labels_known=True)
    result = AnalyticFC().reconstruct(target)
    assert not result.labels_inferred and torch.equal(result.labels, labels)


def test_model_without_a_leading_linear_is_refused(mnist):
    model = _model("cnn", mnist.info)
    target = _target(model, mnist.images[:1], mnist.labels[:1], mnist.info)
    with pytest.raises(AttackError, match="first parameterised layer.*Conv2d"):
        AnalyticFC().reconstruct(target)


class _Net(ImageClassifier):
    def __init__(self, info, body: nn.Module) -> None:
        super().__init__(info.input_shape, info.num_classes, info.mean, info.std)
        self.body = body


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def test_leading_linear_without_bias_or_with_a_transformed_input_is_refused(mnist):
    info = mnist.info
    features = math.prod(info.input_shape)
    no_bias = _Net(
        info,
        nn.Sequential(
            nn.Flatten(), nn.Linear(features, 32, bias=False), nn.ReLU(), nn.Linear(32, 10)
        ),
    )
    squared = _Net(
        info,
        nn.Sequential(
            nn.Flatten(), _Square(), nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, 10)
        ),
    )
    for model, message in [(no_bias, "with bias"), (squared, "transforms it otherwise")]:
        target = _target(model, mnist.images[:1], mnist.labels[:1], info)
        with pytest.raises(AttackError, match=message):
            AnalyticFC().reconstruct(target)


def test_probe_leaves_modes_and_buffers_alone(mnist):
    model = _model("mlp", mnist.info)
    model.train()
    target = _target(model, mnist.images[:1], mnist.labels[:1], mnist.info)
    AnalyticFC().reconstruct(target)
    assert all(m.training for m in model.modules())


def test_attack_metadata():
    assert AnalyticFC.name == "analytic-fc"
    assert "Phong" in AnalyticFC.reference
    assert AnalyticFC.needs == frozenset()
    with pytest.raises(AttackError):
        AnalyticFC(rows=0)
