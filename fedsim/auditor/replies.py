"""Which client sent each reply of an audited round, and whether the audit can use it.

Records name a client by the partition id its reply carries (fedsim's clients send it;
any ClientApp can, see `fedsim.message_keys.reply_partition`) and, without one, by its
Flower node id (deployment mode). In an audited round, a reply the auditor cannot use —
an error reply, no reply before the round's timeout, arrays of the wrong keys or shapes,
NaN or infinite values, a bad weight, a partition id claimed twice — is a `Rejection`
(recorded with status `rejected` and the reason, one line per attack), and no attack
runs on it. A reply in another dtype than was sent is used (FedAdam's float64 aggregate
goes to float32 clients). What the aggregate does with any reply is the inner strategy's
business (fedsim puts a `ReplyFilter` in front of FedAvg so that unusable ones are
dropped rather than averaged).
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import torch
from flwr.app import Message

from fedsim.message_keys import reply_partition
from fedsim.strategies.reply_check import ArraySpec, array_specs, reply_problem


class Rejection(NamedTuple):
    """A reply (or a missing one) the audit cannot use: who, from which node, and why."""

    client: int | None
    node: int
    reason: str


def reply_state(message: Message) -> dict[str, torch.Tensor]:
    """A private copy of the (only) ArrayRecord of a reply, as a torch state dict."""
    arrays = next(iter(message.content.array_records.values()))
    return {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}


class ReplyIntake:
    """Names the sender of each reply and sorts a round's replies into usable and rejected.

    `num_clients`: how many partitions the federation has (None: unknown); `by_node`:
    name a reply that carries no partition id by its node id (deployment mode).
    """

    def __init__(self, num_clients: int | None, *, by_node: bool) -> None:
        self.num_clients = num_clients
        self.by_node = by_node
        self.partition_of_node: dict[int, int] = {}
        """Node id → partition id, so a node that fails later is recorded under its client."""
        self.taken_part: Counter[int] = Counter()
        """Client → how many rounds it replied in (counted by `count_participation`)."""

    def client(self, message: Message) -> int | None:
        """Which client sent a reply: its fedsim partition id; in deployment mode, else its
        node id.

        Raises ValueError or TypeError when the partition id is not an integer.
        """
        partition = reply_partition(message)
        if partition is None and self.by_node:
            return int(message.metadata.src_node_id)
        return partition

    def known(self, client: int | None) -> bool:
        """Whether `client` names one of the federation's partitions."""
        count = self.num_clients
        return client is not None and (count is None or 0 <= client < count)

    def learn_nodes(self, replies: list[Message]) -> None:
        """Remember the partition of each node that replied with a readable one."""
        for message in replies:
            if message.has_error():
                continue
            try:
                client = self.client(message)
            except (ValueError, TypeError):
                continue
            if client is not None and self.known(client):
                self.partition_of_node[int(message.metadata.src_node_id)] = client

    def count_participation(self, replies: list[Message]) -> None:
        """One more round for each client that replied (under LocalDpMod a client's ε
        composes over every round it took part in)."""
        for message in replies:
            try:
                client = None if message.has_error() else self.client(message)
            except (ValueError, TypeError):
                client = None
            if client is not None:
                self.taken_part[client] += 1

    def sort(
        self,
        start: dict[str, torch.Tensor],
        replies: list[Message],
        sent_to: list[int],
        weight_key: str | None,
    ) -> tuple[dict[int, Message], list[Rejection]]:
        """Client → reply for the usable replies, and the rejections: the unusable replies
        in their order, then the nodes that were sent work and did not answer."""
        expected: dict[str, ArraySpec] = array_specs(start)
        usable: dict[int, Message] = {}
        rejected: list[Rejection] = []
        for message in replies:
            node = int(message.metadata.src_node_id)
            try:
                client = None if message.has_error() else self.client(message)
                unreadable = None
            except (ValueError, TypeError):
                client, unreadable = None, "the partition id is not an integer"
            if client is None and unreadable is None and not message.has_error():
                continue  # not a fedsim client: nothing to attack, nothing to reject
            problem = unreadable or reply_problem(message, expected, weight_key, dtypes=False)
            if problem is None and client in usable:
                problem = f"partition id {client} claimed by a second reply"
            if problem is None and not self.known(client):
                problem = f"partition id {client} is not one of the scenario's clients"
            if problem is not None:
                known = client if client is not None else self.partition_of_node.get(node)
                rejected.append(Rejection(known, node, problem))
                continue
            usable[client] = message
        answered = {int(m.metadata.src_node_id) for m in replies}
        for node in sent_to:
            if node not in answered:
                problem = "no reply before the round's timeout"
                rejected.append(Rejection(self.partition_of_node.get(node), node, problem))
        return usable, rejected
