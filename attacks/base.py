"""An optimisation attack: a named configuration of the engine, checked against the threat model.

Subclasses (see `attacks.configs`) only set defaults: the data term, priors and
optimiser of their paper, what they need from the threat model, and the reference.
`reconstruct_many` batches several targets that share a model and its start parameters
(clients of one round, images of one `fedsim attack`) into one optimisation.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Literal

import torch

from attacks.domain import ImageDomain
from attacks.engine import OptimizerConfig, Problem, optimise
from attacks.errors import AttackError, AttackRefused
from attacks.likelihood import Likelihood, ScaledLikelihood, describe_likelihood
from attacks.objectives import Objective, Observed, ObservedGroup, build_objective
from attacks.parameter_weights import as_names, check_weights, resolve_parameter_weights
from attacks.prior_defaults import PriorChoice, choose_priors, lineage
from attacks.priors import build_prior, check_prior_name
from attacks.seeding import stream_seed
from attacks.target import AttackTarget, Budget, Protocol, Reconstruction, ThreatModel
from attacks.updates import Route, build_updates

Capability = Literal["labels", "bn_stats", "mechanism", "local_hparams"]

RESTART_STREAM = "attack-restart"
"""The stream (`attacks.seeding`) each restart's starting point is drawn from."""

_GRANTS: dict[str, str] = {
    "labels": "labels_known",
    "bn_stats": "bn_stats_known",
    "mechanism": "mechanism_known",
    "local_hparams": "local_hparams_known",
}


def missing_capabilities(needs: frozenset[str], threat: ThreatModel) -> list[str]:
    """The capabilities in `needs` that `threat` does not grant, sorted."""
    return sorted(c for c in needs if not getattr(threat, _GRANTS[c]))


