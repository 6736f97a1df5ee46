"""`PartitionOrder`: hands replies to the inner strategy sorted by partition id.

Replies arrive in completion order, which varies from run to run; a float32 sum in
another order differs in the last bits, and the next round starts from other weights.
Sorting by the partition id each fedsim client reports makes a simulated run
repeatable. It also notes, per round, which partitions replied (and, under Ray, on
which node each ran), how many replies were errors and how many never came
(timeouts), for the records; fedsim pops each round's notes once its rounds.jsonl
line is written.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.message_keys import reply_partition, reply_ray_node
from fedsim.strategies.passthrough import PassThroughStrategy


def _key(message: Message) -> tuple[int, int]:
    if message.has_error():
        return (2, 0)
    partition = reply_partition(message)
    return (1, 0) if partition is None else (0, partition)


class PartitionOrder(PassThroughStrategy):
    """Passes everything to `inner`, with train and evaluate replies sorted by partition id."""

    def __init__(self, inner: Strategy) -> None:
        super().__init__(inner)
        self.clients: dict[int, list[int]] = {}
        self.failures: dict[int, int] = {}
        self.missing: dict[int, int] = {}
        self.train_metrics: dict[int, MetricRecord | None] = {}
        self.ray_nodes: dict[int, list[str | None]] = {}
        """Round → the Ray node of each client in `clients` (rounds run outside Ray absent)."""
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
        self.missing[server_round] = max(0, sent - len(ordered))
        answered = [m for m in ordered if not m.has_error() and reply_partition(m) is not None]
        self.clients[server_round] = [reply_partition(m) for m in answered]
        nodes = [reply_ray_node(m) for m in answered]
        if any(node is not None for node in nodes):
            self.ray_nodes[server_round] = nodes
        self.failures[server_round] = sum(m.has_error() for m in ordered)
        arrays, metrics = self.inner.aggregate_train(server_round, ordered)
        self.train_metrics[server_round] = metrics
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, sorted(replies, key=_key))
