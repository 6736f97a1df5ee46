"""`LocalGrid`: a Flower Grid that runs a ClientApp in this process, one node per partition.

No Ray and no SuperLink: `send_and_receive` calls the ClientApp on each message in
turn. As in Flower's runtimes, a ClientApp that raises yields an error reply, and a
reply that took longer than `timeout` is not delivered (each client is timed on its
own, as if they ran side by side). Each node gets its own copy of a message, as over a
network (SecAgg+ sends one content object to every node, and its mod edits it). It drives the same ServerApp strategy loop as the simulation engine, for tests
and for quick runs on one machine (`simulation.engine = "inprocess"`). Node ids are
drawn from a seeded generator, so, as in Flower, they do not reveal partitions.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedsim.message_keys import PARTITION_KEY

logger = logging.getLogger(__name__)

_RUN_ID = 1
_SERVER_NODE_ID = 1


def _claim_task_identity() -> None:
    """Messages created outside Flower's runtimes need a run and node identity."""
    for name, value in (("run_id", _RUN_ID), ("node_id", _SERVER_NODE_ID), ("task_id", 1)):
        try:
            getattr(TaskIdentity, name)
        except RuntimeError:
            setattr(TaskIdentity, name, value)


class LocalGrid(Grid):
    """`num_nodes` virtual nodes in this process, each with its `partition-id` in `node_config`."""

    def __init__(self, client_app: ClientApp, num_nodes: int, seed: int = 0) -> None:
        _claim_task_identity()
        self.client_app = client_app
        ids = random.Random(seed).sample(range(2**20, 2**40), num_nodes)
        self.contexts = {
            node_id: Context(
                run_id=_RUN_ID,
                node_id=node_id,
                node_config={PARTITION_KEY: partition, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for partition, node_id in enumerate(ids)
        }
        self._run = Run.create_empty(_RUN_ID)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(
            content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl
        )

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("LocalGrid answers messages synchronously; use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("LocalGrid answers messages synchronously; use send_and_receive")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            message.metadata.created_at = time.time()
            started = time.monotonic()
            try:
                delivered = copy.deepcopy(message)
                reply = self.client_app(delivered, self.contexts[message.metadata.dst_node_id])
            except Exception as error:  # noqa: BLE001 - a client's failure is its reply
                reason = f"{type(error).__name__}: {error}".splitlines()[0]
                reply = Message(
                    Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=message
                )
            if timeout is not None and time.monotonic() - started > timeout:
                logger.warning(
                    "node %d replied after the %.1f s timeout; reply dropped",
                    message.metadata.dst_node_id,
                    timeout,
                )
                continue
            replies.append(reply)
        return replies
