"""Which replies of a round the auditor attacks: the scenario's round and client schedule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsim.scenario.audit import AuditConfig


def audited_round(audit: AuditConfig, server_round: int) -> bool:
    """True when `server_round` is on the schedule (every k-th, the first n, a list, or all)."""
    return audit.rounds.selects(server_round)


def audited_clients(
    audit: AuditConfig, clients: Sequence[int], rng: np.random.Generator
) -> list[int]:
    """All of a round's clients, or a seeded sample of `audit.clients.sample` of them, sorted.

    `clients` are partition ids; they are sorted before sampling so the choice depends
    only on the set of clients and the generator, not on the order replies arrived in.
    """
    ordered = sorted(clients)
    size = audit.clients.sample
    if size is None or size >= len(ordered):
        return ordered
    chosen = rng.choice(len(ordered), size=size, replace=False)
    return sorted(ordered[i] for i in chosen)
