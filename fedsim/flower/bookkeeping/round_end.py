"""What ends every round, whichever workflow ran it: central evaluation, the round's
rounds.jsonl line, the checkpoint and the progress journal, and the observer's call.

The strategy wrappers tell `RoundNotes` what each round's replies were, as they see them;
the round's line takes its notes from there, not from the wrappers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord

from fedsim.records import RunRecorder
from fedsim.scenario.build import Federation
from fedsim.scenario.config import Scenario
from fedsim.strategies.ordering import RoundReplies


class RunObserver(Protocol):
    """Told when a round's evaluation and a round's audit are done (progress display)."""

    def round_finished(self, record: dict[str, Any]) -> None: ...

    def round_audited(self, server_round: int, records: list[dict[str, Any]]) -> None: ...


class RoundNotes:
    """Each round's replies and rejections as the wrappers report them, until its line is written.

    `PartitionOrder(on_round=notes.replied)` and `ReplyFilter(on_rejected=notes.rejected)`
    report; `pop` hands the round's notes to `RoundEnd.close` and forgets them.
    """

    def __init__(self) -> None:
        self._replies: dict[int, RoundReplies] = {}
        self._rejected: dict[int, list[str]] = {}

    def replied(self, server_round: int, replies: RoundReplies) -> None:
        self._replies[server_round] = replies

    def rejected(self, server_round: int, reasons: list[str]) -> None:
        self._rejected.setdefault(server_round, []).extend(reasons)

    def pop(self, server_round: int) -> dict[str, Any]:
        """The round's clients, failures, missing, rejected and train_loss entries (and its
        Ray nodes, under Ray); a round nobody reported on has none of either."""
        replies = self._replies.pop(server_round, RoundReplies())
        rejected = self._rejected.pop(server_round, [])
        metrics = replies.metrics
        notes: dict[str, Any] = {
            "clients": replies.clients,
            "failures": replies.failures,
            "missing": replies.missing,
            "rejected": len(rejected),
            "train_loss": None if metrics is None else metrics.get("train-loss"),
        }
        if replies.ray_nodes is not None:
            notes["ray_nodes"] = replies.ray_nodes
        return notes


def evaluate_model(
    federation: Federation, arrays: ArrayRecord, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the global model on the held-out split."""
    model = federation.build_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    model.to(device).eval()
    data = federation.eval_set()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), 500):
            x = data.images[start : start + 500].to(device)
            y = data.labels[start : start + 500].to(device)
            logits = model(x)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    return total_loss / len(data), correct / len(data)


def audited_round_of(scenario: Scenario) -> Callable[[int], bool]:
    """Which rounds' audits a complete run has recorded (the resume point waits for them)."""
    first = scenario.first_round
    return lambda r: r >= first and bool(scenario.attacks) and scenario.audit.rounds.selects(r)


class RoundEnd:
    """Closes rounds: evaluates the global model and writes, fsyncs and journals the round."""

    def __init__(
        self,
        federation: Federation,
        recorder: RunRecorder | None,
        observer: RunObserver | None,
        device: torch.device,
        *,
        noise_from_seed: bool = True,
    ) -> None:
        self.federation = federation
        self.noise_from_seed = noise_from_seed
        """The clients derive their defense noise from the scenario seed (simulation): then
        no privacy claim holds against whoever holds the seed, and the records say so."""
        self.recorder = recorder
        self.observer = observer
        self.device = device
        self.audited = audited_round_of(federation.scenario)
        self.started = time.perf_counter()

    def close(
        self,
        server_round: int,
        arrays: ArrayRecord,
        notes: dict[str, Any],
        strategy_state: dict[str, torch.Tensor] | None = None,
    ) -> tuple[float, float]:
        """Loss and accuracy of `arrays`; `notes` are the round's clients, failures,
        missing, rejected and train_loss entries; `strategy_state` is checkpointed with
        the model (a strategy that keeps state between rounds)."""
        loss, accuracy = evaluate_model(self.federation, arrays, self.device)
        record = {
            "round": server_round,
            "loss": loss,
            "accuracy": accuracy,
            **notes,
            "audited": self.audited(server_round),
            "seconds": time.perf_counter() - self.started,
        }
        # From a checkpoint, what the rounds before it spent is unknown: no ε is recorded.
        started_from_checkpoint = self.federation.scenario.model.checkpoint is not None
        claims = (
            None
            if started_from_checkpoint
            else self.federation.privacy_spent(server_round, noise_from_seed=self.noise_from_seed)
        )
        if claims is not None:
            # One (ε, δ) per threat model, each saying whether it holds in this run.
            record["privacy"] = [claim.to_json() for claim in claims]
        if self.recorder is not None:
            checkpoints = self.recorder.checkpoints
            if server_round >= 1:
                checkpoints.save(server_round, arrays.to_torch_state_dict(), strategy_state)
            self.recorder.append_round(record)
            self.recorder.sync()
            checkpoints.mark("trained", server_round)
            self._prune()
        if self.observer is not None:
            self.observer.round_finished(record)
        return loss, accuracy

    def finish(self) -> None:
        """After the last round (or an interruption): drop checkpoints no resume needs."""
        if self.recorder is not None:
            self._prune()

    def _prune(self) -> None:
        """Keep the resume point and the rounds on `federation.keep_checkpoints`."""
        assert self.recorder is not None
        checkpoints = self.recorder.checkpoints
        schedule = self.federation.scenario.federation.keep_checkpoints
        checkpoints.prune(
            keep_from=checkpoints.complete_through(self.audited),
            kept=(lambda _: False) if schedule is None else schedule.selects,
        )
