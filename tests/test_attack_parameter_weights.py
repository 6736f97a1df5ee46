"""Per-parameter weights in the data term: every objective, both update routes, batched."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from attack_helpers import gradient_target, mnist_images, paper_cnn

from attacks import Budget, build_attack
from attacks.engine import Problem
from attacks.errors import AttackError
from attacks.objectives import OBJECTIVES, Observed, ObservedGroup, build_objective
from attacks.parameter_weights import resolve_parameter_weights
from attacks.updates import build_updates
from defenses.mechanisms import GaussianMechanism, LaplacianMechanism

EXCLUDED = (
    "body.7.weight"  # the paper CNN's 3136 → 100 dense layer (kept as factors on the fast route)
)
CASES = {
    **{name: (name, None) for name in OBJECTIVES if name != "likelihood"},
    "likelihood-gauss": ("likelihood", GaussianMechanism(sigma=0.1)),
    "likelihood-laplace": ("likelihood", LaplacianMechanism(scale=0.1)),
}
"""Every registered objective (the likelihood under two mechanisms)."""


@pytest.fixture(scope="module")
def images(data_root):
    x, y, info = mnist_images(data_root, 2)
    return x, y, paper_cnn(info)


def _with_noise_on(target, name: str, scale: float = 1.0):
    """A copy of `target` whose update of parameter `name` is replaced by noise."""
    names = [n for n, _ in target.model.named_parameters()]
    gen = torch.Generator().manual_seed(7)
    update = list(target.update)
    k = names.index(name)
    update[k] = scale * torch.randn(update[k].shape, generator=gen)
    return replace(target, update=update)


@pytest.mark.parametrize("route", ["fast", "vmap"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_excluded_layer_has_no_influence(case, route, images):
    x, y, model = images
    objective, mechanism = CASES[case]
    clean = gradient_target(model, x[:1], y[:1], mechanism=mechanism)
    noisy = _with_noise_on(clean, EXCLUDED)
    attack = build_attack("l2", objective=objective, priors={}, route=route, exclude=[EXCLUDED])
    budget = Budget(iterations=3)
    a, b = attack.reconstruct(clean, budget), attack.reconstruct(noisy, budget)
    assert torch.equal(a.inputs, b.inputs)
    assert torch.equal(a.objective, b.objective)
    # control: without the exclusion the same noise changes the result
    plain = attack.with_overrides(exclude=())
    assert not torch.allclose(
        plain.reconstruct(clean, budget).inputs, plain.reconstruct(noisy, budget).inputs
    )


def test_reconstruct_many_honours_exclusion_per_target(images):
    x, y, model = images
    targets = [gradient_target(model, x[i : i + 1], y[i : i + 1]) for i in range(2)]
    attack = build_attack("cos", iterations=3, exclude="body.7.*")
    together = attack.reconstruct_many([targets[0], _with_noise_on(targets[1], EXCLUDED)])
    alone = attack.reconstruct(targets[1])
    torch.testing.assert_close(together[1].inputs, alone.inputs, rtol=0, atol=1e-5)


def _data_term(model, target, objective, weights, route, **options):
    x0 = torch.rand((1, 1, *target.input_shape), generator=torch.Generator().manual_seed(3))
    updates = build_updates(model, 1, True, route=route)
    observed = [u.unsqueeze(0) for u in target.update]
    group = ObservedGroup(0, 1, list(target.update), target.mechanism)
    problem = Problem(
        updates,
        target.labels.view(1, 1),
        Observed(observed, [group], weights),
        build_objective(objective, **options),
        [],
    )
    data, _ = problem.terms(x0)
    return data, updates(x0, target.labels.view(1, 1)).updates, observed


@pytest.mark.parametrize("case", sorted(CASES))
def test_weights_agree_across_routes_and_with_the_definition(case, images):
    x, y, model = images
    objective, mechanism = CASES[case]
    target = gradient_target(model, x[:1], y[:1], mechanism=mechanism)
    target = _with_noise_on(target, "body.9.weight", scale=0.01)
    weights = resolve_parameter_weights(model, {"body.7.*": 0.5, "body.0.bias": 3.0}, ["body.3.*"])
    assert weights == [1.0, 3.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    fast, cand, obs = _data_term(model, target, objective, weights, "fast")
    slow, _, _ = _data_term(model, target, objective, weights, "vmap")
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-6)
    if objective in ("l2", "l1"):
        dist = (lambda d: d.square().sum()) if objective == "l2" else (lambda d: d.abs().sum())
        expected = sum(w * dist(c - o) for w, c, o in zip(weights, cand, obs, strict=True))
        torch.testing.assert_close(fast, expected.view(1), rtol=1e-4, atol=1e-6)
    if objective == "cos":
        dot = sum(w * (c * o).sum() for w, c, o in zip(weights, cand, obs, strict=True))
        cn = sum(w * c.square().sum() for w, c in zip(weights, cand, strict=True))
        on = sum(w * o.square().sum() for w, o in zip(weights, obs, strict=True))
        torch.testing.assert_close(fast, (1 - dot / (cn.sqrt() * on.sqrt())).view(1))
    if objective == "cos-paper":  # the paper's: weights on the inner product only
        kept = [(w, c, o) for w, c, o in zip(weights, cand, obs, strict=True) if w]
        dot = sum(w * (c * o).sum() for w, c, o in kept)
        cn = sum(c.square().sum() for _, c, _ in kept) + 1e-7
        on = sum(o.square().sum() for _, _, o in kept) + 1e-7
        torch.testing.assert_close(fast, (1 - dot / (cn.sqrt() * on.sqrt())).view(1))


def test_paper_cosine_without_weights_is_the_cosine(images):
    x, y, model = images
    target = _with_noise_on(gradient_target(model, x[:1], y[:1]), "body.9.weight", scale=0.01)
    paper, _, _ = _data_term(model, target, "cos-paper", None, "fast")
    plain, _, _ = _data_term(model, target, "cos", None, "fast")
    torch.testing.assert_close(paper, plain)
    assert 0 < float(plain) < 2


def test_objective_options_set_the_cosine_of_the_paper(images):
    """`build_objective(name, **options)`: `cos` with the paper's options is `cos-paper`."""
    x, y, model = images
    target = _with_noise_on(gradient_target(model, x[:1], y[:1]), "body.9.weight", scale=0.01)
    weights = [1.0, 3.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    paper, _, _ = _data_term(model, target, "cos-paper", weights, "fast")
    plain, _, _ = _data_term(model, target, "cos", weights, "fast")
    options = {"weighted_norms": False, "epsilon": 1e-7}
    optioned, _, _ = _data_term(model, target, "cos", weights, "fast", **options)
    assert torch.equal(optioned, paper) and not torch.equal(plain, paper)
    attack = build_attack("cos", objective_options=options)
    assert attack.data_term(target).epsilon == 1e-7
    with pytest.raises(AttackError, match="objective 'l2': unknown option eps; valid: none"):
        build_attack("l2", objective_options={"eps": 1.0})


def test_bad_weights_and_names_are_refused(images):
    x, y, model = images
    target = gradient_target(model, x[:1], y[:1])
    with pytest.raises(AttackError, match="body.fc2.weight.*matches no parameter.*body.0.weight"):
        build_attack("l2", exclude=["body.fc2.weight"]).reconstruct(target, Budget(iterations=1))
    with pytest.raises(AttackError, match="drop every parameter"):
        build_attack("l2", exclude="*").reconstruct(target, Budget(iterations=1))
    with pytest.raises(AttackError, match="finite number"):
        build_attack("l2", parameter_weights={"body.0.weight": -1.0})
    with pytest.raises(AttackError, match="exclude"):
        build_attack("l2", exclude=3)
    assert resolve_parameter_weights(model, {"*": 1.0}, []) is None


def test_adapted_attack_for_soteria_excludes_the_defended_layer():
    from attacks.adapted import build_adapted_attack
    from attacks.specs import parse_attack_spec
    from defenses.registry import parse_defense
    from fedsim.models.convbig import ConvBig

    model = ConvBig((1, 28, 28), 10, [0.1307], [0.3081])

    def adapted(spec: str, **overrides):
        return build_adapted_attack(parse_defense(spec).adapted_attack(model), **overrides)

    attack = adapted("soteria:rate=80", iterations=5)
    assert attack.exclude == ("body.fc2.weight",) and attack.iterations == 5
    assert resolve_parameter_weights(model, {}, attack.exclude).count(0.0) == 1
    spec = parse_defense("soteria:rate=80").adapted_attack(model).spec()
    assert parse_attack_spec(spec).build().exclude == ("body.fc2.weight",)
    ats = adapted("ats")
    assert ats.name == "cos" and ats.iterations == 2000
    assert adapted("gaussian:sigma=0.1").name == "bayes"
    assert adapted("precode").name == "analytic-fc"
    with pytest.raises(AttackError, match="no fallback"):
        build_adapted_attack(None, fallback=None)
