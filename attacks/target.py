"""What an attack is given (a target) and what it returns (a reconstruction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from attacks.domain import ImageDomain, InputDomain
from attacks.errors import AttackError
from attacks.likelihood import Likelihood, ScaledLikelihood, check_likelihood
from attacks.local_optimizer import LocalOptimizer


@dataclass(frozen=True)
class ThreatModel:
    """What the adversary knows; attacks declare what they need and are refused up front otherwise."""

    labels_known: bool = False
    bn_stats_known: bool = False
    mechanism_known: bool = True
    local_hparams_known: bool = True


LastBatch = Literal["wrap", "short", "drop"]
"""What a FedAvg client does when `local_batch_size` b does not divide its batch B: `wrap`
fills every mini-batch to b from the start of the batch (fedsim's simulated clients);
`short` starts each pass over the batch afresh, its last mini-batch holding B mod b
samples (a torch DataLoader); `drop` leaves those out (DataLoader with drop_last)."""


@dataclass(frozen=True)
class Protocol:
    """How the client turned its batch into the update it sent.

    `fedsgd`: the update is the gradient of the mean batch loss at the start parameters.
    `fedavg`: the update is the weight delta (new − start) after `local_steps` steps of
    `optimizer` (plain SGD by default; `attacks.local_optimizer`), each on
    `local_batch_size` samples of the batch, mini-batches taken in order as `last_batch`
    says; the learning rate is `local_lr`, or `lr_schedule[t]` at step t. `shuffled`: the
    client drew a fresh order of its batch for every pass, which the adversary does not
    know; the attacks then model consecutive mini-batches (an approximation,
    `attacks.local_training.approximations`).
    """

    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_steps: int = 1
    local_lr: float = 0.1
    local_batch_size: int | None = None
    optimizer: LocalOptimizer = field(default_factory=LocalOptimizer)
    lr_schedule: tuple[float, ...] | None = None
    last_batch: LastBatch = "wrap"
    shuffled: bool = False

    def __post_init__(self) -> None:
        if self.lr_schedule is not None:
            if len(self.lr_schedule) != self.local_steps:
                raise AttackError(
                    f"lr_schedule: {len(self.lr_schedule)} learning rates for "
                    f"{self.local_steps} local steps"
                )
            object.__setattr__(self, "lr_schedule", tuple(float(v) for v in self.lr_schedule))
        if self.last_batch not in ("wrap", "short", "drop"):
            raise AttackError(
                f"last_batch: expected 'wrap', 'short' or 'drop', got {self.last_batch!r}"
            )

    @property
    def plain_sgd(self) -> bool:
        """Whether every local step is θ ← θ − lr·g with one learning rate (no momentum,
        weight decay, Adam or schedule): the update is then lr times a sum of gradients."""
        return self.optimizer.plain_sgd and self.lr_schedule is None

    def step_lrs(self) -> list[float]:
        """The learning rate of every local step."""
        if self.lr_schedule is not None:
            return list(self.lr_schedule)
        return [self.local_lr] * self.local_steps


@dataclass
class AttackTarget:
    """One intercepted update and everything the adversary knows about how it was made.

    `model` holds the exact parameters (and buffers) the client started from; its
    `forward` takes inputs of `domain` (by default images in [0, 1], see
    `attacks.domain`), one batch of `input_shape` each. `update` has one tensor per
    parameter, in `model.parameters()` order. `mechanism`, when known, is the
    defense's likelihood p(observed | candidate), stating its noise and scale
    (`attacks.likelihood.Likelihood`; `defenses.mechanisms` implements it).
    """

    model: nn.Module
    update: Sequence[torch.Tensor]
    batch_size: int
    input_shape: tuple[int, ...]
    num_classes: int
    labels: torch.Tensor | None = None
    mechanism: Likelihood | None = None
    mechanism_refusal: str | None = None
    """Why no mechanism is given although the defense perturbs the update (an attack
    that models the mechanism is then refused with it); None otherwise."""
    mechanism_missing: str | None = None
    """Where a defense perturbs the update but no mechanism is given (none is stated,
    or the threat model withholds it): why. The update is then not exact, and an attack
    that models the mechanism runs a named surrogate (`GradientAttack.surrogate_for`)
    or is refused; None where the update is exact or a mechanism is given."""
    protocol: Protocol = field(default_factory=Protocol)
    threat: ThreatModel = field(default_factory=ThreatModel)
    bn_train_mode: bool = True
    domain: InputDomain = field(default_factory=ImageDomain)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse shapes and values no attack can work with, before any optimisation."""
        params = list(self.model.parameters())
        if len(self.update) != len(params):
            raise AttackError(
                f"update: {len(self.update)} tensors for a model with {len(params)} parameters"
            )
        for i, (u, p) in enumerate(zip(self.update, params, strict=True)):
            if tuple(u.shape) != tuple(p.shape):
                raise AttackError(
                    f"update[{i}]: shape {tuple(u.shape)} does not match parameter shape {tuple(p.shape)}"
                )
            if not torch.isfinite(u).all():
                raise AttackError(f"update[{i}]: contains NaN or infinite values")
        if self.mechanism is not None:
            check_likelihood(self.mechanism)
        if self.batch_size < 1:
            raise AttackError(f"batch_size: must be at least 1, got {self.batch_size}")
        self.domain.check(self.input_shape)
        if self.labels is not None:
            if self.labels.shape != (self.batch_size,):
                raise AttackError(
                    f"labels: expected shape ({self.batch_size},), got {tuple(self.labels.shape)}"
                )
            if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
                raise AttackError(f"labels: values must lie in [0, {self.num_classes})")


@dataclass(frozen=True)
class Budget:
    """How much work an attack may spend on one target."""

    iterations: int = 200
    restarts: int = 1
    seconds: float | None = None


@dataclass
class Reconstruction:
    """What an attack returns for one target.

    `inputs` (batch, *input_shape) in the target's domain (images in [0, 1]; feature
    rows with one-hot groups) and `labels` (batch,) of the best candidate;
    `objective` holds the final objective of every restart (lower is better), and
    `best` indexes the chosen one. `labels_inferred` is False where labels were given.
    `priors` are the prior weights used and `priors_source` where they came from: given,
    tuned for this model and shape, `untuned: …` (see `attacks.prior_defaults`), or none
    for an attack without priors. `likelihood` describes the likelihood the attack read
    (name, noise, scale in the units it read, per-sample clip), or is None with the reason
    in `likelihood_note`; `surrogate` names the stand-in it ran where it could not be
    itself (records then call it `attack~surrogate`).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    objective: torch.Tensor
    best: int
    iterations: int
    seconds: float
    labels_inferred: bool
    status: Literal["ok", "timeout", "failed"] = "ok"
    message: str = ""
    priors: dict[str, float] = field(default_factory=dict)
    priors_source: str = "none"
    likelihood: dict[str, object] | None = None
    likelihood_note: str | None = None
    surrogate: str | None = None


def mechanism_as_read(target: AttackTarget) -> tuple[Likelihood | None, str]:
    """The target's mechanism in the units the attack reads the update, and those units.

    FedSGD: the gradient. FedAvg with the local hyper-parameters known: the weight delta
    (the local steps are unrolled). FedAvg without them: the delta read as the gradient
    −δ / (lr · steps), the protocol's lr and steps being the adversary's guess; the
    mechanism, stated in delta units, is evaluated back in those units.
    """
    protocol, mechanism = target.protocol, target.mechanism
    if protocol.kind == "fedsgd":
        return mechanism, "gradient"
    if target.threat.local_hparams_known:
        return mechanism, "weight delta"
    step = guessed_step(protocol)
    scaled = None if mechanism is None else ScaledLikelihood(mechanism, -step)
    return scaled, f"gradient, read as −delta / {step:g} (lr × local steps)"


def guessed_step(protocol: Protocol) -> float:
    """The adversary's guess of one FedAvg update's step, local lr × local steps."""
    return protocol.local_lr * protocol.local_steps
