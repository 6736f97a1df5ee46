"""Run the scenario's attacks on one audited round and turn the results into records.

A `RoundJob` holds copies of everything it needs (start parameters, recovered updates,
ground truth), so it can run in a worker thread while the federation moves on. Every
attack failure becomes a record with a status and the error's message: `oom` when it
ran out of memory (torch.OutOfMemoryError, a RuntimeError "out of memory", MemoryError;
a batched attack is then retried one target at a time), `failed` for any other
exception (`refused` when the attack refuses a target it cannot honestly model,
`attacks.errors.AttackRefused`), `timeout` when the attack says so or returns well past
its time budget (`Budget.seconds`). The optimisation attacks stop themselves there:
their loop checks the deadline every step, building the problem included, and returns
the best candidate so far; the over-budget check catches attacks that cannot be stopped
half-way. `out_of_reach` records an attack a cost plan keeps off the update
(`RoundJob.skipped`, `fedsim.auditor.cost_plan`); the update's label counts are still read.

`seconds` in a record is the attack's own time on that client, or, where one call
reconstructed several clients at once (`reconstruct_many`), an equal share of that
call's time; `seconds_shared_by` says how many clients shared it (1: its own time).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attacks.domain import ImageDomain
from attacks.errors import AttackRefused
from attacks.local_training import approximations
from attacks.specs import ADAPTED, AttackSpec
from attacks.target import AttackTarget, Budget, Reconstruction, ThreatModel
from fedsim.auditor.label_counts import label_counts_field
from fedsim.auditor.scoring import score_reconstruction
from fedsim.auditor.setup import AuditSetup
from fedsim.judgement import read_record
from fedsim.scenario.audit import AttackConfig, BudgetConfig
from fedsim.scenario.build import derived_seed
from fedsim.scenario.components import build_attack, build_defense

_ATTACK_TAG = 0xA77C

logger = logging.getLogger(__name__)


@dataclass
class ClientCase:
    """One intercepted update; `originals`/`true_labels` only where ground truth exists.

    `client` is the partition id where the reply carries one, else the node id; `node` is
    the Flower node id the reply came from (None where unknown)."""

    client: int
    update: list[torch.Tensor]
    node: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    """Extra fields of this client's records (its ε under Flower's LocalDpMod)."""
    originals: torch.Tensor | None = None
    """Images in [0, 1] pixel space whatever the domain's box (reconstructions are mapped
    there to be scored), or feature rows."""
    true_labels: torch.Tensor | None = None
    trained_on: torch.Tensor | None = None
    """The originals after the defenses' batch stage (ATS), where one transforms them."""
    batch_size: int | None = None
    """How many inputs the update was computed from, where not the setup's (the aggregate
    of a secure-aggregation round: every client's batch together)."""
    mechanism_refusal: str | None = None
    """Why no likelihood is stated for this case though the setup states one (the
    aggregate of several clients' defended updates)."""


@dataclass
class RoundJob:
    server_round: int
    start_state: dict[str, torch.Tensor]
    cases: list[ClientCase] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Records of the round's replies that were not attacked (status `rejected`)."""
    mechanism: object | None = None
    """This round's mechanism where it is known per round (Flower's adaptive clipping sends
    a new norm each round); None: the setup's."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Extra fields of every record of the round (what the server saw under Flower's DP
    tools, the central ε)."""
    budgets: dict[str, BudgetConfig] = field(default_factory=dict)
    """Attack label → its budget on this job, where a cost plan sets one
    (`fedsim.auditor.cost_plan`); else the setup's."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Attack label → why it is not run on this job (recorded `out_of_reach`, with the
    label counts of each update still read)."""


_NO_SCORES: dict[str, Any] = {
    "psnr": None,
    "ssim": None,
    "recognisable": None,
    "mse": None,
    "categorical_accuracy": None,
    "label_accuracy": None,
}
"""The score fields of a record: images have PSNR and SSIM, feature rows MSE and the
share of categorical columns right; all None without ground truth."""

