"""`RoundOffset`: lets Flower's round loop, which always counts from 1, continue a run.

`Strategy.start` numbers rounds 1..num_rounds. Resuming after round R, or starting
from a checkpoint of round R (`model.checkpoint_round`), fedsim starts the loop with
`num_rounds - R` rounds around this wrapper, which adds R to every round number it
passes on, so sampling, batches, defenses and audits — all seeded by round — are
those of the uninterrupted run. `starting_point` says which R and which global model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.records import RunRecorder
from fedsim.scenario.build import Federation
from fedsim.strategies.passthrough import PassThroughStrategy


def starting_point(
    federation: Federation, recorder: RunRecorder | None, resume_after: int
) -> tuple[int, dict[str, torch.Tensor]]:
    """(R, state): the rounds behind the loop's start and the global model after them.

    A resumed run (`resume_after` = R ≥ 1) goes on from its own checkpoint of round R.
    Otherwise the run starts after `model.checkpoint_round`, from `model.checkpoint`
    (checked against the model) or the seeded initialisation.
    """
    if resume_after >= 1 and recorder is not None:
        return resume_after, recorder.checkpoints.load(resume_after)
    offset = max(resume_after, federation.scenario.model.checkpoint_round, 0)
    return offset, federation.initial_state()


class RoundOffset(PassThroughStrategy):
    """Passes everything to `inner` with `offset` added to the round number."""

    def __init__(self, inner: Strategy, offset: int) -> None:
        super().__init__(inner)
        self.offset = offset

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_train(server_round + self.offset, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round + self.offset, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round + self.offset, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round + self.offset, replies)
