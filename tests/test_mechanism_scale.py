"""Every mechanism states its noise and scale through one typed interface, checked against
the parameters of the defense that built it; attacks refuse a mechanism that does not."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable

import pytest
import torch

from attacks.configs import BayesAttack
from attacks.errors import AttackError
from attacks.likelihood import NOISE_KINDS, Likelihood, ScaledLikelihood, check_likelihood
from attacks.target import AttackTarget
from defenses import DEFENSES, parse_defense
from defenses.base import Defense, stated_mechanism
from defenses.mechanisms import GaussianMechanism, NoiseKind
from defenses.mechanisms.clipped import ClippedGaussianMechanism
from defenses.registry import update_stage_defenses

Expected = Callable[[Defense, int], tuple[str | None, float | None]]

EXPECTED: dict[str, Expected] = {
    "none": lambda d, b: (None, None),
    "gaussian": lambda d, b: ("gaussian", d.sigma),
    "laplacian": lambda d, b: ("laplacian", d.b),
    "gaussian-per-sample": lambda d, b: ("gaussian", d.sigma / math.sqrt(b)),
    "laplacian-per-sample": lambda d, b: ("laplacian", d.b) if b == 1 else (None, None),
    "prune": lambda d, b: (None, None),
    "prune+gaussian": lambda d, b: ("gaussian", d.sigma),
    "prune+laplacian": lambda d, b: ("laplacian", d.b),
    "random-prune": lambda d, b: (None, None),
    "random-prune+gaussian": lambda d, b: ("gaussian", d.sigma),
    "random-prune+laplacian": lambda d, b: ("laplacian", d.b),
    "topk": lambda d, b: (None, None),
    "dpsgd": lambda d, b: ("gaussian", d.sigma * d.clip / b),
    "soteria": lambda d, b: (None, None),
    "ats": lambda d, b: (None, None),
    "precode": lambda d, b: (None, None),
    "quantize": lambda d, b: (None, None),
    "sign": lambda d, b: (None, None),
}
"""(noise, scale) each registered defense's mechanism must state, from its own parameters,
for a client batch of b samples; (None, None) also where the defense states no mechanism
or refuses to."""

BUILT_IN = [name for name, cls in DEFENSES.items() if cls.__module__.startswith("defenses.")]
"""The registered defenses of this package: `EXPECTED` states each one's scale by hand."""
NON_DEFAULT = {
    name: cls.examples[0] for name, cls in DEFENSES.items() if name in BUILT_IN and cls.examples
}


def test_the_table_covers_every_built_in_defense() -> None:
    assert set(EXPECTED) == set(BUILT_IN)


CASES = [
    (name, spec, batch)
    for name in BUILT_IN
    for spec in (name, *DEFENSES[name].examples)
    for batch in (1, 4)
]


@pytest.mark.parametrize("name, spec, batch", CASES)
def test_every_registered_mechanism_states_the_scale_of_its_defense(
    name: str, spec: str, batch: int
) -> None:
    defense = parse_defense(spec)
    mechanism, refusal = stated_mechanism(defense, batch)
    noise, scale = EXPECTED[name](defense, batch)
    if mechanism is None:
        assert (noise, scale) == (None, None), f"{spec}: no mechanism, but noise is added"
        assert not defense.perturbs_update or refusal or "no likelihood" in defense.mechanism_note
        return
    assert isinstance(mechanism, Likelihood)
    assert check_likelihood(mechanism) is mechanism
    assert mechanism.noise == noise
    if scale is None:
        assert mechanism.noise_scale is None
    else:
        assert mechanism.noise_scale == pytest.approx(scale, rel=1e-12)


COMPOSED = [
    ("gaussian:0.3 | gaussian:0.4", 1, "gaussian", 0.5),
    ("dpsgd:clip=2,sigma=1 | gaussian:0.5", 4, "gaussian", math.sqrt(0.5**2 + 0.5**2)),
    ("prune:0.5 | gaussian:0.2", 1, "gaussian", 0.2),
    ("prune:0.5 | laplacian:0.3", 1, "laplacian", 0.3),
    ("random-prune:0.5 | gaussian:0.2", 1, "gaussian", 0.2),
    ("random-prune:0.5 | laplacian:0.3", 1, "laplacian", 0.3),
    ("ats | dpsgd:clip=1,sigma=2", 8, "gaussian", 0.25),
    ("ats | gaussian:0.7", 1, "gaussian", 0.7),
]


