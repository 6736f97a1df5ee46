"""What a client does with a defense: the stages around its gradient or local training.

`defended_gradient` is one FedSGD update; `defended_fedavg_update` is the weight
delta (new − start) after local SGD steps, each step's gradient going through the
gradient stage and the final delta through the update stage. The model stage is the
caller's: build `defense.model_name` when it is set. The training loss is the mean
cross-entropy, as in the attacks' protocol, plus the defense's `extra_loss` (PRECODE's
β · KL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense


def batch_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, defense: Defense | None = None
) -> list[torch.Tensor]:
    """Gradient of the mean cross-entropy (plus the defense's `extra_loss`), one tensor per parameter."""
    params = list(model.parameters())
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y)
        extra = defense.extra_loss(model) if defense is not None else None
        if extra is not None:
            loss = loss + extra
        return [g.detach() for g in torch.autograd.grad(loss, params)]


def defended_gradient(
    defense: Defense, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> list[torch.Tensor]:
    """FedSGD: batch stage, gradient, gradient stage, update stage."""
    x, y = defense.transform_batch(x, y, generator)
    grads = defense.transform_gradients(
        model, x, y, batch_gradient(model, x, y, defense), generator
    )
    return defense.transform_update(grads, generator)


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
    """FedAvg: `local_steps` SGD steps on consecutive slices of the batch, then the update stage.

    The batch stage transforms the whole batch once; `model` is trained in place and
    the returned update is new − start, one tensor per parameter.
    """
    x, y = defense.transform_batch(x, y, generator)
    size = local_batch_size or x.shape[0]
    params = list(model.parameters())
    start = [p.detach().clone() for p in params]
    for step in range(local_steps):
        begin = (step * size) % x.shape[0]
        xs, ys = x[begin : begin + size], y[begin : begin + size]
        grads = defense.transform_gradients(
            model, xs, ys, batch_gradient(model, xs, ys, defense), generator
        )
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(local_lr * g)
    delta = [p.detach() - s for p, s in zip(params, start, strict=True)]
    return defense.transform_update(delta, generator)
