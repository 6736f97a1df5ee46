"""`AuditSetup`: everything the auditor needs to know, from a fedsim scenario or given by hand.

From a scenario (`from_federation`) the auditor has ground truth: it recomputes each
client's batch and scores reconstructions. Given by hand (`for_model`, for a Flower
app that does not otherwise use fedsim) it is in deployment mode: no ground truth,
it stores reconstructions and attack objectives only. Either way the setup states the
data domain the attacks search (`attacks.domain`: images in a box, or feature rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from attacks.domain import FeatureDomain, ImageDomain, InputDomain
from attacks.likelihood import ScaledLikelihood
from attacks.target import Protocol, ThreatModel
from defenses.base import Defense, missing_mechanism, stated_mechanism
from fedsim.auditor.client_training import OptimizerSpec, declared_protocol
from fedsim.metrics.guesses import Guess, image_guess, row_guess
from fedsim.scenario.audit import AttackConfig, AuditConfig, BudgetConfig
from fedsim.scenario.build import Federation, derived_seed

GroundTruth = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
"""(client, round) → the inputs (images in [0, 1], or feature rows) and labels of the
batch that client used."""

DOMAINS: dict[str, Callable[[], InputDomain]] = {"image": ImageDomain, "features": FeatureDomain}
"""Domains by name, for `for_model(domain=...)`."""

_AUDIT_TAG = 0xA0D1


@dataclass
class AuditSetup:
    """The model, the clients' protocol and defense, the schedule and the attacks."""

    build_model: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    batch_size: int
    protocol: Protocol
    mechanism: object | None
    defense_label: str
    audit: AuditConfig
    attacks: Sequence[AttackConfig]
    seed: int = 0
    device: str = "auto"
    ground_truth: GroundTruth | None = None
    trained_batch: GroundTruth | None = None
    """(client, round) → the batch after the defenses' batch stage, where one transforms
    it (ATS): reconstructions are also scored against what the gradient was computed on."""
    secure_aggregation: bool = False
    num_clients: int | None = None
    """How many partitions exist (a reply claiming another id is rejected); None: unknown."""
    defense: Defense | None = None
    """The clients' defenses as one object; the `adapted` attack is chosen from it."""
    mechanism_refusal: str | None = None
    """Why no likelihood is stated though the defenses perturb the update (attacks that
    model the mechanism are then refused with this reason)."""
    domain: InputDomain = field(default_factory=ImageDomain)
    """Where the clients' inputs live (images in [0, 1] by default; see `attacks.domain`)."""
    guess: Guess | None = None
    """The guess that ignores the update, which a reconstruction must beat to count as
    recovered (`fedsim.metrics.guesses`); None where the server holds no data to make it."""
    clients_hold_cpus: bool = False
    """The clients run on Flower's Ray simulation engine, whose actors reserve every CPU
    (Ray attack tasks then reserve none by default: `AuditConfig.task_resources`)."""

    @classmethod
    def from_federation(cls, federation: Federation) -> AuditSetup:
        """Ground-truth mode: a fedsim scenario's model, data and defenses."""
        scenario = federation.scenario
        return cls(
            build_model=federation.build_model,
            input_shape=tuple(federation.info.input_shape),
            num_classes=federation.info.num_classes,
            batch_size=scenario.protocol.batch_size,
            protocol=federation.attack_protocol(),
            mechanism=federation.mechanism,
            defense_label=scenario.defense_label,
            audit=scenario.audit,
            attacks=list(scenario.attacks),
            seed=scenario.seed,
            device=scenario.device,
            ground_truth=federation.client_batch,
            trained_batch=(
                federation.trained_batch if "batch" in federation.defense.stages else None
            ),
            secure_aggregation=scenario.federation.secure_aggregation,
            num_clients=federation.num_clients,
            defense=federation.defense,
            mechanism_refusal=federation.mechanism_refusal,
            domain=federation.domain(),
            guess=_guess_from(federation),
            clients_hold_cpus=scenario.simulation.engine == "ray",
        )

    @classmethod
    def for_model(
        cls,
        model_fn: Callable[[], nn.Module],
        *,
        input_shape: Sequence[int],
        num_classes: int,
        batch_size: int,
        domain: InputDomain | str,
        protocol: str,
        lr: float | None = None,
        local_steps: int | None = None,
        local_batch_size: int | None = None,
        optimizer: OptimizerSpec = None,
        lr_schedule: Sequence[float] | Callable[..., Any] | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        attacks: Sequence[str | AttackConfig] = ("bayes",),
        defense: str | None = None,
        mechanism: object | None = None,
        audit: AuditConfig | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> AuditSetup:
        """Deployment mode, for any Flower app whose clients train `model_fn()`.

        What the auditor cannot see, it must be told, so these have no defaults:
        `domain` (`"image"`: inputs in [0, 1]; `"features"`: feature rows, or an
        `attacks.domain` object with one-hot groups, a different box or granted feature
        statistics), `protocol` (`fedavg`: clients send new weights after `local_steps`
        SGD steps of `lr`, each on `local_batch_size` samples of the batch; `fedsgd`:
        clients send θ − lr·g) and, under `fedavg`, `local_steps`. `batch_size` is how
        many samples one update is computed from. Under `fedavg`, the clients' training as
        they build it (`fedsim.auditor.client_training`): `optimizer`, the factory they
        build their torch optimiser with (`functools.partial(torch.optim.SGD, lr=0.1,
        momentum=0.9)`; SGD, Adam, AdamW; it carries `lr`; None: plain SGD of `lr`);
        `lr_schedule`, a torch lr_scheduler factory stepped after every local step or the
        learning rate of each step; `shuffle` and `drop_last`, as their DataLoader has
        them (mini-batches of `local_batch_size`, passes over the batch). `defense`: the
        spec of the defense the clients apply (e.g. the `defenses.flower.mod` they use), so
        that attacks that model it (Bayes) know its mechanism; `mechanism` gives the
        likelihood directly instead (Flower's own DP tools, see
        `fedsim.auditor.flower_dp`). `audit`: schedule, threat, budget, worker. A defense that acts on the update alone is
        taken as `defenses.flower.mod` applies it: to the weight delta a client sends
        (under FedSGD −lr·g, which the auditor reads back as g; `in_gradient_units`).
        """
        from fedsim.errors import ConfigError
        from fedsim.scenario.components import build_defense

        if protocol not in ("fedavg", "fedsgd"):
            raise ConfigError(f"protocol: expected 'fedavg' or 'fedsgd', got {protocol!r}")
        if protocol == "fedavg" and local_steps is None:
            raise ConfigError(
                "local_steps: required with protocol 'fedavg' (how many SGD steps a client "
                "takes before it replies; one pass over B samples in batches of b is B/b)"
            )
        if isinstance(domain, str):
            if domain not in DOMAINS:
                raise ConfigError(f"domain: expected one of {', '.join(DOMAINS)}, got {domain!r}")
            domain = DOMAINS[domain]()
        chosen = build_defense([defense] if defense else [])
        configs = [a if isinstance(a, AttackConfig) else AttackConfig(name=a) for a in attacks]
        if not isinstance(audit, AuditConfig):
            audit = AuditConfig.model_validate(audit or {})
        training = declared_protocol(
            protocol,
            lr=lr,
            local_steps=local_steps,
            local_batch_size=local_batch_size,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            shuffle=shuffle,
            drop_last=drop_last,
        )
        stated, refusal = stated_mechanism(chosen, batch_size, training)
        stated = in_gradient_units(stated, chosen, training)
        if mechanism is not None:
            stated, refusal = mechanism, None
        return cls(
            build_model=_copies_of(model_fn),
            input_shape=tuple(int(s) for s in input_shape),
            num_classes=int(num_classes),
            batch_size=int(batch_size),
            protocol=training,
            mechanism=stated,
            mechanism_refusal=refusal,
            defense_label=defense or ("none" if mechanism is None else str(mechanism)),
            audit=audit,
            attacks=configs,
            seed=seed,
            device=device,
            defense=chosen,
            domain=domain,
        )

    @property
    def threat(self) -> ThreatModel:
        threat = self.audit.threat
        return ThreatModel(
            labels_known=threat.labels == "given",
            bn_stats_known=threat.bn_stats_known,
            mechanism_known=threat.mechanism_known,
            local_hparams_known=threat.local_hparams_known,
        )

    def missing_mechanism(self, mechanism: object | None) -> str | None:
        """Why the attacks get no mechanism (`mechanism`, as the threat model lets them
        see it) though the clients' defense perturbs the update; None otherwise."""
        perturbed = self.defense is not None and self.defense.perturbs_update
        if perturbed and not self.audit.threat.mechanism_known:
            return "the threat model withholds the defense's mechanism (mechanism_known)"
        return missing_mechanism(self.defense, mechanism, self.mechanism_refusal)

    def budget_for(self, attack: AttackConfig) -> BudgetConfig:
        """The audit budget with the attack's own overrides applied."""
        return self.audit.budget_for(attack)

    def audit_rng(self, server_round: int) -> np.random.Generator:
        """The generator that samples which clients of a round are audited (as `Federation`'s)."""
        return np.random.default_rng(derived_seed(self.seed, _AUDIT_TAG, server_round))

    def recover_update(
        self,
        start: dict[str, torch.Tensor],
        sent: dict[str, torch.Tensor],
        parameter_names: list[str],
    ) -> list[torch.Tensor]:
        """The update a client computed from the start and the sent weights.

        FedSGD clients send θ − lr·g, so g = (θ − θ_sent) / lr; FedAvg clients send
        θ + δ, so δ = θ_sent − θ (see `fedsim.flower.apps.local_update`). The difference is
        taken in the wider of the two dtypes and returned in the start's dtype (a strategy
        such as FedAdam sends float64 weights to clients that answer in float32).
        """
        if self.protocol.kind == "fedsgd":
            update = [(start[n] - sent[n]) / self.protocol.local_lr for n in parameter_names]
        else:
            update = [sent[n] - start[n] for n in parameter_names]
        return [u.to(start[n].dtype) for u, n in zip(update, parameter_names, strict=True)]


def _guess_from(federation: Federation) -> Guess:
    """The guess from the split the server evaluates on: per-class mean images where the
    threat model grants the labels, else the flat mean; for rows, column means and most
    common categories."""
    held = federation.eval_set()
    domain = federation.domain()
    if isinstance(domain, FeatureDomain):
        return row_guess(held.images, domain.categorical)
    labels_known = federation.scenario.audit.threat.labels == "given"
    return image_guess(held.images, held.labels if labels_known else None)


def in_gradient_units(
    mechanism: object | None, defense: Defense, protocol: Protocol
) -> object | None:
    """`mechanism` in the units the auditor reads, for a defense applied as a Flower mod.

    `defenses.flower.mod` defends the delta Δ = θ_sent − θ. Under FedSGD that is −lr·g
    and the auditor reads g = −Δ/lr, so the likelihood of g is the defense's evaluated at
    (−lr·g, −lr·c) (`attacks.likelihood.ScaledLikelihood`: noise σ reads as σ/lr). Under
    FedAvg the auditor reads Δ itself. Defenses acting at other stages are stated in
    the units of what a fedsim client sends (`defenses.client`) and are left as they are.
    """
    if mechanism is None or protocol.kind != "fedsgd" or not defense.stages <= {"update"}:
        return mechanism
    return ScaledLikelihood(mechanism, -protocol.local_lr)


def _copies_of(model_fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """A builder of copies of one `model_fn()` made now, with torch's global RNG left as
    it was: the auditor builds models while the app trains (in a worker thread, too),
    and the app's own random draws must not depend on whether it is audited. The
    initial weights do not matter: every attack loads the round's start parameters."""
    import copy

    with torch.random.fork_rng(devices=[]):
        template = model_fn()

    def build() -> nn.Module:
        return copy.deepcopy(template)

    return build
