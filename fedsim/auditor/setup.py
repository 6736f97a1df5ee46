"""`AuditSetup`: everything the auditor needs to know, from a fedsim scenario or given by hand.

From a scenario (`from_federation`) the auditor has ground truth: it recomputes each
client's batch and scores reconstructions. Given by hand (`for_model`, for a Flower
app that does not otherwise use fedsim) it is in deployment mode: no ground truth,
it stores reconstructions and attack objectives only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attacks.target import Protocol, ThreatModel
from defenses.base import Defense
from fedsim.scenario.build import Federation, derived_seed
from fedsim.scenario.config import AttackConfig, AuditConfig, BudgetConfig

GroundTruth = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
"""(client, round) → the images in [0, 1] and labels of the batch that client used."""

_AUDIT_TAG = 0xA0D1


@dataclass
class AuditSetup:
    """The model, the clients' protocol and defense, the schedule and the attacks."""

    build_model: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
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
        attacks: Sequence[str | AttackConfig] = ("bayes",),
        defense: str | None = None,
        protocol: str = "fedavg",
        lr: float = 0.1,
        local_steps: int = 1,
        local_batch_size: int | None = None,
        audit: AuditConfig | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> AuditSetup:
        """Deployment mode, for any Flower app whose clients train `model_fn()` on images.

        `protocol`: `fedavg` (clients send new weights after `local_steps` SGD steps of
        `lr`) or `fedsgd` (clients send θ − lr·g). `defense`: the spec of the defense the
        clients apply (e.g. the `defenses.flower.mod` they use), so that attacks that
        model it (Bayes) know its mechanism. `audit`: schedule, threat, budget, worker.
        """
        from fedsim.scenario.components import build_defense

        chosen = build_defense([defense] if defense else [])
        configs = [a if isinstance(a, AttackConfig) else AttackConfig(name=a) for a in attacks]
        if not isinstance(audit, AuditConfig):
            audit = AuditConfig.model_validate(audit or {})
        return cls(
            build_model=model_fn,
            input_shape=tuple(int(s) for s in input_shape),
            num_classes=int(num_classes),
            batch_size=int(batch_size),
            protocol=Protocol(
                kind=protocol,
                local_steps=local_steps,
                local_lr=lr,
                local_batch_size=local_batch_size,
            ),
            mechanism=chosen.mechanism_for(batch_size),
            defense_label=defense or "none",
            audit=audit,
            attacks=configs,
            seed=seed,
            device=device,
            defense=chosen,
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

    def budget_for(self, attack: AttackConfig) -> BudgetConfig:
        """The audit budget with the attack's own overrides applied."""
        return self.audit.budget.model_copy(update=attack.budget.model_dump(exclude_none=True))

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
        θ + δ, so δ = θ_sent − θ (see `fedsim.flower.local_update`).
        """
        if self.protocol.kind == "fedsgd":
            return [(start[n] - sent[n]) / self.protocol.local_lr for n in parameter_names]
        return [sent[n] - start[n] for n in parameter_names]
