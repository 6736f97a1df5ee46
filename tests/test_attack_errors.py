"""Bad input is refused with an AttackError before any optimisation starts."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import gradient_target, mnist_images, paper_cnn

import attacks.base
from attacks import ATTACKS, AttackError, AttackTarget, Budget, ThreatModel, build_attack
from attacks.tuning import search


@pytest.fixture(scope="module")
def image(data_root):
    x, y, info = mnist_images(data_root, 1)
    return x, y, paper_cnn(info)


@pytest.fixture
def no_optimisation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("optimisation started")

    monkeypatch.setattr(attacks.base, "optimise", refuse)


def _kwargs(model, update, **extra):
    base = dict(model=model, update=update, batch_size=1, input_shape=(1, 28, 28), num_classes=10)
    return {**base, **extra}


def test_update_with_wrong_shape(image):
    _, _, model = image
    update = [torch.zeros_like(p) for p in model.parameters()]
    update[2] = torch.zeros(3, 3)
    with pytest.raises(AttackError, match=r"update\[2\]: shape"):
        AttackTarget(**_kwargs(model, update))


def test_update_for_another_model(image):
    _, _, model = image
    update = [torch.zeros_like(p) for p in model.parameters()][:-1]
    with pytest.raises(AttackError, match="tensors for a model with"):
        AttackTarget(**_kwargs(model, update))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_update_is_refused_before_optimisation(image, bad, no_optimisation):
    x, y, model = image
    target = gradient_target(model, x, y)
    target.update[0][0, 0, 0, 0] = bad  # corrupted after construction
    with pytest.raises(AttackError, match="NaN or infinite"):
        build_attack("bayes").reconstruct(target)


def test_wrong_label_shape_and_input_shape(image):
    _, _, model = image
    update = [torch.zeros_like(p) for p in model.parameters()]
    with pytest.raises(AttackError, match="labels"):
        AttackTarget(**_kwargs(model, update, labels=torch.tensor([1, 2])))
    with pytest.raises(AttackError, match="input_shape"):
        AttackTarget(**_kwargs(model, update, input_shape=(28, 28)))


def test_unknown_attack_name_lists_names():
    with pytest.raises(AttackError) as info:
        build_attack("nope")
    for name in ATTACKS:
        assert name in str(info.value)


def test_unknown_hyper_parameter_lists_valid_ones():
    with pytest.raises(AttackError, match="unknown hyper-parameter tv_weight.*valid: .*lr"):
        build_attack("bayes", tv_weight=1.0)
    with pytest.raises(AttackError, match="prior: unknown name"):
        build_attack("bayes", priors={"smooth": 1.0})
    with pytest.raises(AttackError, match="objective: unknown name"):
        build_attack("l2", objective="l3")


@pytest.mark.parametrize(
    ("name", "threat", "missing"),
    [
        ("gradinversion", ThreatModel(labels_known=True, bn_stats_known=False), "bn_stats"),
        ("bayes", ThreatModel(labels_known=True, mechanism_known=False), "mechanism"),
    ],
)
def test_capability_mismatch_is_refused(image, name, threat, missing, no_optimisation):
    x, y, model = image
    with pytest.raises(AttackError, match=f"needs {missing}"):
        build_attack(name).reconstruct(gradient_target(model, x, y, threat))


def test_granted_labels_must_be_present(image, no_optimisation):
    x, y, model = image
    target = gradient_target(model, x, y)
    target.labels = None
    with pytest.raises(AttackError, match="grants labels"):
        build_attack("l2").reconstruct(target)


def test_batched_targets_must_share_the_model(image, data_root):
    x, y, model = image
    other = paper_cnn(mnist_images(data_root, 1)[2])
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    targets = [gradient_target(model, x, y), gradient_target(other, x, y)]
    with pytest.raises(AttackError, match="must share model"):
        build_attack("l2").reconstruct_many(targets, Budget(iterations=1))


def test_tuning_picks_by_objective_and_by_score(image):
    x, y, model = image
    target = gradient_target(model, x, y)
    by_objective = search("l2", {"lr": [1e-4, 0.1]}, [target], budget=Budget(iterations=10))
    assert by_objective.best == {"lr": 0.1}
    assert len(by_objective.trials) == 2

    def closeness(recs, truth):
        return -float(sum((r.inputs - t).abs().mean() for r, t in zip(recs, truth, strict=True)))

    by_score = search(
        "l2",
        {"lr": [1e-4, 0.1]},
        [target],
        truth=[x],
        score=closeness,
        budget=Budget(iterations=10),
    )
    assert by_score.best == {"lr": 0.1} and by_score.by == "score"
    with pytest.raises(AttackError, match="unknown hyper-parameter"):
        search("l2", {"learning_rate": [0.1]}, [target])


def test_registries_refuse_a_taken_name_and_a_class_without_a_name():
    from dataclasses import dataclass

    from attacks import CosineAttack, register_attack, register_objective
    from attacks.objectives import CosineDistance

    @dataclass(frozen=True)
    class Unnamed(CosineAttack):
        pass

    with pytest.raises(AttackError, match=r"register_attack: .*Unnamed needs a class attribute"):
        register_attack(Unnamed)

    class Clash(CosineDistance):
        name = "l2"

    with pytest.raises(AttackError, match="register_objective: name 'l2' is taken by attacks"):
        register_objective(Clash)
    with pytest.raises(AttackError, match="is not an attack"):
        register_attack(int)
    assert ATTACKS["cos"] is CosineAttack
