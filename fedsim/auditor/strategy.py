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
(`LeakageAuditor.for_model`, deployment mode) there is no ground truth: it records
the attack objectives and stores the reconstructions (tensors and PNGs). Under
secure aggregation it attacks nothing and records that per-client attacks are
impossible: in `aggregate_train` when a setup declares it (a Flower app that hides
updates by other means), or through `record_secure_round` on fedsim's SecAgg+ path
(`fedsim.flower.apps.secagg`), where no individual reply ever reaches the server and
only that method and `close` are called.

In an audited round, a reply it cannot use — an error reply, no reply before the
round's timeout, arrays of the wrong keys or shapes, NaN or infinite values, a bad
weight, a partition id claimed twice — is recorded with status `rejected` and the
reason (one line per attack), and no attack runs on it. A reply in another dtype than
was sent is used (FedAdam's float64 aggregate goes to float32 clients). What the
aggregate does with any reply is the inner strategy's business (fedsim puts a
`ReplyFilter` in front of FedAvg so that unusable ones are dropped rather than averaged).

Records name a client by the partition id its reply carries (fedsim's clients send it;
any ClientApp can, see `fedsim.message_keys.reply_partition`) and, without one, by
its Flower node id; in deployment mode (and on `rejected` lines) every line also holds
the node id. Each audited round is logged in
one line, a round where nothing could be attacked as a warning (`fedsim.auditor.console`),
and `close()` returns and logs the run's summary. In deployment mode the auditor checks
what it can observe against the protocol it was told (`fedsim.auditor.protocol_check`),
keeps each attack within the round's time by a plan made before round 1
(`fedsim.auditor.cost_plan`), and, given proxy data, scores the attacks on clients it
simulates like the declared ones each audited round (`fedsim.auditor.proxy`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from attacks.domain import ImageDomain
from defenses.reconstruction import ReconstructionBound
from fedsim.auditor.aggregate import aggregate_case
from fedsim.auditor.arguments import refuse_ignored_arguments
from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.bound_check import check_round
from fedsim.auditor.console import AuditLog, AuditSummary, show_on_console
from fedsim.auditor.cost_plan import CostPlan
from fedsim.auditor.flower_dp import FlowerPrivacy, LocalDp, deployment_kappa, recognise
from fedsim.auditor.jobs import AttackResult, ClientCase, RoundJob
from fedsim.auditor.preflight import preflight, simulated_update
from fedsim.auditor.protocol_check import ProtocolCheck, update_norm
from fedsim.auditor.proxy import ProxyAudit, plan_audit, proxy_refusal
from fedsim.auditor.ray_tasks import AuditAbandoned, RayAttacks
from fedsim.auditor.schedule import audited_clients, audited_round
from fedsim.auditor.setup import AuditSetup
from fedsim.auditor.worker import AuditWorker
from fedsim.device import resolve_device
from fedsim.image_grid import GRID_IMAGES, ClientImages, load_figures, save_image_grid
from fedsim.judgement import read_record
from fedsim.message_keys import reply_partition
from fedsim.private_files import make_private
from fedsim.records import RECONSTRUCTIONS_DIR, RunRecorder
from fedsim.scenario.audit import AttackConfig
from fedsim.scenario.build import Federation
from fedsim.strategies.passthrough import PassThroughStrategy
from fedsim.strategies.reply_check import ArraySpec, array_specs, reply_problem

logger = logging.getLogger(__name__)

RoundCallback = Callable[[int, list[dict[str, Any]]], None]


def _recovered_flags(record: dict[str, Any]) -> list[bool] | None:
    """Per image of a scored record: recovered or not (`fedsim.judgement`; None unscored)."""
    if record.get("ssim_images") is None:
        return None
    reading = next((r for r in read_record(record) if r.domain == "images"), None)
    return None if reading is None else list(reading.recovered)


def reply_state(message: Message) -> dict[str, torch.Tensor]:
    """A private copy of the (only) ArrayRecord of a reply, as a torch state dict."""
    arrays = next(iter(message.content.array_records.values()))
    return {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}


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
        self.recorder = recorder
        self.on_round_audited = on_round_audited
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
        self._partition_of_node: dict[int, int] = {}
        self._parameter_names = [name for name, _ in setup.build_model().named_parameters()]
        if recorder is not None and self._draws_images:
            load_figures()
        where = None if recorder is None else str(recorder.run_dir / RECONSTRUCTIONS_DIR)
        self.log = AuditLog(reconstructions=where)
        self.protocol_check = (
            None
            if self.ground_truth
            else ProtocolCheck(setup.batch_size, _protocol_text(setup), setup.mechanism)
        )
        self.reconstruction_bound: Callable[[int], ReconstructionBound | None] | None = None
        """Round → the reconstruction bound of the run's informed DP claim, where it has one:
        scored rounds are checked against it (`fedsim.auditor.bound_check`)."""
        self._simulated_norm: float | None = None
        self.privacy: FlowerPrivacy | None = None
        """Flower's DP tool in use, where `for_model` recognised one (`fedsim.auditor.flower_dp`)."""
        self._round_config: dict[int, dict[str, Any]] = {}
        self._taken_part: Counter[int] = Counter()
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
        privacy = recognise(inner, setup.get("defense"), delta)
        if isinstance(privacy, LocalDp):
            setup["defense"] = None  # a Flower mod, not a fedsim defense spec
        audit_setup = AuditSetup.for_model(model_fn, **setup)
        if isinstance(privacy, LocalDp):
            kappa = deployment_kappa(audit_setup.audit.threat.kappa)
            privacy = dataclasses.replace(privacy, kappa=kappa)
        refuse_ignored_arguments(setup, audit_setup, out_dir=out_dir, delta=delta, privacy=privacy)
        if privacy is not None:
            audit_setup = dataclasses.replace(
                audit_setup,
                mechanism=privacy.mechanism(None, audit_setup.protocol),
                defense_label=privacy.label,
            )
        recorder = RunRecorder(out_dir) if out_dir is not None else None
        auditor = cls(
            inner,
            audit_setup,
            recorder=recorder,
            on_round_audited=on_round_audited,
        )
        auditor.privacy = privacy
        with torch.random.fork_rng(devices=[]):  # the app's random draws stay its own
            preflight(audit_setup, auditor.runner)
            refusal = proxy_refusal(privacy, setup.get("mechanism"))
            auditor.plan, auditor.proxy = plan_audit(
                audit_setup, auditor.runner, proxy_data, refusal
            )
        auditor.plan.log()
        if recorder is not None:
            auditor.plan.write(recorder.run_dir)
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
            self._round_config = {server_round: _train_config(messages)}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        start = self._start.pop(server_round, None)
        sent_to = self._sent_to.pop(server_round, [])
        self._learn_nodes(replies)
        self._count_participation(replies)
        if start is not None:
            try:
                if self.setup.secure_aggregation:
                    self._record_impossible(server_round)
                else:
                    self._submit(server_round, start, replies, sent_to)
            except Exception:  # noqa: BLE001 - the audit never fails the round
                logger.exception("round %d: preparing the audit failed", server_round)
                self.worker.submit(lambda: self._publish(server_round, []))
        return self.inner.aggregate_train(server_round, replies)

    # ------------------------------------------------------------------------- the audit

    def _client(self, message: Message) -> int | None:
        """Which client sent a reply: its fedsim partition id; without ground truth, else its node id.

        Raises ValueError or TypeError when the partition id is not an integer.
        """
        partition = reply_partition(message)
        if partition is None and not self.ground_truth:
            return int(message.metadata.src_node_id)
        return partition

    def _learn_nodes(self, replies: list[Message]) -> None:
        """Node id → partition id, so a node that fails later is recorded under its client."""
        for message in replies:
            if message.has_error():
                continue
            try:
                client = self._client(message)
            except (ValueError, TypeError):
                continue
            if client is not None and self._known_client(client):
                self._partition_of_node[int(message.metadata.src_node_id)] = client

    def _count_participation(self, replies: list[Message]) -> None:
        """Under LocalDpMod a client's ε composes over every round it took part in."""
        if not isinstance(self.privacy, LocalDp):
            return
        for message in replies:
            try:
                client = None if message.has_error() else self._client(message)
            except (ValueError, TypeError):
                client = None
            if client is not None:
                self._taken_part[client] += 1

    def _usable_replies(
        self,
        server_round: int,
        start: dict[str, torch.Tensor],
        replies: list[Message],
        sent_to: list[int],
    ) -> tuple[dict[int, Message], list[dict[str, Any]]]:
        """Client → reply for the usable replies, and the `rejected` records of the others."""
        expected: dict[str, ArraySpec] = array_specs(start)
        weight_key = getattr(self.inner, "weighted_by_key", None)
        usable: dict[int, Message] = {}
        rejected: list[dict[str, Any]] = []
        for message in replies:
            node = int(message.metadata.src_node_id)
            try:
                client = None if message.has_error() else self._client(message)
                unreadable = None
            except (ValueError, TypeError):
                client, unreadable = None, "the partition id is not an integer"
            if client is None and unreadable is None and not message.has_error():
                continue  # not a fedsim client: nothing to attack, nothing to reject
            problem = unreadable or reply_problem(message, expected, weight_key, dtypes=False)
            if problem is None and client in usable:
                problem = f"partition id {client} claimed by a second reply"
            if problem is None and not self._known_client(client):
                problem = f"partition id {client} is not one of the scenario's clients"
            if problem is not None:
                known = client if client is not None else self._partition_of_node.get(node)
                rejected.extend(self._rejections(server_round, known, node, problem))
                continue
            usable[client] = message
        answered = {int(m.metadata.src_node_id) for m in replies}
        for node in sent_to:
            if node not in answered:
                problem = "no reply before the round's timeout"
                client = self._partition_of_node.get(node)
                rejected.extend(self._rejections(server_round, client, node, problem))
        return usable, rejected

    def _known_client(self, client: int | None) -> bool:
        count = self.setup.num_clients
        return client is not None and (count is None or 0 <= client < count)

    def _rejections(
        self, server_round: int, client: int | None, node: int, reason: str
    ) -> list[dict[str, Any]]:
        return [
            self.runner.unscored_record(
                server_round, client, config, status="rejected", message=reason, node=node
            )
            for config, _ in self.runner.attacks
        ]

    def _submit(
        self,
        server_round: int,
        start: dict[str, torch.Tensor],
        replies: list[Message],
        sent_to: list[int],
    ) -> None:
        usable, rejected = self._usable_replies(server_round, start, replies, sent_to)
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
            self._check_protocol(server_round, client, message, start, update)
            # Node ids are random per run: in simulation they would make records unrepeatable.
            case = ClientCase(client, update, node=None if self.ground_truth else node)
            if self.privacy is not None:
                case.fields = self.privacy.client_fields(self._taken_part[client])
            if self.ground_truth:
                assert self.setup.ground_truth is not None
                case.originals, case.true_labels = self.setup.ground_truth(client, server_round)
                if self.setup.trained_batch is not None:
                    case.trained_on = self.setup.trained_batch(client, server_round)[0]
            job.cases.append(case)
        if self.remote is None:
            self.worker.submit(lambda: self._run(job, lambda: self.runner.run(job)))
            return
        self.worker.wait_for_room()  # no more rounds in flight on the cluster than `pending`
        results = self.remote.submit(job)
        self.worker.submit(lambda: self._run(job, results))

    def _check_protocol(
        self,
        server_round: int,
        client: int,
        message: Message,
        start: dict[str, torch.Tensor],
        update: list[torch.Tensor],
    ) -> None:
        """Deployment mode: compare what the reply shows with the declared protocol."""
        if self.protocol_check is None:
            return
        key = getattr(self.inner, "weighted_by_key", None) or "num-examples"
        metrics = list(message.content.metric_records.values())
        if len(metrics) == 1 and key in metrics[0]:
            self.protocol_check.weight(server_round, client, metrics[0][key], key)
        by_proxy = self.proxy is not None and self.proxy.checks_protocol  # in ProxyAudit.audit
        if not by_proxy and self._simulated_norm is None and not self.protocol_check.noisy:
            model = self.setup.build_model()
            model.load_state_dict(start)
            with torch.random.fork_rng(devices=[]):  # the app's draws stay its own
                self._simulated_norm = update_norm(simulated_update(self.setup, model))
        norm = update_norm(update)
        if self._simulated_norm is not None:
            self.protocol_check.norm(server_round, client, norm, self._simulated_norm)
        self.protocol_check.noise(server_round, client, norm, sum(u.numel() for u in update))

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
        if self.remote is None:
            self.worker.submit(lambda: self._run(job, lambda: self.runner.run(job)))
            return
        self.worker.wait_for_room()
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
        self.worker.submit(lambda: self._publish(server_round, records))

    def _publish(self, server_round: int, records: list[dict[str, Any]]) -> None:
        self.log.round(server_round, records)
        if self.recorder is not None:
            for record in records:
                self.recorder.append_leakage(record)
            self._mark_audited(server_round)
        if self.on_round_audited is not None:
            self.on_round_audited(server_round, records)

    def _mark_audited(self, server_round: int) -> None:
        """Every leakage line of the round is written: fsync, and journal it for --resume."""
        assert self.recorder is not None
        self.recorder.sync()
        self.recorder.checkpoints.mark("audited", server_round)

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
            folder = None if self.recorder is None else self.recorder.run_dir / RECONSTRUCTIONS_DIR
            outcomes += self.proxy.audit(job, self.protocol_check, folder)
        records = job.rejected + [outcome.record for _, outcome in outcomes]
        if self.reconstruction_bound is not None:
            bound = self.reconstruction_bound(job.server_round)
            check_round(job.server_round, records, bound, self.setup.batch_size)
        self.log.round(job.server_round, records, time.perf_counter() - started)
        if self.recorder is not None:
            for record in records:
                self.recorder.append_leakage(record)
            if not self.ground_truth:
                self._save_reconstructions(job, outcomes)
            elif self._draws_images:
                self._save_grids(job, outcomes)
            self._mark_audited(job.server_round)
        if self.on_round_audited is not None:
            self.on_round_audited(job.server_round, records)

    @property
    def _draws_images(self) -> bool:
        """Whether audited rounds are drawn as PNG grids (asked for, and the data are images)."""
        return self.setup.audit.grids and isinstance(self.setup.domain, ImageDomain)

    def _save_reconstructions(
        self, job: RoundJob, outcomes: list[tuple[ClientCase, AttackResult]]
    ) -> None:
        """Deployment mode: per case, a tensor file of every attack's reconstruction and,
        for images, a PNG grid of its first `GRID_IMAGES` (a few kB, whatever the batch)."""
        assert self.recorder is not None
        folder = self.recorder.run_dir / RECONSTRUCTIONS_DIR
        for case in job.cases:
            rows = [
                (o.record["attack"], o.inputs)
                for c, o in outcomes
                if c is case and o.inputs is not None
            ]
            if not rows:
                continue
            stem = f"round-{job.server_round:04d}-client-{case.client}"
            domain = self.setup.domain
            try:
                torch.save(dict(rows), folder / f"{stem}.pt")
                make_private(folder / f"{stem}.pt")
                if self.setup.audit.grids and isinstance(domain, ImageDomain):
                    pictures = [
                        (name, domain.to_unit(x[:GRID_IMAGES]).clamp(0, 1)) for name, x in rows
                    ]
                    title = f"round {job.server_round}, {case.client}"
                    save_image_grid(folder / f"{stem}.png", pictures, title, GRID_IMAGES)
                    make_private(folder / f"{stem}.png")
            except Exception:  # noqa: BLE001
                logger.exception("round %d: saving reconstructions failed", job.server_round)

    def _save_grids(self, job: RoundJob, outcomes: list[tuple[ClientCase, AttackResult]]) -> None:
        """One strip per round: each client's originals over every attack's matched images."""
        assert self.recorder is not None
        cases = []
        for case in job.cases:
            rows = [
                (o.record["attack"], o.inputs, _recovered_flags(o.record))
                for c, o in outcomes
                if c is case and o.inputs is not None
            ]
            if case.originals is not None and rows:
                cases.append(ClientImages(case.client, case.originals, rows))
        if not cases:
            return
        try:
            self.recorder.save_strip(job.server_round, cases)
        except Exception:  # noqa: BLE001
            logger.exception("round %d: saving the reconstructions' strip failed", job.server_round)

    def close(self) -> AuditSummary:
        """Wait for every pending attack, then log and return the summary of the audit;
        call once the last round is done."""
        self.worker.close()
        self._start.clear()
        self._sent_to.clear()
        return self.log.close()


def _train_config(messages: list[Message]) -> dict[str, Any]:
    """The train config the round's first message carries (Flower's client-side DP
    wrappers put the clipping norm in it)."""
    if not messages:
        return {}
    records = messages[0].content.config_records.values()
    return {k: v for record in records for k, v in record.items()}


def _protocol_text(setup: AuditSetup) -> str:
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