@pytest.mark.parametrize("spec, batch, noise, scale", COMPOSED)
def test_composed_mechanisms_state_the_scale_of_their_parts(
    spec: str, batch: int, noise: str, scale: float
) -> None:
    mechanism = check_likelihood(parse_defense(spec).mechanism_for(batch))
    assert mechanism.noise == noise
    assert mechanism.noise_scale == pytest.approx(scale, rel=1e-12)


STACKS = ["gaussian:0.3 | gaussian:0.4", "dpsgd | gaussian:0.1", "prune:0.5 | gaussian:0.2",
          "random-prune:0.5 | gaussian:0.2", "ats | dpsgd:clip=1,sigma=2"]  # fmt: skip
STATED = [
    (spec, batch)
    for cls in DEFENSES.values()
    for spec in (cls.name, *cls.examples)
    for batch in (1, 4)
] + [(spec, batch) for spec in STACKS for batch in (1, 4)]
"""Every registered defense at its defaults and examples, and stacks, for 1 and 4 samples."""
SHAPES = [(30, 20), (30,), (5, 30), (5,)]


@pytest.mark.parametrize("spec, batch", STATED)
def test_noise_only_is_exactly_a_likelihood_of_the_difference(spec: str, batch: int) -> None:
    """`noise_only` (the observed update is the candidate plus noise, nothing else) holds
    exactly where the likelihood depends on observed − candidate alone: moving both by
    the same shift changes nothing. Candidates lie well inside a per-sample clip, the
    only candidates such a mechanism is stated for."""
    defense = parse_defense(spec)
    mechanism, _ = stated_mechanism(defense, batch)
    if mechanism is None:
        return
    g = torch.Generator().manual_seed(4)
    clean = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    norm = math.sqrt(sum(float(c.square().sum()) for c in clean))
    clip = mechanism.per_sample_clip
    scale = 0.3 if clip is None else clip / (4 * norm)
    clean = [c * scale for c in clean]
    observed = defense.transform_update(clean, torch.Generator().manual_seed(0))
    candidates = [c.unsqueeze(0) + 0.2 * scale * torch.randn(3, *c.shape, generator=g,
                  dtype=torch.float64) for c in clean]  # fmt: skip
    shift = [0.5 * scale * torch.randn(c.shape, generator=g, dtype=torch.float64) for c in clean]
    ll = mechanism.log_likelihood(observed, candidates)
    moved = mechanism.log_likelihood(
        [o + d for o, d in zip(observed, shift, strict=True)],
        [c + d for c, d in zip(candidates, shift, strict=True)],
    )
    invariant = torch.allclose(ll, moved, rtol=1e-9, atol=1e-9 * float(ll.abs().max()))
    assert mechanism.noise_only == invariant, (spec, batch, ll, moved)


def test_dpsgd_is_noise_only_on_candidates_clipped_per_sample() -> None:
    # DP-SGD's noise is added to the mean of per-sample clipped gradients, the candidate
    # the attack forms as `per_sample_clip` says; a whole-update clip is more than noise.
    assert parse_defense("dpsgd:clip=0.5").mechanism_for(4).per_sample_clip == 0.5
    assert parse_defense("dpsgd | gaussian:0.1").mechanism_for(4).noise_only
    assert not ClippedGaussianMechanism(clip=1.0, std=0.1).noise_only


def test_the_noise_kinds_agree_on_both_sides() -> None:
    assert set(typing.get_args(NoiseKind)) == set(NOISE_KINDS)


def test_dpsgd_scale_reaches_the_bayes_ramp() -> None:
    """ClippedGaussianMechanism names its scale `std`; the ramp reads the stated σC/B."""
    mechanism = ClippedGaussianMechanism(clip=1.0, std=0.05)
    target = _target(mechanism)
    config = BayesAttack().optimizer_config(target)
    assert config.weight_start == pytest.approx(0.1 * 0.05**2)


