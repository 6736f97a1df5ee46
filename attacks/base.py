"""An optimisation attack: a named configuration of the engine, checked against the threat model.

Subclasses (see `attacks.configs`) only set defaults: the data term, priors and
optimiser of their paper, what they need from the threat model, and the reference.
`reconstruct_many` batches several targets that share a model and its start parameters
(clients of one round, images of one `fedsim attack`) into one optimisation.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import torch

from attacks.domain import ImageDomain
from attacks.engine import OptimizerConfig, Problem, optimise
from attacks.errors import AttackError, AttackRefused
from attacks.likelihood import describe_likelihood
from attacks.objectives import Objective, Observed, ObservedGroup, build_objective
from attacks.parameter_weights import as_names, check_weights, resolve_parameter_weights
from attacks.prior_defaults import PriorChoice, choose_priors, lineage
from attacks.priors import build_prior, check_prior_name
from attacks.seeding import stream_seed
from attacks.target import (
    AttackTarget,
    Budget,
    Reconstruction,
    guessed_step,
    mechanism_as_read,
)
from attacks.target_checks import GRANTS, check_shared, missing_capabilities
from attacks.updates import Route, build_updates

RESTART_STREAM = "attack-restart"
"""The stream (`attacks.seeding`) each restart's starting point is drawn from."""


@dataclass(frozen=True)
class GradientAttack(OptimizerConfig):
    """Reconstruct inputs by matching the observed update, batched over candidates.

    Fields are the hyper-parameters; `build_attack(name, **overrides)` sets them, and
    `with_overrides` copies with some changed (an attack is frozen: subclasses are
    ``@dataclass(frozen=True)``). The optimiser's are those of `OptimizerConfig`.
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
    iterations: int = 200
    restarts: int = 1
    seed: int = 0
    route: Route = "auto"
    device: str | None = None
    parameter_weights: dict[str, float] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "exclude", as_names(self.exclude))
        object.__setattr__(self, "parameter_weights", check_weights(self.parameter_weights))
        if not isinstance(self.objective_options, Mapping):
            raise AttackError(f"{self.name}: objective_options must map option names to values")
        data_term = build_objective(self.objective, **self.objective_options)
        object.__setattr__(self, "_data_term", data_term)
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
        check_shared(targets)
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
                f"{'it' if len(missing) == 1 else 'them'} ({', '.join(GRANTS[m] for m in missing)})"
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
        read |= {GRANTS[need] for need in self.needs}
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
        return OptimizerConfig.of(self)

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
                observed = [-u / guessed_step(protocol) for u in observed]
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


def _status_message(status: str, budget: Budget) -> str:
    if status == "timeout":
        return f"time budget of {budget.seconds} s reached; best candidate so far returned"
    return "objective is not finite for every candidate"
