"""Specs, the registry, parameter validation (table-driven), and seeded determinism."""

from __future__ import annotations

import pytest
import torch

from defenses import (
    DEFENSES,
    DefenseError,
    build_defense,
    defended_gradient,
    list_defenses,
    parse_defense,
)
from fedsim.data.info import DatasetInfo
from fedsim.models import build_model

BAD = [
    ("gaussian:sigma=-0.1", "sigma", "(0, inf)"),
    ("gaussian:-1", "sigma", "(0, inf)"),
    ("gaussian:sigma=0", "sigma", "(0, inf)"),
    ("gaussian:sigma=abc", "sigma", "a number"),
    ("gaussian:tau=1", "tau", "sigma"),
    ("laplacian:b=-2", "'b'", "(0, inf)"),
    ("prune:p=1.5", "'p'", "[0, 1)"),
    ("prune:p=-0.1", "'p'", "[0, 1)"),
    ("prune:p=1", "'p'", "[0, 1)"),
    ("prune:mask_seed=-1", "mask_seed", "[0, inf)"),
    ("prune+gaussian:p=2,sigma=0.1", "'p'", "[0, 1)"),
    ("random-prune:p=1", "'p'", "[0, 1)"),
    ("prune+gaussian:p=0.5,sigma=-1", "sigma", "(0, inf)"),
    ("prune+laplacian:p=0.5,b=0", "'b'", "(0, inf)"),
    ("topk:p=0", "'p'", "(0, 1]"),
    ("dpsgd:clip=0", "clip", "(0, inf)"),
    ("dpsgd:sigma=-1", "sigma", "[0, inf)"),
    ("dpsgd:delta=1", "delta", "(0, 1)"),
    ("soteria:rate=120", "rate", "[0, 100]"),
    ("ats:policy=autoaugment", "policy", "21-13-3, 7-4-15, hybrid"),
    ("ats:policy=21-13-99", "policy", "0-49"),
    ("precode:beta=-1", "beta", "[0, inf)"),
    ("quantize:bits=0", "bits", "[1, 16]"),
    ("quantize:bits=2.5", "bits", "an integer"),
    ("gaussian:0.1,0.2", "too many", "sigma"),
    ("gaussian:sigma=0.1,0.2", "positional", "0.2"),
    ("blur:1", "blur", "gaussian"),
    ("", "empty", "none"),
]


@pytest.mark.parametrize("spec, names, accepted", BAD)
def test_bad_parameter_is_refused_with_its_name(spec: str, names: str, accepted: str) -> None:
    with pytest.raises(DefenseError) as info:
        parse_defense(spec)
    assert names in str(info.value)
    assert accepted in str(info.value)


def test_positional_keyword_and_object_specs_agree() -> None:
    assert (
        parse_defense("gaussian:0.1").spec
        == parse_defense("gaussian:sigma=0.1").spec
        == "gaussian:sigma=0.1"
    )
    assert (
        parse_defense("prune+gaussian:0.5,0.2").spec == "prune+gaussian:p=0.5,sigma=0.2,mask_seed=0"
    )
    assert build_defense("laplacian", b=0.3).spec == "laplacian:b=0.3"
    assert parse_defense(parse_defense("gaussian").spec).spec == "gaussian:sigma=0.1"
    assert (
        parse_defense(["ats:policy=7-4-15", "dpsgd"]).spec
        == parse_defense("ats:policy=7-4-15 | dpsgd").spec
    )