@dataclass
class GradientAttack:
    """Reconstruct inputs by matching the observed update, batched over candidates.

    Fields are the hyper-parameters; `build_attack(name, **overrides)` sets them.
    `priors` maps prior names (see `attacks.priors.PRIORS`) to weights; they apply to
    image targets, and None (the default) takes the weights tuned for the target's model
    and input shape (`attacks.prior_defaults`), saying so where there are none. On
    feature rows (`attacks.domain.FeatureDomain`) the prior is the Gaussian `features`
    prior of weight `feature_prior` where the threat model grants the feature
    statistics, and none otherwise. `iterations` and
    `restarts` apply when `reconstruct` gets no Budget. `device` None means the device of
    the target model's parameters. `route` picks how candidate updates are computed
    ('auto': the fast activation route where it is exact, else torch.func vmap).
    `parameter_weights` (name or pattern → weight) and `exclude` (names or patterns,
    weight 0) say how much each parameter's update counts in the data term, by
    `model.named_parameters()` name (see `attacks.parameter_weights`).
    `objective_options` are keyword options of the objective (`Objective.options`).
    """

    name: ClassVar[str] = "gradient"
    reference: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()

    objective: str = "l2"
    objective_options: dict[str, object] = field(default_factory=dict)
    priors: dict[str, float] | None = None
    feature_prior: float = 1.0
    optimizer: Literal["adam", "lbfgs"] = "adam"
    lr: float = 0.1
    schedule: Literal["constant", "exponential", "step"] = "constant"
    decay: float = 1.0
    milestones: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
    signed: bool = False
    box: bool = True
    weight_start: float = 1.0
    weight_ramp: float = 0.0
    weight_end: float = 1.0
    iterations: int = 200
    restarts: int = 1
    seed: int = 0
    route: Route = "auto"
    device: str | None = None
    parameter_weights: dict[str, float] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.exclude = as_names(self.exclude)
        self.parameter_weights = check_weights(self.parameter_weights)
        self._data_term = build_objective(self.objective, **self.objective_options)
        for prior in self.priors or {}:
            check_prior_name(prior)
        if self.iterations < 1 or self.restarts < 1:
            raise AttackError(f"{self.name}: iterations and restarts must be at least 1")
        if self.lr <= 0:
            raise AttackError(f"{self.name}: lr must be positive, got {self.lr}")
        if not self.weight_end > 0:
            raise AttackError(f"{self.name}: weight_end must be positive, got {self.weight_end}")

    # ------------------------------------------------------------------ public API

    def reconstruct(self, target: AttackTarget, budget: Budget | None = None) -> Reconstruction:
        """Reconstruct one target's batch."""
        return self.reconstruct_many([target], budget)[0]

    def reconstruct_many(
        self, targets: Sequence[AttackTarget], budget: Budget | None = None
    ) -> list[Reconstruction]:
        """Reconstruct several targets that share model and start parameters, in one optimisation."""
        if not targets:
            return []
        budget = budget or Budget(iterations=self.iterations, restarts=self.restarts)
        first = targets[0]
        for t in targets:
            t.validate()
            self.check(t)
        _check_shared(targets)
        device = torch.device(self.device) if self.device else _model_device(first.model)
        labels, inferred = zip(*(self._labels(t) for t in targets), strict=True)

        choice = self.prior_choice(first)
        likelihood, note = self.likelihood_used(first)
        surrogate = self.surrogate_for(first)
        start = time.perf_counter()
        problem, x0 = self._problem(targets, [lab.to(device) for lab in labels], budget, device)
        # The time budget covers building the problem (the route probe) too: the loop
        # gets what is left of it, and checks it every step.
        left = None if budget.seconds is None else budget.seconds - (time.perf_counter() - start)
        result = optimise(problem, x0, self.optimizer_config(first), budget.iterations, left)
        seconds = time.perf_counter() - start

        out = []
        r = budget.restarts
        for i in range(len(targets)):
            objective = result.objective[i * r : (i + 1) * r].cpu()
            best = int(torch.argmin(objective))
            status = result.status if torch.isfinite(objective[best]) else "failed"
            out.append(
                Reconstruction(
                    inputs=first.domain.finalize(result.x[i * r + best]).detach().cpu(),
                    labels=labels[i].cpu(),
                    objective=objective,
                    best=best,
                    iterations=result.iterations,
                    seconds=seconds / len(targets),
                    labels_inferred=inferred[i],
                    status=status,
                    message="" if status == "ok" else _status_message(status, budget),
                    priors=dict(choice.weights),
                    priors_source=choice.source,
                    likelihood=likelihood,
                    likelihood_note=note,
                    surrogate=surrogate,
                )
            )
        return out

    def check(self, target: AttackTarget) -> None:
        """Refuse up front a target whose threat model lacks what this attack needs."""
        missing = missing_capabilities(self.needs, target.threat)
        if missing:
            raise AttackError(
                f"attack {self.name!r} needs {', '.join(missing)} but the threat model does not grant "
                f"{'it' if len(missing) == 1 else 'them'} ({', '.join(_GRANTS[m] for m in missing)})"
            )
        if self.models_mechanism and target.mechanism is None and target.mechanism_refusal:
            raise AttackRefused(f"attack {self.name!r} refused: {target.mechanism_refusal}")
        if target.threat.labels_known and target.labels is None:
            raise AttackError("threat model grants labels (labels_known) but the target has none")

    @property
    def models_mechanism(self) -> bool:
        """Whether this attack reads the defense's likelihood (rather than a distance)."""
        return "mechanism" in self.needs or self.objective == "likelihood"

    def reads(self) -> frozenset[str]:
        """What this attack's result depends on: `ThreatModel` flags, `Budget` fields,
        `feature_statistics` (a feature domain's mean and std: start points and prior) and
        `bn_statistics` (a prior on the model's batch-norm statistics, where
        `bn_stats_known`; nothing for a model without batch norm). A setting that none of
        a run's attacks reads does nothing, and is refused (`fedsim.scenario.acts`)."""
        read = {"labels_known", "local_hparams_known", "feature_statistics"}
        read |= {"iterations", "restarts", "seconds"}
        read |= {_GRANTS[need] for need in self.needs}
        if self.models_mechanism:
            read.add("mechanism_known")
        return frozenset(read)

    def surrogate_for(self, target: AttackTarget) -> str | None:
        """The stand-in this attack runs on `target` where it cannot be itself, named so
        that records do not call it by this attack's name (`attack~surrogate`); None: itself."""
        return None

    def objective_for(self, target: AttackTarget) -> str:
        """The data term used on `target` (the configured one, unless a surrogate runs)."""
        return self.objective

    def data_term(self, target: AttackTarget) -> Objective:
        """The objective run on `target`: the configured one (built once, with
        `objective_options`), or the one `objective_for` names in its place."""
        name = self.objective_for(target)
        return self._data_term if name == self.objective else build_objective(name)

    def likelihood_used(self, target: AttackTarget) -> tuple[dict[str, object] | None, str | None]:
        """(description, None) of the likelihood this attack reads on `target`, in the
        units it reads them (`attacks.likelihood.describe_likelihood`), or (None, why none)."""
        surrogate = self.surrogate_for(target)
        if surrogate is not None:
            return None, f"{target.mechanism_missing}; the {surrogate} ran in its place"
        if self.objective_for(target) != "likelihood":
            return None, (
                f"{self.name} matches updates by its {self.objective_for(target)} distance "
                "and reads no defense's likelihood"
            )
        mechanism, units = mechanism_as_read(target)
        if mechanism is None:
            return None, target.mechanism_missing or (
                "no mechanism given: the update is read as exact (unit Gaussian, ½‖g − c‖²)"
            )
        return describe_likelihood(mechanism, units), None

    def optimizer_config(self, target: AttackTarget) -> OptimizerConfig:
        """The engine settings for `target` (subclasses may derive some from the mechanism)."""
        return OptimizerConfig(
            optimizer=self.optimizer,
            lr=self.lr,
            schedule=self.schedule,
            decay=self.decay,
            milestones=tuple(self.milestones),
            signed=self.signed,
            box=self.box,
            weight_start=self.weight_start,
            weight_ramp=self.weight_ramp,
            weight_end=self.weight_end,
        )

    def prior_choice(self, target: AttackTarget) -> PriorChoice:
        """The prior weights for `target` and where they come from (see `priors`)."""
        if not isinstance(target.domain, ImageDomain):
            if target.domain.has_statistics and self.feature_prior:
                return PriorChoice({"features": float(self.feature_prior)}, "feature statistics")
            return PriorChoice({}, "feature rows without granted statistics: no prior")
        if self.priors is not None:
            return PriorChoice(dict(self.priors), "given")
        model, shape = type(target.model).__name__, tuple(target.input_shape)
        return choose_priors(lineage(type(self)), model, shape)

    def priors_for(self, target: AttackTarget) -> dict[str, float]:
        """Prior name → weight for `target` (subclasses may add priors the threat model allows)."""
        return self.prior_choice(target).weights

    def with_overrides(self, **overrides: object) -> GradientAttack:
        """A copy with some hyper-parameters changed (unknown names raise AttackError)."""
        check_overrides(type(self), overrides)
        return replace(self, **overrides)

    # ------------------------------------------------------------------ internals

    def _labels(self, target: AttackTarget) -> tuple[torch.Tensor, bool]:
        if target.threat.labels_known:
            return target.labels.detach().long(), False
        try:
            from attacks.labels import infer_labels
        except ImportError:
            raise AttackError(
                "labels are not granted (labels_known=False) and label inference is unavailable"
            ) from None
        return infer_labels(target).detach().long().cpu(), True

    def _problem(
        self,
        targets: Sequence[AttackTarget],
        labels: Sequence[torch.Tensor],
        budget: Budget,
        device: torch.device,
    ) -> tuple[Problem, torch.Tensor]:
        first = targets[0]
        model = first.model
        if _model_device(model) != device:
            model = copy.deepcopy(model).to(device)
        protocol = first.protocol
        unroll = protocol.kind == "fedavg" and first.threat.local_hparams_known
        updates = build_updates(
            model,
            first.batch_size,
            first.bn_train_mode,
            protocol=protocol,
            unroll=unroll,
            route=self.route,
            input_shape=first.input_shape,
            num_classes=first.num_classes,
            per_sample_clip=self._per_sample_clip(targets),
        )
        r = budget.restarts
        per_candidate: list[list[torch.Tensor]] = []
        groups = []
        for i, t in enumerate(targets):
            observed = [u.detach().to(device) for u in t.update]
            mechanism, _ = mechanism_as_read(t)
            if protocol.kind == "fedavg" and not unroll:
                observed = [-u / _guessed_step(protocol) for u in observed]
            groups.append(ObservedGroup(i * r, (i + 1) * r, observed, mechanism))
            per_candidate.append(observed)
        stacked = [
            torch.stack([obs[k] for obs in per_candidate]).repeat_interleave(r, dim=0)
            for k in range(len(per_candidate[0]))
        ]
        label_tensor = torch.stack(list(labels)).repeat_interleave(r, dim=0)
        priors = [
            (build_prior(n, first.input_shape, first.domain), float(w))
            for n, w in self.priors_for(first).items()
        ]
        weights = resolve_parameter_weights(model, self.parameter_weights, self.exclude)
        problem = Problem(
            updates,
            label_tensor,
            Observed(stacked, groups, weights),
            self.data_term(first),
            priors,
            first.domain,
        )
        dtype = next(model.parameters()).dtype
        x0 = torch.cat([self._initial(first, restart) for _ in targets for restart in range(r)])
        x0 = x0.to(device=device, dtype=dtype)
        return problem, x0

    def _per_sample_clip(self, targets: Sequence[AttackTarget]) -> float | None:
        """C where this attack reads a mechanism that clips per sample (DP-SGD), so its
        candidate updates must be clipped per sample too; None otherwise."""
        if self.objective_for(targets[0]) != "likelihood":
            return None
        clips = {t.mechanism.per_sample_clip for t in targets if t.mechanism is not None}
        if len(clips) > 1:
            raise AttackError("targets batched in one call state different per-sample clips")
        return next(iter(clips), None)

    def _initial(self, target: AttackTarget, restart: int) -> torch.Tensor:
        """Restart `restart`'s start point, drawn by the domain (images: uniform in [0, 1])
        from a generator seeded by (seed, restart) alone, so a candidate starts the same
        however it is batched."""
        gen = torch.Generator().manual_seed(stream_seed(self.seed, RESTART_STREAM, restart))
        return target.domain.initial((1, target.batch_size, *target.input_shape), gen)


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
    step = _guessed_step(protocol)
    scaled = None if mechanism is None else ScaledLikelihood(mechanism, -step)
    return scaled, f"gradient, read as −delta / {step:g} (lr × local steps)"


