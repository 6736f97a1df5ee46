"""`ReplyFilter`: drops train replies that cannot be aggregated before the inner strategy sees them.

Flower's FedAvg drops replies that carry an error (and aggregates the rest), but it
averages whatever arrays the others hold: one reply with a NaN or an infinity turns
the global model into NaN for good, without a warning, and a reply with arrays of
the wrong shape either stops the run (numpy cannot broadcast) or is silently
broadcast into the mean. This wrapper applies `reply_problem` to every reply with
content and passes on only the usable ones, so the inner strategy's own failure
policy (`min_train_nodes`, dropping error replies) decides the rest. Dropped replies
are logged, and each round's reasons go to `on_rejected` (fedsim writes their count to
rounds.jsonl). Error replies pass through unchanged: the inner strategy counts them.

The aggregate goes back to the dtypes the server sent: FedAvg averages every array
in floating point, so an integer buffer (batch norm's `num_batches_tracked`) would
come back as float64, and every reply of the next round, holding it as int64, would
then be refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.strategies.passthrough import PassThroughStrategy
from fedsim.strategies.reply_check import ArraySpec, array_specs, reply_problem

logger = logging.getLogger(__name__)


class ReplyFilter(PassThroughStrategy):
    """Passes everything to `inner`, minus train replies whose arrays are unusable."""

    def __init__(
        self, inner: Strategy, on_rejected: Callable[[int, list[str]], None] | None = None
    ) -> None:
        super().__init__(inner)
        self.weighted_by_key: str | None = getattr(inner, "weighted_by_key", None)
        """The inner strategy's weight metric (checked too); the auditor reads it here."""
        self.on_rejected = on_rejected
        """Told the round and the reasons of the replies dropped in it (rounds with drops)."""
        self._expected: dict[int, dict[str, ArraySpec]] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._expected = {server_round: array_specs(arrays)}
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        expected = self._expected.pop(server_round, None)
        kept: list[Message] = []
        rejected: list[str] = []
        for message in replies:
            problem = (
                None
                if expected is None or message.has_error()
                else reply_problem(message, expected, self.weighted_by_key)
            )
            if problem is None:
                kept.append(message)
                continue
            logger.warning(
                "round %d: reply of node %s dropped: %s",
                server_round,
                message.metadata.src_node_id,
                problem,
            )
            rejected.append(problem)
        if rejected and self.on_rejected is not None:
            self.on_rejected(server_round, rejected)
        arrays, metrics = self.inner.aggregate_train(server_round, kept)
        if arrays is not None and expected is not None:
            arrays = as_sent(arrays, expected)
        return arrays, metrics


def as_sent(arrays: ArrayRecord, expected: dict[str, ArraySpec]) -> ArrayRecord:
    """`arrays` with each array in the dtype the server sent (integers rounded)."""
    state = {}
    for key, tensor in arrays.to_torch_state_dict().items():
        spec = expected.get(key)
        dtype = _torch_dtype(spec.dtype) if spec is not None else None
        if dtype is not None and dtype != tensor.dtype:
            tensor = (tensor if dtype.is_floating_point else tensor.round()).to(dtype)
        state[key] = tensor
    return ArrayRecord(torch_state_dict=state)


def _torch_dtype(name: str) -> torch.dtype | None:
    dtype = getattr(torch, name, None)
    return dtype if isinstance(dtype, torch.dtype) else None
