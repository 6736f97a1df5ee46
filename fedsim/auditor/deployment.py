"""Setting the auditor up for a Flower app that does not otherwise use fedsim.

`LeakageAuditor.for_model` (deployment mode) has no scenario: the set-up comes from the
app's keywords (`AuditSetup.for_model`), Flower's DP tools around the strategy or in the
clients are recognised (`fedsim.auditor.flower_dp`), an argument that would do nothing
is refused (`fedsim.auditor.arguments`), the model and every attack are tried once on a
random batch (`fedsim.auditor.preflight`) and then planned against the round's time
(`fedsim.auditor.cost_plan`, with the proxy audit of `fedsim.auditor.proxy`). Each
audited reply is then watched against the protocol the auditor was told (`ProtocolWatch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from flwr.app import Message

from fedsim.auditor.arguments import refuse_ignored_arguments
from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.cost_plan import CostPlan
from fedsim.auditor.flower_dp import FlowerPrivacy, LocalDp, deployment_kappa, recognise
from fedsim.auditor.preflight import preflight, simulated_update
from fedsim.auditor.protocol_check import ProtocolCheck, update_norm
from fedsim.auditor.proxy import ProxyAudit, plan_audit, proxy_refusal
from fedsim.auditor.setup import AuditSetup
from fedsim.records import RunRecorder


def deployment_setup(
    inner: Any,
    model_fn: Callable[[], torch.nn.Module],
    given: dict[str, Any],
    *,
    out_dir: str | Path | None,
    delta: float,
) -> tuple[AuditSetup, FlowerPrivacy | None]:
    """The audit set-up from the keywords `given` to `for_model`, and the Flower DP tool
    in use where one is recognised (its mechanism and label then the setup's).

    A `LocalDpMod` given as `defense` is taken out of `given`: it is not a fedsim spec."""
    privacy = recognise(inner, given.get("defense"), delta)
    if isinstance(privacy, LocalDp):
        given["defense"] = None  # a Flower mod, not a fedsim defense spec
    audit_setup = AuditSetup.for_model(model_fn, **given)
    if isinstance(privacy, LocalDp):
        kappa = deployment_kappa(audit_setup.audit.threat.kappa)
        privacy = dataclasses.replace(privacy, kappa=kappa)
    refuse_ignored_arguments(given, audit_setup, out_dir=out_dir, delta=delta, privacy=privacy)
    if privacy is not None:
        audit_setup = dataclasses.replace(
            audit_setup,
            mechanism=privacy.mechanism(None, audit_setup.protocol),
            defense_label=privacy.label,
        )
    return audit_setup, privacy


def plan_deployment(
    setup: AuditSetup,
    runner: AttackRunner,
    privacy: FlowerPrivacy | None,
    proxy_data: Any,
    mechanism: object | None,
    recorder: RunRecorder | None,
) -> tuple[CostPlan, ProxyAudit | None]:
    """Try the model and every attack once, then plan each attack a round (logged, and
    written to the run folder) and, given `proxy_data`, the proxy audit. `mechanism`: the
    likelihood the app gave without its defense, if any."""
    with torch.random.fork_rng(devices=[]):  # the app's random draws stay its own
        preflight(setup, runner)
        refusal = proxy_refusal(privacy, mechanism)
        plan, proxy = plan_audit(setup, runner, proxy_data, refusal)
    plan.log()
    if recorder is not None:
        plan.write(recorder.run_dir)
    return plan, proxy


def protocol_text(setup: AuditSetup) -> str:
    """'fedavg, 5 local steps of lr 0.1, batch 8' and the like, for messages."""
    protocol = setup.protocol
    if protocol.kind == "fedsgd":
        return f"fedsgd, lr {protocol.local_lr:g}, batch {setup.batch_size}"
    chunk = f" in chunks of {protocol.local_batch_size}" if protocol.local_batch_size else ""
    how = "" if protocol.plain_sgd else f", {protocol.optimizer.describe()}"
    how += ", scheduled lr" if protocol.lr_schedule is not None else ""
    how += ", shuffled" if protocol.shuffled else ""
    return (
        f"fedavg, {protocol.local_steps} local steps of lr {protocol.local_lr:g}{chunk}{how}, "
        f"batch {setup.batch_size}"
    )


class ProtocolWatch:
    """Each audited reply against the declared protocol (`fedsim.auditor.protocol_check`):
    the weight it reports, its update's norm against the declared protocol's on random
    inputs (simulated once, from the first audited round's start parameters) and the
    noise it carries."""

    def __init__(self, setup: AuditSetup) -> None:
        self.setup = setup
        self.check = ProtocolCheck(setup.batch_size, protocol_text(setup), setup.mechanism)
        self.simulated_norm: float | None = None

    def reply(
        self,
        server_round: int,
        client: int,
        message: Message,
        start: dict[str, torch.Tensor],
        update: list[torch.Tensor],
        *,
        weight_key: str,
        by_proxy: bool,
    ) -> None:
        """Check one reply; `by_proxy`: proxy clients give the norm's reference instead
        (`ProxyAudit.audit`), so no random-input simulation is needed."""
        metrics = list(message.content.metric_records.values())
        if len(metrics) == 1 and weight_key in metrics[0]:
            self.check.weight(server_round, client, metrics[0][weight_key], weight_key)
        if not by_proxy and self.simulated_norm is None and not self.check.noisy:
            model = self.setup.build_model()
            model.load_state_dict(start)
            with torch.random.fork_rng(devices=[]):  # the app's draws stay its own
                self.simulated_norm = update_norm(simulated_update(self.setup, model))
        norm = update_norm(update)
        if self.simulated_norm is not None:
            self.check.norm(server_round, client, norm, self.simulated_norm)
        self.check.noise(server_round, client, norm, sum(u.numel() for u in update))
