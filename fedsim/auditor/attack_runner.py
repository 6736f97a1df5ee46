"""Run the scenario's attacks on one audited round and turn the results into records.

`AttackRunner` builds each case's attack target as the threat model lets the server see
it, runs every configured attack on the cases of a `RoundJob` (`fedsim.auditor.jobs`),
seeded by round and attack so that it gives the same results wherever it runs, and makes
one leakage line per (attack, case): scored against the ground truth where there is one
(`fedsim.auditor.record_fields`), or with the status and message of its failure
(`fedsim.auditor.attack_calls`). `out_of_reach` records an attack a cost plan keeps off
the update (`RoundJob.skipped`, `fedsim.auditor.cost_plan`); the update's label counts
are still read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from attacks.domain import ImageDomain
from attacks.specs import ADAPTED, AttackSpec
from attacks.target import AttackTarget, Budget, Reconstruction, ThreatModel
from fedsim.auditor.attack_calls import (
    OutOfReach,
    attack_targets,
    failure_status,
    flag_over_budget,
    has_surrogates,
    seeded,
)
from fedsim.auditor.jobs import AttackResult, ClientCase, RoundJob
from fedsim.auditor.record_fields import (
    NO_SCORES,
    guess_fields,
    judged_shares,
    reconstruction_fields,
    score_fields,
    trained_on_fields,
    update_facts,
)
from fedsim.auditor.scoring import score_reconstruction
from fedsim.auditor.setup import AuditSetup
from fedsim.scenario.audit import AttackConfig
from fedsim.scenario.build import derived_seed
from fedsim.scenario.components import build_attack, build_defense

__all__ = ["AttackResult", "AttackRunner", "ClientCase", "RoundJob", "attack_targets"]
"""The job types and `attack_targets` are named here too, where callers have long found them."""

_ATTACK_TAG = 0xA77C

logger = logging.getLogger(__name__)


def _load_optimizers() -> None:
    """Import what torch.optim loads on its first use (torch._dynamo, about a second on
    a CPU), so that it is paid while the auditor is set up, not by the first audited round."""
    import torch._dynamo  # noqa: F401


class AttackRunner:
    """Builds targets for a round's cases and runs each configured attack on them."""

    def __init__(
        self,
        setup: AuditSetup,
        device: torch.device,
        attacks: Sequence[tuple[AttackConfig, Any]] | None = None,
    ) -> None:
        """`attacks`: (config, attack object) pairs; default: built from the setup's names."""
        self.setup = setup
        self.device = device
        if attacks is None:
            attacks = [
                (config, self._build(config, index)) for index, config in enumerate(setup.attacks)
            ]
        self.attacks = list(attacks)
        self._warned: set[str] = set()
        _load_optimizers()

    def _build(self, config: AttackConfig, index: int) -> Any:
        """The configured attack; `adapted` becomes the attack adapted to the clients' defense."""
        if config.name != ADAPTED:
            return build_attack(config.name, dict(config.overrides), index)
        defense = self.setup.defense or build_defense([])
        spec = AttackSpec(ADAPTED, dict(config.overrides)).resolve(
            defense, self.setup.build_model()
        )
        return build_attack(spec.name, dict(spec.overrides), index)

    def threat_model(self) -> ThreatModel:
        return self.setup.threat

    def target(
        self, model: torch.nn.Module, case: ClientCase, mechanism: object | None = None
    ) -> AttackTarget:
        """The attack target of `case`, as the threat model lets the server see it."""
        threat = self.threat_model()
        labels = None
        if threat.labels_known and case.true_labels is not None:
            labels = case.true_labels.to(self.device)
        if mechanism is None:
            mechanism = self.setup.mechanism
        refusal = self.setup.mechanism_refusal
        if case.mechanism_refusal is not None:
            mechanism, refusal = None, case.mechanism_refusal
        seen = mechanism if threat.mechanism_known else None
        return AttackTarget(
            model=model,
            # in the dtypes of the model the attack runs (FedAdam sends float64 weights)
            update=[
                u.to(self.device, p.dtype)
                for u, p in zip(case.update, model.parameters(), strict=True)
            ],
            batch_size=case.batch_size or self.setup.batch_size,
            input_shape=self.setup.input_shape,
            num_classes=self.setup.num_classes,
            labels=labels,
            mechanism=seen,
            mechanism_refusal=refusal if threat.mechanism_known else None,
            mechanism_missing=self.setup.missing_mechanism(seen),
            protocol=self.setup.protocol,
            threat=threat,
            bn_train_mode=True,
            domain=self.setup.domain,
        )

    def base_record(
        self, server_round: int, client: int | None, config: AttackConfig, node: int | None = None
    ) -> dict[str, Any]:
        """The fields every leakage line of (round, client, attack) starts with."""
        record = {
            "round": server_round,
            "client": client,
            "attack": config.display_name,
            "defense": self.setup.defense_label,
            "batch_size": self.setup.batch_size,
            "labels": self.setup.audit.threat.labels,
            "budget": self.setup.budget_for(config).model_dump(),
            "mechanism": None,
            "mechanism_reason": "the attack made no reconstruction",
        }
        if node is not None:
            record["node"] = node
        return record

    def unscored_record(
        self,
        server_round: int,
        client: int | None,
        config: AttackConfig,
        *,
        status: str,
        message: str,
        seconds: float = 0.0,
        node: int | None = None,
        shared_by: int = 1,
    ) -> dict[str, Any]:
        """A leakage line for an attack that produced no reconstruction, and why."""
        return {
            **self.base_record(server_round, client, config, node),
            **NO_SCORES,
            "objective": None,
            "iterations": 0,
            "seconds": seconds,
            "seconds_shared_by": shared_by,
            "status": status,
            "message": message,
        }

    def run(
        self, job: RoundJob, on_result: Callable[[ClientCase, AttackResult], None] | None = None
    ) -> list[tuple[ClientCase, AttackResult]]:
        """Every attack on every case of `job`; results in (attack, client) order."""
        model = self._start_model(job)
        outcomes: list[tuple[ClientCase, AttackResult]] = []
        for index in range(len(self.attacks)):
            outcomes.extend(self.run_attack(job, index, model))
        if on_result is not None:
            for case, outcome in outcomes:
                on_result(case, outcome)
        return outcomes

    def _start_model(self, job: RoundJob) -> torch.nn.Module:
        model = self.setup.build_model()
        model.load_state_dict(job.start_state)
        return model.to(self.device)

    def run_attack(
        self, job: RoundJob, index: int, model: torch.nn.Module | None = None
    ) -> list[tuple[ClientCase, AttackResult]]:
        """Attack number `index` on every case of `job` (seeded by round and index, so it
        gives the same results wherever it runs)."""
        config, attack = self.attacks[index]
        model = model if model is not None else self._start_model(job)
        outcomes: list[tuple[ClientCase, AttackResult]] = []
        planned = job.budgets.get(config.display_name) or self.setup.budget_for(config)
        budget = Budget(**planned.model_dump())
        targets: list[AttackTarget] = []
        ready: list[ClientCase] = []
        for case in job.cases:
            try:
                targets.append(self.target(model, case, job.mechanism))
                ready.append(case)
            except Exception as error:  # noqa: BLE001
                outcomes.append((case, self._failure(job, case, config, error, 0.0)))
        surrogate = attack.surrogate_for(targets[0]) if targets and has_surrogates(attack) else None
        if surrogate is not None:  # it is not the attack its name says: records say so
            config = config.model_copy(update={"label": f"{config.display_name}~{surrogate}"})
        started = time.perf_counter()
        seed = derived_seed(self.setup.seed, _ATTACK_TAG, job.server_round, index) % 2**31
        skip = job.skipped.get(config.display_name)
        # No global RNG here: this may run in a worker thread beside the federation.
        results, shared_by = (
            attack_targets(seeded(attack, seed), targets, budget)
            if targets and skip is None
            else ([], 1)
        )
        elapsed = time.perf_counter() - started
        read = update_facts(ready, targets)
        if skip is not None:
            results = [OutOfReach(skip)] * len(ready)
        for case, result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                seconds = elapsed / max(len(ready), 1)
                outcome = self._failure(job, case, config, result, seconds, shared_by)
            else:
                outcome = self._success(job, case, config, result, shared_by)
                flag_over_budget(outcome.record, budget, elapsed / max(len(ready), 1))
            outcomes.append((case, outcome))
        for case, outcome in outcomes:
            outcome.record.update({**job.fields, **case.fields, **read.get(id(case), {})})
            outcome.record["budget"] = planned.model_dump()
        return outcomes

    def lost_record(self, job: RoundJob, case: ClientCase, index: int, reason: str) -> AttackResult:
        """The `failed` record of attack `index` on `case` when its run was lost (a Ray task)."""
        config, _ = self.attacks[index]
        result = AttackResult(
            self.unscored_record(
                job.server_round, case.client, config, status="failed", message=reason
            )
        )
        result.record.update({**job.fields, **case.fields})
        return result

    def _warn_untuned(self, config: AttackConfig, source: str) -> None:
        """Say once per attack, on the console, that its prior weights were tuned elsewhere."""
        if source.startswith("untuned") and config.display_name not in self._warned:
            self._warned.add(config.display_name)
            logger.warning("attack %s: %s", config.display_name, source)

    def _failure(
        self,
        job: RoundJob,
        case: ClientCase,
        config: AttackConfig,
        error: Exception,
        seconds: float,
        shared_by: int = 1,
    ) -> AttackResult:
        text = str(error) if isinstance(error, OutOfReach) else f"{type(error).__name__}: {error}"
        return AttackResult(
            self.unscored_record(
                job.server_round,
                case.client,
                config,
                status=failure_status(error),
                message=(text.splitlines() or [""])[0],
                seconds=seconds,
                node=case.node,
                shared_by=shared_by,
            )
        )

    def _success(
        self,
        job: RoundJob,
        case: ClientCase,
        config: AttackConfig,
        recon: Reconstruction,
        shared_by: int = 1,
    ) -> AttackResult:
        record = self.base_record(job.server_round, case.client, config, case.node)
        inputs = recon.inputs.detach().float().cpu()
        domain = self.setup.domain
        # originals are in [0, 1] pixel space; a reconstruction in the domain's box
        unit = domain.to_unit(inputs) if isinstance(domain, ImageDomain) else inputs
        scores = None
        if case.originals is not None and case.true_labels is not None:
            try:
                scores = score_reconstruction(
                    unit, recon.labels, case.originals, case.true_labels, domain
                )
            except Exception as error:  # noqa: BLE001
                return self._failure(job, case, config, error, recon.seconds, shared_by)
        record.update(NO_SCORES)
        if scores is not None:
            record.update(score_fields(scores))
        record.update(reconstruction_fields(recon, shared_by))
        self._warn_untuned(config, recon.priors_source)
        if scores is not None and scores.psnr_images is not None:
            record.update(psnr_images=scores.psnr_images, ssim_images=scores.ssim_images)
        if scores is not None:
            record.update(guess_fields(self.setup.guess, case.originals, case.true_labels, ""))
        if case.trained_on is not None and case.true_labels is not None:
            seen = score_reconstruction(
                unit, recon.labels, case.trained_on, case.true_labels, domain
            )
            record.update(trained_on_fields(seen))
            record.update(
                guess_fields(self.setup.guess, case.trained_on, case.true_labels, "_trained_on")
            )
        judged_shares(record)
        if scores is not None:
            inputs = inputs[scores.order]
        return AttackResult(record, inputs)
