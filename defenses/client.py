"""What a client does with a defense: the stages around its gradient or local training.

`client_update` is the one place an update is made, for the federation's ClientApp
and for attacks on single updates alike. FedSGD: the gradient of the mean
cross-entropy (plus the defense's `extra_loss`, PRECODE's KL term) at the start
parameters. FedAvg: `local_steps` SGD steps of `local_lr` on consecutive chunks of
`local_batch_size` samples (wrapping around the batch, the convention of
`attacks.updates`), and the update is the weight delta. Stages apply in order: batch
once, gradient at every step, update at the end. The model stage is the caller's:
build `defense.model_name` when it is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense


@dataclass
class ClientUpdate:
    """The defended update (one tensor per parameter), mean training loss, and the batch trained on."""

    update: list[torch.Tensor]
    loss: float
    inputs: torch.Tensor
    labels: torch.Tensor


def _loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, defense: Defense | None
) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y)
    extra = defense.extra_loss(model) if defense is not None else None
    return loss if extra is None else loss + extra


def batch_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, defense: Defense | None = None
) -> list[torch.Tensor]:
    """Gradient of the mean cross-entropy (plus the defense's `extra_loss`), one tensor per parameter."""
    with torch.enable_grad():
        loss = _loss(model, x, y, defense)
        return [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]


def local_chunk(step: int, chunk: int, size: int) -> list[int]:
    """Indices of the batch used in local step `step`, wrapping around the batch."""
    start = (step * chunk) % size
    return [(start + i) % size for i in range(min(chunk, size))]


def _step_gradient(
    defense: Defense, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[list[torch.Tensor], float]:
    with torch.enable_grad():
        loss = _loss(model, x, y, defense)
        grads = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    return defense.transform_gradients(model, x, y, grads, generator), float(loss.detach())


def client_update(
    defense: Defense,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    *,
    kind: Literal["fedsgd", "fedavg"] = "fedsgd",
    local_steps: int = 1,
    local_lr: float = 0.1,
    local_batch_size: int | None = None,
) -> ClientUpdate:
    """The update a client sends from batch (x, y), in train mode.

    `model` holds the start parameters and is left at them (buffers such as
    batch-norm running statistics move, as on a real client).
    """
    x, y = defense.transform_batch(x, y, generator)
    model.train()
    if kind == "fedsgd":
        update, loss = _step_gradient(defense, model, x, y, generator)
    else:
        params = list(model.parameters())
        start = [p.detach().clone() for p in params]
        chunk = local_batch_size or x.shape[0]
        losses = []
        for step in range(local_steps):
            index = local_chunk(step, chunk, x.shape[0])
            grads, step_loss = _step_gradient(defense, model, x[index], y[index], generator)
            losses.append(step_loss)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.sub_(local_lr * g)
        update = [p.detach() - s for p, s in zip(params, start, strict=True)]
        loss = sum(losses) / len(losses)
        with torch.no_grad():
            for p, s in zip(params, start, strict=True):
                p.copy_(s)
    update = defense.transform_update(update, generator)
    return ClientUpdate([u.detach() for u in update], loss, x.detach(), y.detach())


def defended_gradient(
    defense: Defense, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> list[torch.Tensor]:
    """FedSGD: batch stage, gradient, gradient stage, update stage."""
    return client_update(defense, model, x, y, generator).update


def defended_fedavg_update(
    defense: Defense,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    local_steps: int = 1,
    local_lr: float = 0.1,
    local_batch_size: int | None = None,
) -> list[torch.Tensor]:
    """FedAvg: the weight delta (new − start) after local SGD steps, through every stage."""
    return client_update(
        defense,
        model,
        x,
        y,
        generator,
        kind="fedavg",
        local_steps=local_steps,
        local_lr=local_lr,
        local_batch_size=local_batch_size,
    ).update