OVER_BUDGET_FACTOR = 1.5
"""An attack that returns after more than this times its `seconds` budget (plus one
second of slack) is recorded as `timeout`, its scores kept."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError, Python's MemoryError, or a RuntimeError saying so."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class _OutOfReach(Exception):
    """Not an error: the cost plan keeps this attack off this update (its reason)."""


def _failure_status(error: BaseException) -> str:
    """`oom`, `refused` (the attack cannot honestly run on the target), `out_of_reach`
    (the cost plan keeps it off the update) or `failed`."""
    if is_out_of_memory(error):
        return "oom"
    if isinstance(error, _OutOfReach):
        return "out_of_reach"
    return "refused" if isinstance(error, AttackRefused) else "failed"


def _release_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class AttackResult:
    """What became of one attack on one case: the record line and the images for a grid."""

    record: dict[str, Any]
    inputs: torch.Tensor | None = None


def seeded(attack: Any, seed: int) -> Any:
    """A copy of `attack` with its `seed` option set, where it has one (else the attack itself).

    Attacks draw their randomness from generators seeded by this option, so a round's
    reconstructions are repeatable; an attack without a `seed` is repeatable only if
    it is deterministic.
    """
    if not hasattr(attack, "seed"):
        return attack
    if dataclasses.is_dataclass(attack):
        return dataclasses.replace(attack, seed=seed)
    twin = copy.copy(attack)
    twin.seed = seed
    return twin


def attack_targets(
    attack: Any, targets: Sequence[AttackTarget], budget: Budget
) -> tuple[list[Reconstruction | Exception], int]:
    """Reconstruct every target: in one batched call where the attack offers one.

    Returns the results and how many targets shared one call (1: each had its own)."""
    batched = getattr(attack, "reconstruct_many", None)
    if batched is not None and len(targets) > 1:
        try:
            return list(batched(list(targets), budget)), len(targets)
        except Exception as error:  # noqa: BLE001 - an attack failure must not fail the round
            if not is_out_of_memory(error):
                return [error] * len(targets), len(targets)
            _release_memory()  # the batch did not fit: one target at a time may
    results: list[Reconstruction | Exception] = []
    for target in targets:
        try:
            results.append(attack.reconstruct(target, budget))
        except Exception as error:  # noqa: BLE001
            if is_out_of_memory(error):
                _release_memory()
            results.append(error)
    return results, 1


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
            **_NO_SCORES,
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
        surrogate = (
            attack.surrogate_for(targets[0]) if targets and _has_surrogates(attack) else None
        )
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
        read = _update_facts(ready, targets)
        if skip is not None:
            results = [_OutOfReach(skip)] * len(ready)
        for case, result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                seconds = elapsed / max(len(ready), 1)
                outcome = self._failure(job, case, config, result, seconds, shared_by)
            else:
                outcome = self._success(job, case, config, result, shared_by)
                _flag_over_budget(outcome.record, budget, elapsed / max(len(ready), 1))
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
        text = str(error) if isinstance(error, _OutOfReach) else f"{type(error).__name__}: {error}"
        return AttackResult(
            self.unscored_record(
                job.server_round,
                case.client,
                config,
                status=_failure_status(error),
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
        objective = recon.objective.detach().flatten()
        record.update(_NO_SCORES)
        if scores is not None:
            record.update(
                psnr=scores.psnr,
                ssim=scores.ssim,
                recognisable=scores.recognisable,
                mse=scores.mse,
                categorical_accuracy=scores.categorical_accuracy,
                label_accuracy=scores.label_accuracy,
            )
            if scores.mse_rows is not None:
                record.update(mse_rows=scores.mse_rows, categorical_rows=scores.categorical_rows)
        record.update(
            objective=float(objective[recon.best]) if objective.numel() else None,
            iterations=int(recon.iterations),
            seconds=float(recon.seconds),
            seconds_shared_by=shared_by,
            status=recon.status,
            message=recon.message,
            priors=dict(recon.priors),
            priors_source=recon.priors_source,
            mechanism=recon.likelihood,
            mechanism_reason=None if recon.likelihood is not None else recon.likelihood_note,
        )
        self._warn_untuned(config, recon.priors_source)
        if scores is not None and scores.psnr_images is not None:
            record.update(psnr_images=scores.psnr_images, ssim_images=scores.ssim_images)
        if scores is not None:
            record.update(self._guessed(case.originals, case.true_labels, ""))
        if case.trained_on is not None and case.true_labels is not None:
            seen = score_reconstruction(
                unit, recon.labels, case.trained_on, case.true_labels, domain
            )
            record.update(
                psnr_trained_on=seen.psnr,
                ssim_trained_on=seen.ssim,
                recognisable_trained_on=seen.recognisable,
                psnr_trained_on_images=seen.psnr_images,
                ssim_trained_on_images=seen.ssim_images,
            )
            record.update(self._guessed(case.trained_on, case.true_labels, "_trained_on"))
        _judged_shares(record)
        if scores is not None:
            inputs = inputs[scores.order]
        return AttackResult(record, inputs)

    def _guessed(
        self, originals: torch.Tensor | None, labels: torch.Tensor | None, suffix: str
    ) -> dict[str, Any]:
        """The guess that ignores the update, scored against the same originals (record
        fields `ssim_guess<suffix>_images`…, and `guess`: what it was); {} without one."""
        guess = self.setup.guess
        if guess is None or originals is None or labels is None:
            return {}
        scores = guess.scores(originals, labels)
        named = {
            name.replace("_guess_", f"_guess{suffix}_") if suffix else name: values
            for name, values in scores.items()
        }
        return {"guess": guess.kind, **named}


def _judged_shares(record: dict[str, Any]) -> None:
    """`recognisable` (and `recognisable_trained_on`): the share of images recovered as
    `fedsim.judgement` counts them, so the record and every report agree."""
    for reading in read_record(record):
        if reading.domain == "images" and reading.recovered:
            name = "recognisable_trained_on" if reading.series.trained_on else "recognisable"
            record[name] = sum(reading.recovered) / len(reading.recovered)


def _update_facts(
    cases: Sequence[ClientCase], targets: Sequence[AttackTarget]
) -> dict[int, dict[str, Any]]:
    """Per case (by id): what its update gives away without an attack (`label_counts`)
    and where the attacks' model of its training is approximate (`approximations`)."""
    return {
        id(case): {
            "label_counts": label_counts_field(target, case.true_labels),
            "approximations": approximations(target),
        }
        for case, target in zip(cases, targets, strict=True)
    }


def _has_surrogates(attack: Any) -> bool:
    return callable(getattr(attack, "surrogate_for", None))


def _flag_over_budget(record: dict[str, Any], budget: Budget, elapsed: float) -> None:
    """Mark an `ok` record `timeout` when the attack ran well past its time budget."""
    limit = budget.seconds
    spent = max(float(record.get("seconds") or 0.0), elapsed)
    if limit is None or record.get("status") != "ok":
        return
    if spent > OVER_BUDGET_FACTOR * limit + 1.0:
        record["status"] = "timeout"
        record["message"] = f"ran {spent:.1f} s, past its time budget of {limit:g} s"