def test_list_defenses_rows_cover_the_registry() -> None:
    rows = list_defenses()
    assert [r.name for r in rows] == list(DEFENSES)
    expected = {
        "gaussian",
        "laplacian",
        "prune",
        "prune+gaussian",
        "prune+laplacian",
        "random-prune",
        "random-prune+gaussian",
        "random-prune+laplacian",
        "topk",
        "dpsgd",
    }
    assert expected | {"soteria", "ats", "precode", "quantize", "sign", "none"} <= {
        r.name for r in rows
    }
    gaussian = next(r for r in rows if r.name == "gaussian")
    assert (
        gaussian.defaults == "sigma=0.1" and gaussian.stages == ("update",) and gaussian.reference
    )
    assert all(r.effect and r.mechanism for r in rows)
    assert not any("protect" in r.effect for r in rows)  # what it does, never a promise
    name, parameters, effect, reference = gaussian  # the display row of `fedsim list defenses`
    assert parameters == "sigma=0.1 (a number in (0, inf))" and effect and reference


def test_precode_names_the_model_and_kl_weight() -> None:
    defense = parse_defense("precode:beta=0.01")
    assert (
        defense.model_name == "precode" and defense.kl_weight == 0.01 and defense.mechanism is None
    )


STACKS = ["ats:policy=7-4-15 | dpsgd"]
SEEDED = [spec for cls in DEFENSES.values() for spec in (cls.name, *cls.examples)] + STACKS
"""Every registered defense, at its defaults and at each of its `examples`, and a stack."""
INFO = DatasetInfo("test", (3, 16, 16), 5, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("spec", SEEDED)
def test_same_seed_same_update(spec: str) -> None:
    """The client's generator is the only source of a defense's randomness, and a defense
    that declares itself deterministic (`randomised` False) does not use it."""
    defense = parse_defense(spec)
    model = build_model(defense.model_name or "cnn", INFO)
    g = torch.Generator().manual_seed(9)
    x, y = torch.rand(3, 3, 16, 16, generator=g), torch.randint(0, 5, (3,), generator=g)

    def update(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(0)  # a model's own noise (PRECODE's bottleneck) is not the defense's
        return defended_gradient(defense, model, x, y, torch.Generator().manual_seed(seed))

    first, again, other = update(1), update(1), update(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    same = all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert same == (not defense.randomised), f"{spec}: randomised is {defense.randomised}"


@pytest.mark.parametrize("name", list(DEFENSES))
def test_every_defense_with_parameters_names_examples_off_its_defaults(name: str) -> None:
    cls = DEFENSES[name]
    assert bool(cls.examples) == bool(cls.parameters), f"{name}: examples {cls.examples}"
    default = parse_defense(name).spec
    for example in cls.examples:
        defense = parse_defense(example)
        assert defense.name == name and defense.spec != default, example


def test_registering_a_defense_checks_its_name_and_stages() -> None:
    from defenses import Defense, register_defense
    from defenses.noise import GaussianNoise

    class Unnamed(Defense):
        pass

    class Colon(Defense):
        name = "a:b"

    class Stage(Defense):
        name = "stage-test"
        stages = frozenset({"weights"})

    class Another(GaussianNoise):
        pass

    for cls, message in [
        (Unnamed, "name"), (Colon, "':'"), (Stage, "weights"), (Another, "taken by defenses.noise"),
    ]:  # fmt: skip
        with pytest.raises(DefenseError, match=message):
            register_defense(cls)
    with pytest.raises(DefenseError, match="not a subclass"):
        register_defense(int)  # type: ignore[type-var]
    assert register_defense(GaussianNoise) is GaussianNoise  # again: the same entry
    assert DEFENSES["gaussian"] is GaussianNoise and "stage-test" not in DEFENSES


@pytest.mark.parametrize("spec", SEEDED)
def test_a_defense_states_privacy_claims_exactly_where_it_says_it_does(spec: str) -> None:
    """`states_privacy` is what scenarios and modes read before any round: it must agree
    with `privacy_claims`, and every claim names its threat model and its δ."""
    from defenses import RoundSchedule

    defense = parse_defense(spec)
    schedule = RoundSchedule(partition_size=1000, batch_size=4)
    claims = defense.privacy_claims(schedule, 2, secret_sampling=False)
    assert (claims is not None) == defense.states_privacy, spec
    for claim in claims or []:
        assert claim.threat_model and claim.statement and 0 < claim.delta < 1e-3, claim
