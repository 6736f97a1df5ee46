"""What one client computes in one round: its batch, the defenses, and the weights it sends.

The update itself comes from `defenses.client.client_update` (shared with `fedsim attack`).
FedSGD: the gradient g of the mean cross-entropy at the start parameters θ, through
the defense stages into g̃; the client sends θ − lr·g̃. FedAvg's weighted
mean of those replies is θ − lr·mean(g̃), one SGD step on the round's mean gradient,
and the auditor recovers g̃ = (θ − θ_sent) / lr from each reply — exact up to the
float32 rounding of θ − lr·g̃ (about 1e-7·|θ| / lr per coordinate).

FedAvg: `local_steps` steps of the scenario's optimiser (plain SGD of lr unless
`protocol.optimizer` names torch's SGD, Adam or AdamW) on consecutive chunks of
`local_batch_size` samples of the batch, the delta through the defenses into δ̃; the
client sends θ + δ̃, and the auditor recovers δ̃ = θ_sent − θ.

Randomness: `seeded` clients (simulation) draw their defenses' randomness and torch's
global one (stochastic layers, PRECODE's bottleneck) from the scenario seed, so runs
repeat; the others (fedsim's deployable ClientApp) from the operating system's entropy,
so a server that holds the scenario cannot regenerate the noise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from attacks.local_training import client_options
from defenses.client import client_update
from fedsim.models import ImageClassifier
from fedsim.scenario.build import Federation


@dataclass
class LocalResult:
    """The state dict to send (parameters and buffers), the training loss and batch size."""

    state: dict[str, torch.Tensor]
    loss: float
    num_examples: int


def local_update(
    federation: Federation,
    model: ImageClassifier,
    client: int,
    server_round: int,
    *,
    seeded: bool = True,
) -> LocalResult:
    """Train `model` (holding the start parameters) on the client's batch; it is changed in
    place. `seeded`: randomness from the scenario seed (simulation), else from the OS."""
    protocol = federation.scenario.protocol
    x, y = federation.client_batch(client, server_round)
    if seeded:
        generator = federation.defense_generator(client, server_round)
        train_seed = federation.train_seed(client, server_round)
    else:
        generator = torch.Generator().manual_seed(secrets.randbits(63))
        train_seed = secrets.randbits(63)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_seed)
        result = client_update(
            federation.defense,
            model,
            x,
            y,
            generator,
            **client_options(federation.attack_protocol()),
        )
    with torch.no_grad():
        for p, u in zip(model.parameters(), result.update, strict=True):
            if protocol.kind == "fedsgd":
                p.sub_(protocol.lr * u)
            else:
                p.add_(u)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return LocalResult(state, result.loss, int(y.shape[0]))


def recover_update(
    federation: Federation,
    start: dict[str, torch.Tensor],
    sent: dict[str, torch.Tensor],
    parameter_names: list[str],
) -> list[torch.Tensor]:
    """The update a client computed, from the start and the sent weights (see module doc)."""
    protocol = federation.scenario.protocol
    if protocol.kind == "fedsgd":
        return [(start[name] - sent[name]) / protocol.lr for name in parameter_names]
    return [sent[name] - start[name] for name in parameter_names]
