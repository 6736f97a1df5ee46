"""Every registered model: shapes, gradients, normalisation, parameter counts, PRECODE's parts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.data.info import DatasetInfo
from fedsim.errors import ConfigError
from fedsim.models import MODELS, build_model, count_parameters, model_rows
from fedsim.models.precode import Precode

MNIST = DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,))
CIFAR10 = DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
SHAPES = [MNIST, CIFAR10]


@pytest.mark.parametrize("info", SHAPES, ids=lambda i: i.name)
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_forward_backward(name: str, info: DatasetInfo, train: bool) -> None:
    model = build_model(name, info).train(train)
    x = torch.rand(2, *info.input_shape, requires_grad=True)
    out = model(x)
    assert out.shape == (2, info.num_classes)
    assert torch.isfinite(out).all()
    loss = out.square().sum()
    if isinstance(model, Precode):
        loss = loss + model.kl_loss  # in eval mode only the KL reaches the log-variance head
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_normalisation_inside(name: str) -> None:
    model = build_model(name, CIFAR10).eval()
    x = torch.rand(2, *CIFAR10.input_shape)
    mean = torch.tensor(CIFAR10.mean).view(3, 1, 1)
    std = torch.tensor(CIFAR10.std).view(3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.body((x - mean) / std))


def test_parameter_counts() -> None:
    cifar = {row.name: row.parameters for row in model_rows(CIFAR10)}
    assert cifar["convnet64"] == 2_904_970  # "about 2.9M" in Geiping et al. 2020
    assert cifar["resnet18"] == 11_173_962
    assert cifar["convbig"] == 12_384_018
    built = build_model("convnet64", CIFAR10)
    assert count_parameters(built) == cifar["convnet64"]


def test_rows_cover_the_table() -> None:
    rows = model_rows(MNIST)
    assert [row.name for row in rows] == list(MODELS)
    assert all(row.parameters > 0 and row.summary and row.reference for row in rows)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ConfigError, match="convnet64"):
        build_model("vgg", MNIST)


def test_convbig_representation_layer() -> None:
    model = build_model("convbig", CIFAR10)
    layer = model.representation_module()
    assert isinstance(layer, nn.Linear) and layer.in_features == 2000
    seen = []
    layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    model(torch.rand(3, 3, 32, 32))
    assert seen[0].shape == (3, 2000)


def test_default_representation_is_last_linear() -> None:
    model = build_model("convnet64", MNIST)
    assert model.representation_module() is model.body.linear


def test_precode_first_layer_is_linear_with_bias() -> None:
    model = build_model("precode", CIFAR10)
    assert isinstance(model, Precode)
    first = next(m for m in model.body.modules() if isinstance(m, nn.Linear))
    assert first is model.first_layer
    assert first.bias is not None and first.in_features == 3 * 32 * 32


def test_precode_kl_positive_and_differentiable() -> None:
    model = build_model("precode", MNIST).train()
    model(torch.rand(4, 1, 28, 28))
    kl = model.kl_loss
    assert kl.ndim == 0 and kl.item() > 0
    kl.backward()
    assert model.bottleneck.to_log_var.weight.grad.abs().sum() > 0
    assert model.first_layer.weight.grad.abs().sum() > 0


def test_precode_noise_from_generator_and_mean_in_eval() -> None:
    model = build_model("precode", MNIST).train()
    x = torch.rand(2, 1, 28, 28)
    outs = []
    for _ in range(2):
        model.generator = torch.Generator().manual_seed(3)
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.equal(outs[0], model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_precode_initialised_as_the_papers_code() -> None:
    # Balunović et al. draw every weight and bias of their PRECODE network from
    # U(-0.05, 0.05); PyTorch's default (bound 1/sqrt(fan_in), 0.036 for the 784-input
    # layer and 0.045 for the 500-unit ones) is narrower and kept FedAvg on its plateau.
    torch.manual_seed(0)
    model = build_model("precode", MNIST)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 10
    for layer in linears:
        for tensor in (layer.weight, layer.bias):
            assert tensor.abs().max() <= 0.05
    values = torch.cat([p.detach().flatten() for layer in linears for p in layer.parameters()])
    assert values.abs().max() > 0.0499  # the whole range is used, not a smaller bound
    assert abs(values.std().item() - 0.05 / 3**0.5) < 1e-4  # the spread of U(-0.05, 0.05)
