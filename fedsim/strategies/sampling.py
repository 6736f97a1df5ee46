"""`SeededSampling`: each round's clients chosen by partition id with a generator seeded by round.

Flower's strategies sample node ids with Python's `random`, and node ids are random,
so with `clients_per_round < clients` two runs of one scenario train (and audit)
different clients. This wrapper asks every node once which partition it holds (a
QUERY message the fedsim ClientApp answers), draws the round's partitions from a
generator seeded by (scenario seed, round), and hands the inner strategy a view of
the grid holding only those nodes, so the inner strategy's own sampling takes them all.
Everything else passes through unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.message_keys import reply_partition
from fedsim.scenario.build import derived_seed
from fedsim.strategies.passthrough import PassThroughGrid, PassThroughStrategy

_SAMPLING_TAG = 0x5A3B


def sampled_partitions(seed: int, server_round: int, partitions: list[int], size: int) -> list[int]:
    """The `size` partitions of `server_round`, sorted; depends only on seed, round and the set."""
    ordered = sorted(partitions)
    rng = np.random.default_rng(derived_seed(seed, _SAMPLING_TAG, server_round))
    return sorted(ordered[i] for i in rng.choice(len(ordered), size=size, replace=False))


def learn_partitions(grid: Grid, clients: int, node_of: dict[int, int], timeout: float) -> None:
    """Wait for `clients` nodes, then ask the nodes not yet in `node_of` (partition → node)
    which partition they hold; `node_of` is updated in place."""
    while len(nodes := list(grid.get_node_ids())) < clients:
        log(INFO, "Waiting for nodes: %d of %d connected.", len(nodes), clients)
        time.sleep(1)
    known = set(node_of.values())
    unknown = [n for n in nodes if n not in known]
    if not unknown:
        return
    queries = [
        Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY) for node in unknown
    ]
    for reply in grid.send_and_receive(queries, timeout=timeout):
        partition = None if reply.has_error() else reply_partition(reply)
        if partition is not None:
            node_of[partition] = int(reply.metadata.src_node_id)


class NodeSubset(PassThroughGrid):
    """A view of `grid` whose `get_node_ids` lists only `node_ids`; all else is `grid`'s."""

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        super().__init__(grid)
        self.node_ids = list(node_ids)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)


class SeededSampling(PassThroughStrategy):
    """Passes everything to `inner`; train rounds see only the seeded sample of partitions."""

    def __init__(
        self, inner: Strategy, clients: int, per_round: int, seed: int, query_timeout: float = 120
    ) -> None:
        super().__init__(inner)
        self.clients = clients
        self.per_round = per_round
        self.seed = seed
        self.query_timeout = query_timeout
        self.node_of: dict[int, int] = {}
        """partition id → node id, learnt once from the nodes' answers."""

    def _learn_partitions(self, grid: Grid) -> None:
        learn_partitions(grid, self.clients, self.node_of, self.query_timeout)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._learn_partitions(grid)
        size = min(self.per_round, len(self.node_of))
        chosen = sampled_partitions(self.seed, server_round, list(self.node_of), size)
        subset = NodeSubset(grid, [self.node_of[p] for p in chosen])
        return self.inner.configure_train(server_round, arrays, config, subset)
