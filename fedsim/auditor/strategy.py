"""`LeakageAuditor`: an honest-but-curious wrapper around any Flower strategy.

It passes every call through to the inner strategy unchanged (same messages, same
replies, so the aggregate is identical bit for bit). On the way it keeps the arrays
sent in `configure_train` (the parameters the clients start from) and, in
`aggregate_train`, where individual replies are visible, it selects the replies on
the audit schedule, recovers each client's update and hands them to the attacks —
in a worker thread by default, so the next round need not wait. Ground truth comes
from the scenario (same partition, same seeded sampler); nothing extra travels from
the clients except their partition id in a ConfigRecord.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.auditor.engine import AttackResult, AuditEngine, ClientCase, RoundJob
from fedsim.auditor.schedule import audited_clients, audited_round
from fedsim.auditor.worker import AuditWorker
from fedsim.device import resolve_device
from fedsim.flower.local_update import recover_update
from fedsim.flower.protocol import reply_partition
from fedsim.records import RunRecorder
from fedsim.scenario.build import Federation
from fedsim.scenario.config import AttackConfig

logger = logging.getLogger(__name__)

RoundCallback = Callable[[int, list[dict[str, Any]]], None]


def reply_state(message: Message) -> dict[str, torch.Tensor]:
    """A private copy of the (only) ArrayRecord of a reply, as a torch state dict."""
    arrays = next(iter(message.content.array_records.values()))
    return {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}


class LeakageAuditor(Strategy):
    """Wraps `inner`; attacks the updates its schedule selects and records the leakage."""

    def __init__(
        self,
        inner: Strategy,
        federation: Federation,
        *,
        recorder: RunRecorder | None = None,
        on_round_audited: RoundCallback | None = None,
        ground_truth: bool = True,
        device: torch.device | None = None,
        attacks: Sequence[tuple[AttackConfig, Any]] | None = None,
    ) -> None:
        self.inner = inner
        self.federation = federation
        self.scenario = federation.scenario
        self.recorder = recorder
        self.on_round_audited = on_round_audited
        self.ground_truth = ground_truth
        self.engine = AuditEngine(
            federation, device or resolve_device(self.scenario.device), attacks
        )
        self.worker = AuditWorker(threaded=self.scenario.audit.worker == "thread")
        self._start: dict[int, dict[str, torch.Tensor]] = {}
        self._parameter_names = [name for name, _ in federation.build_model().named_parameters()]

    # ------------------------------------------------------------------ pass-through hooks

    def summary(self) -> None:
        logger.info("LeakageAuditor around %s", type(self.inner).__name__)
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = self.inner.configure_train(server_round, arrays, config, grid)
        if audited_round(self.scenario.audit, server_round) and self.engine.attacks:
            self._start[server_round] = {
                k: v.clone() for k, v in arrays.to_torch_state_dict().items()
            }
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        start = self._start.pop(server_round, None)
        if start is not None:
            try:
                self._submit(server_round, start, replies)
            except Exception:  # noqa: BLE001 - the audit never fails the round
                logger.exception("round %d: preparing the audit failed", server_round)
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    # ------------------------------------------------------------------------- the audit

    def _submit(
        self, server_round: int, start: dict[str, torch.Tensor], replies: list[Message]
    ) -> None:
        by_client: dict[int, Message] = {}
        for message in replies:
            if message.has_error():
                continue
            client = reply_partition(message)
            if client is not None and message.content.array_records:
                by_client[client] = message
        chosen = audited_clients(
            self.scenario.audit, list(by_client), self.federation.audit_rng(server_round)
        )
        job = RoundJob(server_round, start)
        for client in chosen:
            update = recover_update(
                self.federation, start, reply_state(by_client[client]), self._parameter_names
            )
            case = ClientCase(client, update)
            if self.ground_truth:
                case.originals, case.true_labels = self.federation.client_batch(
                    client, server_round
                )
            job.cases.append(case)
        self.worker.submit(lambda: self._run(job))

    def _run(self, job: RoundJob) -> None:
        outcomes = self.engine.run(job)
        records = [outcome.record for _, outcome in outcomes]
        if self.recorder is not None:
            for record in records:
                self.recorder.append_leakage(record)
            if self.scenario.audit.grids:
                self._save_grids(job, outcomes)
        if self.on_round_audited is not None:
            self.on_round_audited(job.server_round, records)

    def _save_grids(self, job: RoundJob, outcomes: list[tuple[ClientCase, AttackResult]]) -> None:
        assert self.recorder is not None
        for case in job.cases:
            if case.originals is None:
                continue
            rows = [
                (outcome.record["attack"], outcome.inputs)
                for c, outcome in outcomes
                if c is case and outcome.inputs is not None
            ]
            if rows:
                try:
                    self.recorder.save_grid(job.server_round, case.client, case.originals, rows)
                except Exception:  # noqa: BLE001
                    logger.exception(
                        "round %d: saving the grid of client %d failed",
                        job.server_round,
                        case.client,
                    )

    def close(self) -> None:
        """Wait for every pending attack; call once the last round is done."""
        self.worker.close()
