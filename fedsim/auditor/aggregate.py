"""The aggregate of a secure-aggregation round, as one update to attack.

Under SecAgg+ the server never sees a client's update, but it sees their weighted mean:
with every client reporting its batch size, the mean of k updates each computed from B
images. Under FedSGD that is exactly the gradient of all k·B images together (for a
model without batch norm, whose statistics would differ between the clients' batches
and their union); under FedAvg it is the mean of k separate local trainings, which the
attacks model as one training on the union — an approximation the record says. The
likelihood of the clients' defenses summed over k clients is not stated, so attacks that
model the defense's mechanism are refused on the aggregate (`mechanism_refusal`) while
the others run. The aggregate is scored against the union of the round's batches (in
simulation the auditor recomputes each client's batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedsim.auditor.jobs import ClientCase
from fedsim.auditor.setup import AuditSetup

FEDAVG_APPROXIMATION = (
    "the mean of {k} clients' local trainings is modelled as one training on their union"
)


def aggregate_case(
    setup: AuditSetup,
    server_round: int,
    start: dict[str, torch.Tensor],
    aggregate: dict[str, torch.Tensor],
    clients: Sequence[int],
) -> ClientCase:
    """The aggregate of `clients`' updates as a case with its ground truth (every
    client's batch in client order) and the fields its records carry."""
    assert setup.ground_truth is not None
    names = [name for name, _ in setup.build_model().named_parameters()]
    update = setup.recover_update(start, aggregate, names)
    batches = [setup.ground_truth(client, server_round) for client in clients]
    k = len(clients)
    fields: dict[str, object] = {
        "client": None,
        "aggregate_of": [int(c) for c in clients],
        "batch_size": k * setup.batch_size,
    }
    if setup.protocol.kind == "fedavg" and k > 1:
        fields["approximations"] = [FEDAVG_APPROXIMATION.format(k=k)]
    case = ClientCase(
        client=-1,
        update=update,
        fields=fields,
        originals=torch.cat([x for x, _ in batches]),
        true_labels=torch.cat([y for _, y in batches]),
        batch_size=k * setup.batch_size,
    )
    if setup.mechanism is not None:
        case.mechanism_refusal = (
            f"the likelihood of the mean of {k} clients' defended updates is not stated"
        )
    if setup.trained_batch is not None:
        case.trained_on = torch.cat([setup.trained_batch(c, server_round)[0] for c in clients])
    return case