def test_a_mechanism_that_does_not_state_its_scale_cannot_be_built() -> None:
    from dataclasses import dataclass

    from defenses.mechanisms.base import Mechanism

    @dataclass(frozen=True)
    class Unstated(Mechanism):
        sigma: float = 0.1

        def log_likelihood(self, observed, candidate):  # noqa: ANN001, ANN202
            return torch.zeros(candidate[0].shape[0])

    with pytest.raises(TypeError, match="does not state noise, noise_scale, noise_only"):
        Unstated()


class _Guessable:
    """Names its scale as the old lookup guessed, and states nothing else."""

    sigma = 0.1

    def log_likelihood(self, observed, candidate):  # noqa: ANN001, ANN201
        return torch.zeros(candidate[0].shape[0])


class _Inconsistent(_Guessable):
    noise = "gaussian"
    noise_scale = None
    noise_only = True
    per_sample_clip = None


@pytest.mark.parametrize(
    "mechanism, message",
    [(_Guessable(), "does not state noise, noise_scale, noise_only"), (_Inconsistent(), "exactly")],
)
def test_attack_targets_refuse_a_mechanism_without_the_contract(
    mechanism: object, message: str
) -> None:
    with pytest.raises(AttackError, match=message):
        _target(mechanism)


def test_a_scaled_likelihood_evaluates_in_the_units_of_its_statement() -> None:
    inner = GaussianMechanism(0.2)
    scaled = ScaledLikelihood(inner, -0.5)
    observed = [torch.randn(3, generator=torch.Generator().manual_seed(0))]
    candidate = [torch.randn(4, 3, generator=torch.Generator().manual_seed(1))]
    assert scaled.noise == "gaussian" and scaled.noise_scale == pytest.approx(0.4)
    assert torch.allclose(
        scaled.log_likelihood(observed, candidate),
        GaussianMechanism(0.4).log_likelihood(observed, candidate),
    )


def _target(mechanism: object) -> AttackTarget:
    model = torch.nn.Linear(4, 2)
    return AttackTarget(
        model=model,
        update=[torch.zeros_like(p) for p in model.parameters()],
        batch_size=1,
        input_shape=(1, 2, 2),
        num_classes=2,
        mechanism=mechanism,  # type: ignore[arg-type]
    )


# -------------------------------- the stated scale is the scale of what the auditor reads

LR = 0.1
TWINS = {
    "gaussian": "gaussian:sigma=0.02",
    "laplacian": "laplacian:b=0.02",
    "prune+gaussian": "prune+gaussian:p=0.5,sigma=0.02",
    "prune+laplacian": "prune+laplacian:p=0.5,b=0.02",
    "random-prune+gaussian": "random-prune+gaussian:p=0.5,sigma=0.02",
    "random-prune+laplacian": "random-prune+laplacian:p=0.5,b=0.02",
}
"""Noisy update-stage defenses, with a small noise so the update stays near its clean value."""


def _noise_free_twin(spec: str) -> str:
    """The same defense with its noise a 10¹⁰-th: same draws, same mask, noise ≈ 0."""
    return spec.replace("sigma=0.02", "sigma=2e-12").replace("b=0.02", "b=2e-12")


def _scenario(spec: str, kind: str):  # noqa: ANN202
    from pathlib import Path

    from fedsim.scenario.loading import load_scenario

    steps = "local_batch_size=2, local_epochs=1" if kind == "fedavg" else ""
    protocol = f"protocol={{kind='{kind}', lr={LR}, batch_size=4{', ' + steps if steps else ''}}}"
    overrides = [
        f"defenses=['{spec}']",
        "federation.clients=2",
        "audit.clients.sample=2",
        "model.name='mlp'",
        protocol,
    ]
    return load_scenario(
        Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml", overrides
    )


