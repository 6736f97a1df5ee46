"""What the auditor hands the attacks for one audited round, and what comes back.

A `RoundJob` holds copies of everything it needs (start parameters, recovered updates,
ground truth), so it can run in a worker thread while the federation moves on; each
intercepted update is a `ClientCase`, and each attack on a case gives an `AttackResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from fedsim.scenario.audit import BudgetConfig


@dataclass
class ClientCase:
    """One intercepted update; `originals`/`true_labels` only where ground truth exists.

    `client` is the partition id where the reply carries one, else the node id; `node` is
    the Flower node id the reply came from (None where unknown)."""

    client: int
    update: list[torch.Tensor]
    node: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    """Extra fields of this client's records (its ε under Flower's LocalDpMod)."""
    originals: torch.Tensor | None = None
    """Images in [0, 1] pixel space whatever the domain's box (reconstructions are mapped
    there to be scored), or feature rows."""
    true_labels: torch.Tensor | None = None
    trained_on: torch.Tensor | None = None
    """The originals after the defenses' batch stage (ATS), where one transforms them."""
    batch_size: int | None = None
    """How many inputs the update was computed from, where not the setup's (the aggregate
    of a secure-aggregation round: every client's batch together)."""
    mechanism_refusal: str | None = None
    """Why no likelihood is stated for this case though the setup states one (the
    aggregate of several clients' defended updates)."""


@dataclass
class RoundJob:
    server_round: int
    start_state: dict[str, torch.Tensor]
    cases: list[ClientCase] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Records of the round's replies that were not attacked (status `rejected`)."""
    mechanism: object | None = None
    """This round's mechanism where it is known per round (Flower's adaptive clipping sends
    a new norm each round); None: the setup's."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Extra fields of every record of the round (what the server saw under Flower's DP
    tools, the central ε)."""
    budgets: dict[str, BudgetConfig] = field(default_factory=dict)
    """Attack label → its budget on this job, where a cost plan sets one
    (`fedsim.auditor.cost_plan`); else the setup's."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Attack label → why it is not run on this job (recorded `out_of_reach`, with the
    label counts of each update still read)."""


@dataclass
class AttackResult:
    """What became of one attack on one case: the record line and the images for a grid."""

    record: dict[str, Any]
    inputs: torch.Tensor | None = None
