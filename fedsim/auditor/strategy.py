"""`LeakageAuditor`: an honest-but-curious wrapper around any Flower strategy.

It passes every call through to the inner strategy unchanged (same messages, same
replies, so the aggregate is identical bit for bit). On the way it keeps the arrays
sent in `configure_train` (the parameters the clients start from) and, in
`aggregate_train`, where individual replies are visible, it selects the replies on
the audit schedule, recovers each client's update and hands them to the attacks —
in a worker thread by default, so the next round need not wait, or as Ray tasks
spread over a cluster (`audit.worker = "ray"`, `fedsim.auditor.ray_tasks`). Ground
truth comes from the scenario (same partition, same seeded sampler); nothing extra
travels from the clients except their partition id (and, under Ray, the node they ran
on) in a ConfigRecord. Without a scenario
(`LeakageAuditor.for_model`, deployment mode, `fedsim.auditor.deployment`) there is no
ground truth: it records the attack objectives and stores the reconstructions (tensors
and PNGs). Under secure aggregation it attacks nothing and records that per-client
attacks are impossible: in `aggregate_train` when a setup declares it (a Flower app that
hides updates by other means), or through `record_secure_round` on fedsim's SecAgg+ path
(`fedsim.flower.apps.secagg`), where no individual reply ever reaches the server and
only that method and `close` are called.

Which client sent a reply, and which replies are `rejected` and why, is
`fedsim.auditor.replies`; in deployment mode (and on `rejected` lines) every line also
holds the node id. Where each audited round's records go is `fedsim.auditor.round_output`,
and `close()` returns and logs the run's summary. In deployment mode the auditor checks
what it can observe against the protocol it was told (`fedsim.auditor.protocol_check`),
keeps each attack within the round's time by a plan made before round 1
(`fedsim.auditor.cost_plan`), and, given proxy data, scores the attacks on clients it
simulates like the declared ones each audited round (`fedsim.auditor.proxy`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from defenses.reconstruction import ReconstructionBound
from fedsim.auditor.aggregate import aggregate_case
from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.bound_check import check_round
from fedsim.auditor.console import AuditSummary, show_on_console
from fedsim.auditor.cost_plan import CostPlan
from fedsim.auditor.deployment import ProtocolWatch, deployment_setup, plan_deployment
from fedsim.auditor.flower_dp import FlowerPrivacy, LocalDp, train_config
from fedsim.auditor.jobs import AttackResult, ClientCase, RoundJob
from fedsim.auditor.proxy import ProxyAudit
from fedsim.auditor.ray_tasks import AuditAbandoned, RayAttacks
from fedsim.auditor.replies import Rejection, ReplyIntake, reply_state
from fedsim.auditor.round_output import AuditOutput, RoundCallback
from fedsim.auditor.schedule import audited_clients, audited_round
from fedsim.auditor.setup import AuditSetup
from fedsim.auditor.worker import AuditWorker
from fedsim.device import resolve_device
from fedsim.records import RECONSTRUCTIONS_DIR, RunRecorder
from fedsim.scenario.audit import AttackConfig
from fedsim.scenario.build import Federation
from fedsim.strategies.passthrough import PassThroughStrategy

logger = logging.getLogger(__name__)


class LeakageAuditor(PassThroughStrategy):
    """Wraps `inner`; attacks the updates its schedule selects and records the leakage.

    `setup` is a fedsim `Federation` (ground truth from the scenario) or an
    `AuditSetup`; `LeakageAuditor.for_model` builds one for any Flower app.
    """

    def __init__(
        self,
        inner: Strategy,
        setup: Federation | AuditSetup,
        *,
        recorder: RunRecorder | None = None,
        on_round_audited: RoundCallback | None = None,
        ground_truth: bool = True,
        device: torch.device | None = None,
        attacks: Sequence[tuple[AttackConfig, Any]] | None = None,
    ) -> None:
        if isinstance(setup, Federation):
            setup = AuditSetup.from_federation(setup)
        super().__init__(inner)
        self.setup = setup
        self.ground_truth = ground_truth and setup.ground_truth is not None
        self.runner = AttackRunner(setup, device or resolve_device(setup.device), attacks)
        self.worker = AuditWorker(
            threaded=setup.audit.worker != "inline", max_pending=setup.audit.pending
        )
        self.remote: RayAttacks | None = None
        if setup.audit.worker == "ray" and self.runner.attacks:
            cpus, gpus = setup.audit.task_resources(setup.clients_hold_cpus)
            self.remote = RayAttacks(self.runner, cpus, gpus)
        self._start: dict[int, dict[str, torch.Tensor]] = {}
        self._sent_to: dict[int, list[int]] = {}
        self.intake = ReplyIntake(setup.num_clients, by_node=not self.ground_truth)
        self._parameter_names = [name for name, _ in setup.build_model().named_parameters()]
        self.output = AuditOutput(setup, recorder, on_round_audited, ground_truth=self.ground_truth)
        self.watch = None if self.ground_truth else ProtocolWatch(setup)
        """Deployment mode: each audited reply against the declared protocol."""
        self.protocol_check = None if self.watch is None else self.watch.check
        self.reconstruction_bound: Callable[[int], ReconstructionBound | None] | None = None
        """Round → the reconstruction bound of the run's informed DP claim, where it has one:
        scored rounds are checked against it (`fedsim.auditor.bound_check`)."""
        self.privacy: FlowerPrivacy | None = None
        """Flower's DP tool in use, where `for_model` recognised one (`fedsim.auditor.flower_dp`)."""
        self._round_config: dict[int, dict[str, Any]] = {}
        self.plan: CostPlan | None = None
        """What each attack does a round (`fedsim.auditor.cost_plan`), where `for_model` made one."""
        self.proxy: ProxyAudit | None = None
        """The proxy audit (`fedsim.auditor.proxy`), where `for_model` got `proxy_data`."""

    @classmethod
    def for_model(
        cls,
        inner: Strategy,
        model_fn: Callable[[], torch.nn.Module],
        *,
        out_dir: str | Path | None = None,
        on_round_audited: RoundCallback | None = None,
        delta: float = 1e-5,
        proxy_data: Any = None,
        **setup: Any,
    ) -> LeakageAuditor:
        """The auditor for a Flower app that does not otherwise use fedsim (deployment mode).

        `setup` are the keywords of `AuditSetup.for_model`: required `input_shape`,
        `num_classes`, `batch_size`, `domain`, `protocol`, `lr` (and `local_steps` under
        FedAvg); optional `optimizer`, `lr_schedule`, `shuffle`, `drop_last` (how the
        clients train), `attacks`, `defense` (a fedsim defense spec, or the clients'
        Flower `LocalDpMod`), `audit`, ... Flower's DP wrappers around `inner` are
        recognised by themselves (`fedsim.auditor.flower_dp`); `delta` is the δ of their ε
        where they carry no accountant. An argument given where it would do nothing
        (`local_steps` under FedSGD, `audit.pending` with the inline worker, …) is refused
        (`fedsim.auditor.arguments`). Before it returns, the model
        and every attack are tried once on a random batch of that shape and domain
        (`fedsim.auditor.preflight`), so a mistake raises ConfigError before any round.
        Then each attack is timed on that probe and planned against `audit.budget.seconds`
        (`fedsim.auditor.cost_plan`; logged, and written to `out_dir/audit_plan.json`).
        `proxy_data` (a torch Dataset, arrays (inputs, labels) or a fedsim data set name,
        `fedsim.auditor.proxy_data`): data of the clients' kind the server holds; each
        audited round the auditor then simulates clients like the declared ones on it and
        scores what the attacks recover from them (`fedsim.auditor.proxy`).
        Records and reconstructions (PNG and tensors) go to `out_dir`; call `close()`
        after the run: it waits for the last attacks and returns the summary it logs.
        """
        show_on_console()
        audit_setup, privacy = deployment_setup(
            inner, model_fn, setup, out_dir=out_dir, delta=delta
        )
        recorder = RunRecorder(out_dir) if out_dir is not None else None
        auditor = cls(inner, audit_setup, recorder=recorder, on_round_audited=on_round_audited)
        auditor.privacy = privacy
        auditor.plan, auditor.proxy = plan_deployment(
            audit_setup, auditor.runner, privacy, proxy_data, setup.get("mechanism"), recorder
        )
        return auditor

    # ------------------------------------------------------------------ pass-through hooks

    def summary(self) -> None:
        logger.info("LeakageAuditor around %s", type(self.inner).__name__)
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = self.inner.configure_train(server_round, arrays, config, grid)
        # Only what this round needs: a round's state is dropped in its aggregate_train.
        self._start.clear()
        self._sent_to.clear()
        if audited_round(self.setup.audit, server_round) and self.runner.attacks:
            messages = list(messages)
            self._sent_to[server_round] = [int(m.metadata.dst_node_id) for m in messages]
            self._start[server_round] = {
                k: v.clone() for k, v in arrays.to_torch_state_dict().items()
            }
            self._round_config = {server_round: train_config(messages)}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        start = self._start.pop(server_round, None)
        sent_to = self._sent_to.pop(server_round, [])
        self.intake.learn_nodes(replies)
        if isinstance(self.privacy, LocalDp):  # a client's ε composes over its rounds
            self.intake.count_participation(replies)
        if start is not None:
            try:
                if self.setup.secure_aggregation:
                    self._record_impossible(server_round)
                else:
                    self._submit(server_round, start, replies, sent_to)
            except Exception:  # noqa: BLE001 - the audit never fails the round
                logger.exception("round %d: preparing the audit failed", server_round)
                self.worker.submit(lambda: self.output.publish(server_round, []))
        return self.inner.aggregate_train(server_round, replies)

    # ------------------------------------------------------------------------- the audit

    def _rejected_records(
        self, server_round: int, rejections: list[Rejection]
    ) -> list[dict[str, Any]]:
        """One `rejected` record per attack for each reply the audit cannot use."""
        return [
            self.runner.unscored_record(
                server_round, client, config, status="rejected", message=reason, node=node
            )
            for client, node, reason in rejections
            for config, _ in self.runner.attacks
        ]

    def _submit(
        self,
        server_round: int,
        start: dict[str, torch.Tensor],
        replies: list[Message],
        sent_to: list[int],
    ) -> None:
        weight_key = getattr(self.inner, "weighted_by_key", None)
        usable, rejections = self.intake.sort(start, replies, sent_to, weight_key)
        rejected = self._rejected_records(server_round, rejections)
        chosen = audited_clients(self.setup.audit, list(usable), self.setup.audit_rng(server_round))
        job = RoundJob(server_round, start, rejected=rejected)
        if self.plan is not None:
            job.budgets, job.skipped = self.plan.real_budgets(self.setup), self.plan.real_skipped()
        if self.privacy is not None:
            config = self._round_config.pop(server_round, None)
            job.mechanism = self.privacy.mechanism(config, self.setup.protocol)
            job.fields = self.privacy.round_fields(server_round, config)
            for record in rejected:
                record.update(job.fields)
        for client in chosen:
            message = usable[client]
            sent = reply_state(message)
            node = int(message.metadata.src_node_id)
            update = self.setup.recover_update(start, sent, self._parameter_names)
            if self.watch is not None:
                key = getattr(self.inner, "weighted_by_key", None) or "num-examples"
                by_proxy = self.proxy is not None and self.proxy.checks_protocol
                self.watch.reply(
                    server_round, client, message, start, update, weight_key=key, by_proxy=by_proxy
                )
            # Node ids are random per run: in simulation they would make records unrepeatable.
            case = ClientCase(client, update, node=None if self.ground_truth else node)
            if self.privacy is not None:
                case.fields = self.privacy.client_fields(self.intake.taken_part[client])
            if self.ground_truth:
                assert self.setup.ground_truth is not None
                case.originals, case.true_labels = self.setup.ground_truth(client, server_round)
                if self.setup.trained_batch is not None:
                    case.trained_on = self.setup.trained_batch(client, server_round)[0]
            job.cases.append(case)
        self._dispatch(job)

    def record_secure_round(self, server_round: int) -> None:
        """SecAgg+ round: if the schedule audits it, one `impossible` record per attack.

        Called when the round is configured, so the records do not depend on which
        clients reply; the aggregate is not attacked (see `fedsim.flower.apps.secagg`).
        """
        if audited_round(self.setup.audit, server_round) and self.runner.attacks:
            self._record_impossible(server_round)

    def attack_aggregate(
        self,
        server_round: int,
        start: dict[str, torch.Tensor],
        aggregate: dict[str, torch.Tensor],
        clients: Sequence[int],
    ) -> None:
        """SecAgg+ round: attack the aggregate the server saw as one update computed from
        every client's batch together (`fedsim.auditor.aggregate`); simulation only."""
        if not (audited_round(self.setup.audit, server_round) and self.runner.attacks):
            return
        if not self.ground_truth or not clients:
            return
        try:
            case = aggregate_case(self.setup, server_round, start, aggregate, clients)
        except Exception:  # noqa: BLE001 - the audit never fails the round
            logger.exception("round %d: preparing the aggregate's audit failed", server_round)
            return
        job = RoundJob(server_round, start, cases=[case])
        self._dispatch(job)

    def _dispatch(self, job: RoundJob) -> None:
        """Hand `job` to the worker thread, or to Ray with the worker thread awaiting it."""
        if self.remote is None:
            self.worker.submit(lambda: self._run(job, lambda: self.runner.run(job)))
            return
        self.worker.wait_for_room()  # no more rounds in flight on the cluster than `pending`
        results = self.remote.submit(job)
        self.worker.submit(lambda: self._run(job, results))

    def _record_impossible(self, server_round: int) -> None:
        """Under secure aggregation: one record per attack, no attack on the sum."""
        hidden = (
            "per-client updates are hidden under secure aggregation; the server sees only the sum"
        )
        records = [
            self.runner.unscored_record(
                server_round, None, config, status="impossible", message=hidden
            )
            for config, _ in self.runner.attacks
        ]
        self.worker.submit(lambda: self.output.publish(server_round, records))

    def _run(
        self, job: RoundJob, attack: Callable[[], list[tuple[ClientCase, AttackResult]]]
    ) -> None:
        started = time.perf_counter()
        try:
            outcomes = attack()
        except AuditAbandoned as error:
            logger.warning("%s: audit abandoned; `fedsim run --resume` redoes it", error)
            return
        except Exception:  # noqa: BLE001 - record what is known; the round goes on
            logger.exception("round %d: the audit failed", job.server_round)
            outcomes = []
        if self.proxy is not None:
            recorder = self.output.recorder
            folder = None if recorder is None else recorder.run_dir / RECONSTRUCTIONS_DIR
            outcomes += self.proxy.audit(job, self.protocol_check, folder)
        records = job.rejected + [outcome.record for _, outcome in outcomes]
        if self.reconstruction_bound is not None:
            bound = self.reconstruction_bound(job.server_round)
            check_round(job.server_round, records, bound, self.setup.batch_size)
        seconds = time.perf_counter() - started
        self.output.publish(job.server_round, records, seconds, job, outcomes)

    def close(self) -> AuditSummary:
        """Wait for every pending attack, then log and return the summary of the audit;
        call once the last round is done."""
        self.worker.close()
        self._start.clear()
        self._sent_to.clear()
        return self.output.log.close()