def _read_by_the_auditor(spec: str, kind: str, way: str) -> tuple[list[torch.Tensor], object]:
    """What the auditor reads from client 0's round-1 reply under `spec` applied `way`
    ("scenario": fedsim's client; "mod": `defenses.flower.mod` on a plain Flower client
    training the same model on the same batch), and the mechanism it was told."""
    import warnings

    from fedsim.auditor.setup import AuditSetup
    from fedsim.flower.apps.local_update import local_update
    from fedsim.scenario.build import build_federation

    federation = build_federation(_scenario(spec if way == "scenario" else "none", kind))
    model = federation.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    sent = local_update(federation, model, 0, 1).state
    if way == "scenario":
        setup = AuditSetup.from_federation(federation)
        return setup.recover_update(start, sent, names), setup.mechanism
    protocol = federation.scenario.protocol
    setup = AuditSetup.for_model(
        federation.build_model,
        input_shape=federation.info.input_shape,
        num_classes=federation.info.num_classes,
        batch_size=protocol.batch_size,
        domain="image",
        protocol=kind,
        lr=LR,
        local_steps=protocol.local_steps if kind == "fedavg" else None,
        local_batch_size=protocol.local_batch_size,
        defense=spec,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed seed: the twin must draw the same mask
        defended = _through_mod(spec, start, sent)
    return setup.recover_update(start, defended, names), setup.mechanism


def _through_mod(spec: str, start: dict, sent: dict) -> dict[str, torch.Tensor]:
    from flwr.app import ArrayRecord, Context, Message, MessageType, Metadata, RecordDict

    from defenses.flower import mod

    metadata = Metadata(
        run_id=1, message_id="m", src_node_id=0, dst_node_id=7, reply_to_message_id="",
        group_id="1", created_at=0.0, ttl=3600.0, message_type=MessageType.TRAIN,
    )  # fmt: skip
    message = Message(RecordDict({"arrays": ArrayRecord(start)}), metadata=metadata)
    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})

    def client(msg: Message, ctx: Context) -> Message:
        return Message(RecordDict({"arrays": ArrayRecord(sent)}), reply_to=msg)

    reply = mod(spec, seed=0)(message, context, client)
    return reply.content["arrays"].to_torch_state_dict()


def _flat(update: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([u.reshape(-1).double() for u in update])


UPDATE_STAGE = [name for name in update_stage_defenses() if name in BUILT_IN]
UNITS = [
    (name, kind, way)
    for name in UPDATE_STAGE
    for kind in ("fedsgd", "fedavg")
    for way in ("scenario", "mod")
]


def test_the_units_table_covers_every_built_in_update_stage_defense() -> None:
    assert set(TWINS) <= set(UPDATE_STAGE)
    assert all(EXPECTED[n](parse_defense(n), 1)[0] is None for n in set(UPDATE_STAGE) - set(TWINS))


@pytest.mark.parametrize("name, kind, way", UNITS)
def test_the_stated_noise_is_the_noise_of_what_the_auditor_reads(
    name: str, kind: str, way: str
) -> None:
    """Scenario and mod, FedSGD (the auditor reads g = (θ − θ_sent)/lr, so a mod's σ on the
    delta −lr·g reads as σ/lr) and FedAvg (the delta itself)."""
    spec = TWINS.get(name, NON_DEFAULT.get(name, name))
    observed, mechanism = _read_by_the_auditor(spec, kind, way)
    if name in TWINS:
        twin, _ = _read_by_the_auditor(_noise_free_twin(spec), kind, way)
        noise = _flat(observed) - _flat(twin)
        noise = noise[noise != 0]  # pruned coordinates carry no noise
        std = mechanism.noise_scale * (math.sqrt(2) if mechanism.noise == "laplacian" else 1)
        assert float(noise.std()) == pytest.approx(std, rel=0.03), (spec, kind, way)
        return
    clean, _ = _read_by_the_auditor("none", kind, way)
    if mechanism is None:
        assert name == "none" and torch.allclose(_flat(observed), _flat(clean), atol=1e-5)
        return
    # No noise to measure: the likelihood must prefer the clean update in the auditor's
    # units to the same update in the units of a mistaken lr (sign ignores magnitudes).
    candidates = [[c.unsqueeze(0) * factor for c in clean] for factor in (1.0, LR, 1 / LR)]
    right, *wrong = [float(mechanism.log_likelihood(observed, c)[0]) for c in candidates]
    assert math.isfinite(right) and all(right >= w - 1e-6 * abs(w) for w in wrong), spec
