"""`PartitionOrder`: hands replies to the inner strategy sorted by partition id.

Replies arrive in completion order, which varies from run to run; a float32 sum in
another order differs in the last bits, and the next round starts from other weights.
Sorting by the partition id each fedsim client reports makes a simulated run
repeatable. It also tells, for each round, which partitions replied (and, under Ray,
on which node each ran), how many replies were errors, how many never came (timeouts)
and the inner strategy's train metrics (`RoundReplies`) to whoever builds it with
`on_round`; it keeps none of that itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.message_keys import reply_partition, reply_ray_node
from fedsim.strategies.passthrough import PassThroughStrategy


@dataclass(frozen=True)
class RoundReplies:
    """What one round's train replies were, as `PartitionOrder` saw them."""

    clients: list[int] = field(default_factory=list)
    """The partitions that replied, in partition order."""
    failures: int = 0
    """Error replies."""
    missing: int = 0
    """Messages sent that got no reply (timeouts)."""
    ray_nodes: list[str | None] | None = None
    """The Ray node of each client in `clients`; None for rounds run outside Ray."""
    metrics: MetricRecord | None = None
    """The inner strategy's aggregated train metrics."""


def _key(message: Message) -> tuple[int, int]:
    if message.has_error():
        return (2, 0)
    partition = reply_partition(message)
    return (1, 0) if partition is None else (0, partition)


class PartitionOrder(PassThroughStrategy):
    """Passes everything to `inner`, with train and evaluate replies sorted by partition id."""

    def __init__(
        self, inner: Strategy, on_round: Callable[[int, RoundReplies], None] | None = None
    ) -> None:
        super().__init__(inner)
        self.on_round = on_round
        """Told each round's `RoundReplies` once the inner strategy has aggregated them."""
        self._sent: dict[int, int] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._sent = {server_round: len(messages)}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = sorted(replies, key=_key)
        sent = self._sent.pop(server_round, len(ordered))
        answered = [m for m in ordered if not m.has_error() and reply_partition(m) is not None]
        nodes = [reply_ray_node(m) for m in answered]
        arrays, metrics = self.inner.aggregate_train(server_round, ordered)
        if self.on_round is not None:
            replies = RoundReplies(
                clients=[reply_partition(m) for m in answered],
                failures=sum(m.has_error() for m in ordered),
                missing=max(0, sent - len(ordered)),
                ray_nodes=nodes if any(node is not None for node in nodes) else None,
                metrics=metrics,
            )
            self.on_round(server_round, replies)
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, sorted(replies, key=_key))