def _guessed_step(protocol: Protocol) -> float:
    return protocol.local_lr * protocol.local_steps


def check_overrides(cls: type, overrides: dict[str, object]) -> None:
    """Refuse hyper-parameter names the attack does not have, listing the valid ones."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise AttackError(
            f"attack {cls.name!r}: unknown hyper-parameter {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(valid))}"
        )


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_shared(targets: Sequence[AttackTarget]) -> None:
    first = targets[0]
    ref = list(first.model.parameters())
    for t in targets[1:]:
        same = (
            type(t.model) is type(first.model)
            and t.batch_size == first.batch_size
            and tuple(t.input_shape) == tuple(first.input_shape)
            and t.num_classes == first.num_classes
            and t.protocol == first.protocol
            and t.threat == first.threat
            and t.bn_train_mode == first.bn_train_mode
            and t.domain == first.domain
        )
        params = list(t.model.parameters())
        if (
            not same
            or len(params) != len(ref)
            or any(not torch.equal(a, b) for a, b in zip(params, ref, strict=True))
        ):
            raise AttackError(
                "targets batched in one call must share model, start parameters, batch size, "
                "input shape and domain, protocol and threat model"
            )


def _status_message(status: str, budget: Budget) -> str:
    if status == "timeout":
        return f"time budget of {budget.seconds} s reached; best candidate so far returned"
    return "objective is not finite for every candidate"
