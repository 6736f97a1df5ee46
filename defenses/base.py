"""The defense contract: a named, parameterised client-side transform and its mechanism.

A defense acts at one or more stages of a client's round, in this order:

- ``batch``: `transform_batch(x, y, generator)` changes the training batch (ATS).
- ``model``: `model_name` names the network the client must train, and
  `extra_loss(model)` a term added to its loss (PRECODE and its KL term).
- ``gradient``: `transform_gradients(model, x, y, grads, generator)` changes the
  gradient of one local step, with the model and batch at hand (DP-SGD, Soteria).
- ``update``: `transform_update(update, generator)` changes the outgoing update
  (noise, pruning, quantisation).

Every defense declares its parameters (`Parameter`: name, type, range, default,
meaning), its paper `reference`, what it does to the update (`effect`: a fact, never a
claim of protection), and its `mechanism`:
the likelihood p(observed | clean) it induces, or None where the adversary is told
no likelihood (heuristic defenses). Randomness comes only from the generator passed
in: the same seed gives the same update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from defenses.adapted import AdaptedAttack
from defenses.errors import DefenseError, MechanismRefused
from defenses.mechanisms.base import Mechanism, NoiseKind

if TYPE_CHECKING:
    from defenses.accounting import PrivacyClaim, RoundSchedule

STAGES = ("batch", "model", "gradient", "update")
"""The stages a defense may act at, in the order a client applies them."""


class TrainingProtocol(Protocol):
    """How a client turns its batch into its update (`attacks.target.Protocol` is one)."""

    @property
    def kind(self) -> str: ...  # "fedsgd" (a gradient) or "fedavg" (a weight delta)

    @property
    def local_steps(self) -> int: ...

    @property
    def local_lr(self) -> float: ...

    @property
    def local_batch_size(self) -> int | None: ...

    @property
    def plain_sgd(self) -> bool: ...  # every local step θ ← θ − local_lr·g (no momentum, Adam, ...)


def gradient_step_units(
    name: str, batch_size: int, protocol: TrainingProtocol | None
) -> tuple[float, int]:
    """(factor from a step's gradient to the update sent, samples per step), for a defense
    that perturbs the gradient of one local step.

    FedSGD sends the gradient (1, B); FedAvg with one plain SGD step of lr sends −lr·g
    (lr, the step's batch). Refused (`MechanismRefused`) under FedAvg with another
    optimiser (momentum, weight decay, Adam or a schedule change the delta's law) or with
    several local steps (each step's noise moves the parameters the next gradient is taken
    at, so the update's likelihood has no closed form).
    """
    if protocol is None or protocol.kind == "fedsgd":
        return 1.0, batch_size
    if not protocol.plain_sgd:
        raise MechanismRefused(
            f"{name} under fedavg is stated for plain SGD steps (θ − lr·g); with the "
            "client's optimiser (momentum, weight decay, Adam or a schedule) the "
            "update's likelihood is not that; an attack that models it is refused"
        )
    if protocol.local_steps > 1:
        raise MechanismRefused(
            f"{name} under fedavg with {protocol.local_steps} local steps: each step's noise "
            "moves the parameters the next gradient is taken at, so the update's "
            "likelihood has no closed form; an attack that models it is refused"
        )
    return protocol.local_lr, min(protocol.local_batch_size or batch_size, batch_size)


def stated_mechanism(
    defense: Defense, batch_size: int, protocol: TrainingProtocol | None = None
) -> tuple[Mechanism | None, str | None]:
    """(mechanism, None), or (None, why) where the defense refuses to state one."""
    try:
        return defense.mechanism_for(batch_size, protocol), None
    except MechanismRefused as refusal:
        return None, str(refusal)


def missing_mechanism(
    defense: Defense | None, mechanism: Mechanism | None, refusal: str | None = None
) -> str | None:
    """Why an update that `defense` perturbs comes without a likelihood (the refusal, or
    the defense's own note); None where the update is exact or `mechanism` is given."""
    if mechanism is not None or defense is None or not defense.perturbs_update:
        return None
    if refusal:
        return refusal
    return f"{defense.spec} perturbs the update but states no likelihood ({defense.mechanism_note})"


@dataclass(frozen=True)
class Parameter:
    """One parameter of a defense: its type, accepted values, default and meaning.

    Numbers are checked against `low`/`high` (inclusive unless `*_open`); strings
    against `choices` when given, or by the defense's own `validate` otherwise.
    """

    name: str
    kind: type
    default: Any
    meaning: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    values: str = ""
    """Accepted values in words, for strings checked by the defense's own `validate`."""

    def accepted(self) -> str:
        """The accepted values in words, for messages and `fedsim list defenses`."""
        if self.values:
            return self.values
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is str:
            return "a string"
        kind = "an integer" if self.kind is int else "a number"
        if self.low is None and self.high is None:
            return kind
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return f"{kind} in {left}{low}, {high}{right}"

    def convert(self, defense: str, value: Any) -> Any:
        """Parse (from a spec string) and check one value; DefenseError names the parameter."""
        where = f"{defense}: parameter {self.name!r}"
        if self.kind is str:
            if not isinstance(value, str):
                raise DefenseError(f"{where} must be {self.accepted()}, got {value!r}")
            if self.choices and value not in self.choices:
                raise DefenseError(f"{where}: unknown value {value!r}; accepted: {self.accepted()}")
            return value
        number = _to_number(value, self.kind)
        if number is None or not math.isfinite(number):
            raise DefenseError(f"{where} must be {self.accepted()}, got {value!r}")
        too_low = self.low is not None and (
            number < self.low or (self.low_open and number == self.low)
        )
        too_high = self.high is not None and (
            number > self.high or (self.high_open and number == self.high)
        )
        if too_low or too_high:
            raise DefenseError(f"{where} must be {self.accepted()}, got {value!r}")
        return number

    def describe(self) -> str:
        """`name=default (accepted): meaning`, one line."""
        return f"{self.name}={self.default} ({self.accepted()}): {self.meaning}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _to_number(value: Any, kind: type) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    if kind is int:
        if not float(value).is_integer():
            return None
        return int(value)
    return float(value)


class Defense:
    """Base of every defense; the defaults leave every stage unchanged.

    Subclasses set the class attributes, list their `parameters`, and override the
    stage methods they act at (and name those stages in `stages`). Parameter values
    are validated on construction and become attributes of the same name.
    """

    name: ClassVar[str] = "defense"
    reference: ClassVar[str] = ""
    effect: ClassVar[str] = ""
    """What the defense does to the update, in plain words (`fedsim list defenses`)."""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    stages: ClassVar[frozenset[str]] = frozenset()
    perturbs_update: ClassVar[bool] = False
    """True where the defense changes the gradient or update itself (not just the data)."""
    adds_loss: ClassVar[bool] = False
    """True where `extra_loss` adds a term to the training loss (PRECODE's KL term)."""
    states_privacy: ClassVar[bool] = False
    """True where `privacy_claims` states a formal (ε, δ) guarantee (DP-SGD)."""
    randomised: ClassVar[bool] = False
    """True where the update depends on the client's generator (noise, a fresh mask, a
    random augmentation); False where the same batch always gives the same update."""
    adapted: ClassVar[AdaptedAttack | None] = None
    """The attack adapted to this defense (`defenses.adapted`): the adaptive adversary a
    heuristic defense falls to; None: the Bayes adversary with its own mechanism."""
    examples: ClassVar[tuple[str, ...]] = ()
    """Specs of this defense with parameter values off their defaults, which the tests
    run beside the defaults (a defense with parameters names at least one)."""

    def __init__(self, **values: Any) -> None:
        self.values = resolve_parameters(self.name, self.parameters, values)
        for key, value in self.values.items():
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        """Checks across parameters or of string formats; raise DefenseError."""

    @property
    def spec(self) -> str:
        """The spec string that rebuilds this defense, e.g. ``gaussian:sigma=0.1``."""
        if not self.values:
            return self.name
        args = ",".join(f"{k}={v}" for k, v in self.values.items())
        return f"{self.name}:{args}"

    @property
    def mechanism(self) -> Mechanism | None:
        """p(observed update | clean update); None: the adversary is told no likelihood."""
        return None

    def mechanism_for(
        self, batch_size: int, protocol: TrainingProtocol | None = None
    ) -> Mechanism | None:
        """The mechanism for a client batch of `batch_size` samples under `protocol`
        (None: FedSGD), in the units of the update the client sends. Most defenses act
        on the outgoing update and depend on neither. `MechanismRefused` where no
        likelihood can be stated and stating none would mislead an attack that models it.
        """
        return self.mechanism

    @property
    def added_noise(self) -> tuple[NoiseKind, float] | None:
        """(kind, scale) where all this defense does is add independent noise of that kind
        to every coordinate of the update it is given (``gaussian``: σ, ``laplacian``: b),
        so that a stack can fold it into the mechanism of the part before it
        (`mechanism_with_noise`); None otherwise."""
        return None

    def mechanism_with_noise(
        self,
        noise: Sequence[tuple[NoiseKind, float]],
        batch_size: int,
        protocol: TrainingProtocol | None = None,
    ) -> tuple[Mechanism, str] | None:
        """This defense's mechanism when the parts after it add `noise` (their
        `added_noise`, in order) to what the client sends, and how it composes in words;
        None where no closed form is stated (the stack then states no likelihood)."""
        return None

    def adapted_attack(self, model: nn.Module | None = None) -> AdaptedAttack | None:
        """`adapted`, resolved for `model` where it depends on the model (Soteria's layer)."""
        return self.adapted

    def privacy_claims(
        self, schedule: RoundSchedule, rounds: int, **context: Any
    ) -> list[PrivacyClaim] | None:
        """The (ε, δ) this defense guarantees after `rounds` rounds of `schedule`, one claim
        per threat model, each saying whether the run satisfies its assumption; None where
        it states none (`states_privacy` False). `context`: what the caller knows of the
        run, as the keyword arguments of `defenses.accounting.privacy_claims` (whether
        sampling is secret, who can regenerate the noise, κ). A DefenseError names what
        makes the claim impossible for this run (a δ too large for the partition)."""
        return None

    def composition_refusal(self, parts: Sequence[Defense]) -> str | None:
        """Why this defense, stacked with `parts` (the whole stack, itself included, in
        order), would silently undo another part; None where it composes honestly."""
        return None

    @property
    def mechanism_note(self) -> str:
        """Why the mechanism is what it is (exact, heuristic, or absent)."""
        return "no update perturbation" if not self.perturbs_update else "no likelihood stated"

    @property
    def model_name(self) -> str | None:
        """Model stage: the network the client must train instead of the scenario's, or None."""
        return None

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """Model stage: a term added to the training loss after each forward pass, or None."""
        return None

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch stage: the batch the client trains on (images in [0, 1])."""
        return x, y

    def transform_gradients(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        """Gradient stage: the gradient of one local step, from the mean cross-entropy `grads`."""
        return grads

    def transform_update(
        self, update: Sequence[torch.Tensor], generator: torch.Generator
    ) -> list[torch.Tensor]:
        """Update stage: what the client sends instead of `update` (one tensor per parameter)."""
        return list(update)

    def __repr__(self) -> str:
        return f"<defense {self.spec}>"


def resolve_parameters(
    defense: str, parameters: Sequence[Parameter], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults filled in, unknown names refused, every value checked."""
    known = {p.name: p for p in parameters}
    for key in values:
        if key not in known:
            accepted = ", ".join(known) if known else "none"
            raise DefenseError(
                f"{defense}: unknown parameter {key!r}; accepted parameters: {accepted}"
            )
    return {p.name: p.convert(defense, values.get(p.name, p.default)) for p in parameters}


def added_gaussian_variance(noise: Sequence[tuple[NoiseKind, float]]) -> float | None:
    """Σ σ² of `noise` where every part is Gaussian (variances add), else None."""
    if any(kind != "gaussian" for kind, _ in noise):
        return None
    return sum(scale**2 for _, scale in noise)


def draw_normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like `like`, drawn on the generator's device."""
    noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return noise.to(like.device)


def draw_uniform(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform [0, 1) noise shaped like `like`, drawn on the generator's device."""
    noise = torch.rand(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return noise.to(like.device)


def draw_laplace(like: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Laplace(0, scale) noise shaped like `like` (inverse CDF of a uniform draw)."""
    u = draw_uniform(like, generator) - 0.5
    # 1 - 2|u| lies in (0, 1]; clamp keeps log finite at the open end of rand's range.
    return -scale * torch.sign(u) * torch.log1p(-2 * u.abs()).clamp_min(-60.0)
