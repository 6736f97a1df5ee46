"""`RoundOffset`: lets Flower's round loop, which always counts from 1, continue a resumed run.

`Strategy.start` numbers rounds 1..num_rounds. Resuming after round R, fedsim starts
the loop with `num_rounds - R` rounds around this wrapper, which adds R to every
round number it passes on, so sampling, batches, defenses and audits — all seeded
by round — are those of the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.flower.wrapping import PassThroughStrategy


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
