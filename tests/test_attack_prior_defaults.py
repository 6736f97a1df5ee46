"""Default prior weights follow the target's model and input shape, and say where they came from."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import gradient_target

from attacks import Budget, build_attack
from attacks.prior_defaults import TUNED, choose_priors
from defenses.mechanisms import GaussianMechanism
from fedsim.data.info import DatasetInfo
from fedsim.models import build_model

CIFAR = DatasetInfo("cifar10", (3, 32, 32), 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
MNIST = DatasetInfo("mnist", (1, 28, 28), 10, (0.13,), (0.31,))


def small_target(model, shape, mechanism=None):
    """The update of one random image (pixel values in [0, 1]) of `shape`, label 3."""
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0))
    return gradient_target(model, x, torch.tensor([3]), mechanism=mechanism)


def test_cosine_weights_differ_by_model_and_are_marked_tuned():
    cnn = choose_priors("cos", "PaperCNN", (1, 28, 28))
    convnet = choose_priors("cos", "ConvNet64", (3, 32, 32))
    assert cnn.tuned and convnet.tuned
    assert convnet.weights["tv"] / cnn.weights["tv"] >= 10  # ConvNet-64 needs far more TV
    assert "ConvNet64 3×32×32" in convnet.source


def test_a_model_without_tuned_weights_gets_the_reference_and_is_told_so():
    choice = choose_priors("cos", "MLP", (1, 28, 28))
    reference = next(r for r in TUNED if r.attack == "cos")
    assert not choice.tuned and choice.weights == dict(reference.weights)
    assert choice.source.startswith("untuned") and "MLP 1×28×28" in choice.source
    # the same model on another input shape is another setting
    assert not choose_priors("cos", "PaperCNN", (3, 32, 32)).tuned


def test_attack_without_any_prior_uses_none():
    choice = choose_priors("dlg", "ConvNet64", (3, 32, 32))
    assert choice.tuned and choice.weights == {}


@pytest.mark.parametrize(
    ("name", "info", "expected"),
    [("cnn", MNIST, 0.01), ("convnet64", CIFAR, 0.8)],
)
def test_reconstruction_records_the_weights_it_used(name, info, expected):
    torch.manual_seed(0)
    model = build_model(name, info)
    target = small_target(model, info.input_shape)
    budget = Budget(iterations=1)  # the generic route: no route probe on ConvNet-64
    rec = build_attack("cos", route="vmap").reconstruct(target, budget)
    assert rec.priors == {"tv": expected}
    assert rec.priors_source.startswith("tuned for")
    given = build_attack("cos", priors={"tv": 0.3}, route="vmap").reconstruct(target, budget)
    assert given.priors == {"tv": 0.3} and given.priors_source == "given"


def test_bayes_keeps_exact_priors_for_exact_updates_and_tunes_otherwise():
    torch.manual_seed(0)
    model = build_model("cnn", MNIST)
    exact = small_target(model, MNIST.input_shape)
    noisy = small_target(model, MNIST.input_shape, mechanism=GaussianMechanism(sigma=0.1))
    bayes = build_attack("bayes")
    assert bayes.prior_choice(exact).weights == {}
    assert bayes.prior_choice(noisy).weights == {"tv": 300.0}
    assert bayes.prior_choice(noisy).tuned


def test_a_subclass_inherits_its_base_class_defaults_and_says_so():
    from dataclasses import dataclass
    from typing import ClassVar

    from attacks import CosineAttack, L2Attack
    from attacks.prior_defaults import lineage

    @dataclass(frozen=True)
    class Narrower(CosineAttack):
        name: ClassVar[str] = "test-narrower-cos"

    assert lineage(Narrower)[:2] == ("test-narrower-cos", "cos")
    torch.manual_seed(0)
    target = small_target(build_model("cnn", MNIST), MNIST.input_shape)
    own = CosineAttack().prior_choice(target)
    inherited = Narrower().prior_choice(target)
    assert inherited.weights == own.weights == {"tv": 0.01} and inherited.tuned
    assert inherited.source == f"{own.source}; defaults of cos (inherited)"
    # an attack with rows of its own is unchanged, and one without any row uses no prior
    assert L2Attack().prior_choice(target) == choose_priors("l2", "PaperCNN", (1, 28, 28))
    assert choose_priors(("test-none", "gradient"), "PaperCNN", (1, 28, 28)).weights == {}
