"""What a client does with a defense: the stages around its gradient or local training.

`client_update` is the one place an update is made, for the federation's ClientApp
and for attacks on single updates alike. FedSGD: the gradient of the mean
cross-entropy (plus the defense's `extra_loss`, PRECODE's KL term) at the start
parameters. FedAvg: `local_steps` steps of the client's optimiser (plain SGD of
`local_lr` unless a torch optimiser is given) on consecutive chunks of
`local_batch_size` samples (wrapping around the batch, the convention of
`attacks.updates`, unless told otherwise), and the update is the weight delta. Stages apply in order: batch
once, gradient at every step, update at the end. The model stage is the caller's:
build `defense.model_name` when it is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
"""Builds a torch optimiser on a list of parameters (`functools.partial(torch.optim.SGD, ...)`)."""


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


def local_batches(
    steps: int,
    size: int,
    chunk: int | None,
    last_batch: str = "wrap",
    shuffle: torch.Generator | None = None,
) -> list[list[int]]:
    """Indices of the batch each local step trains on.

    Passes over the batch in mini-batches of `chunk` (the whole batch when None); with a
    `shuffle` generator each pass takes a fresh random order, as a DataLoader with
    `shuffle=True`. `last_batch` says what happens where `chunk` does not divide `size`:
    `wrap` fills every mini-batch from the next pass (without shuffling: `local_chunk`),
    `short` ends each pass with a smaller mini-batch, `drop` leaves those samples out.
    """
    chunk = min(chunk or size, size)
    orders: list[list[int]] = []

    def order(p: int) -> list[int]:
        while len(orders) <= p:
            fresh = torch.randperm(size, generator=shuffle) if shuffle is not None else None
            orders.append(list(range(size)) if fresh is None else fresh.tolist())
        return orders[p]

    if last_batch == "wrap":
        positions = ((t * chunk + i) for t in range(steps) for i in range(chunk))
        flat = [order(q // size)[q % size] for q in positions]
        return [flat[t * chunk : (t + 1) * chunk] for t in range(steps)]
    if last_batch not in ("short", "drop"):
        raise ValueError(f"last_batch: expected 'wrap', 'short' or 'drop', got {last_batch!r}")
    per_pass = -(-size // chunk) if last_batch == "short" else size // chunk
    return [
        order(t // per_pass)[(t % per_pass) * chunk : (t % per_pass + 1) * chunk]
        for t in range(steps)
    ]


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
    optimizer: OptimizerFactory | None = None,
    lr_schedule: Sequence[float] | None = None,
    last_batch: str = "wrap",
    shuffle: torch.Generator | None = None,
) -> ClientUpdate:
    """The update a client sends from batch (x, y), in train mode.

    `model` holds the start parameters and is left at them (buffers such as
    batch-norm running statistics move, as on a real client). FedAvg: `optimizer`
    builds the torch optimiser a client steps (e.g. `functools.partial(torch.optim.SGD,
    lr=0.1, momentum=0.9)`; None: plain SGD of `local_lr`), `lr_schedule` gives each
    step's learning rate (None: `local_lr`), and `last_batch` and `shuffle` choose the
    mini-batches (`local_batches`).
    """
    x, y = defense.transform_batch(x, y, generator)
    model.train()
    if kind == "fedsgd":
        update, loss = _step_gradient(defense, model, x, y, generator)
    else:
        params = list(model.parameters())
        start = [p.detach().clone() for p in params]
        batches = local_batches(local_steps, x.shape[0], local_batch_size, last_batch, shuffle)
        stepper = _Stepper(params, local_lr, optimizer)
        losses = []
        for step, index in enumerate(batches):
            grads, step_loss = _step_gradient(defense, model, x[index], y[index], generator)
            losses.append(step_loss)
            stepper.step(grads, lr_schedule[step] if lr_schedule is not None else local_lr)
        update = [p.detach() - s for p, s in zip(params, start, strict=True)]
        loss = sum(losses) / len(losses)
        with torch.no_grad():
            for p, s in zip(params, start, strict=True):
                p.copy_(s)
    update = defense.transform_update(update, generator)
    return ClientUpdate([u.detach() for u in update], loss, x.detach(), y.detach())


class _Stepper:
    """Applies a local step's (defended) gradients: θ ← θ − lr·g, or the client's torch
    optimiser (its state kept across the round's steps, its learning rate set per step)."""

    def __init__(
        self, params: list[torch.Tensor], lr: float, optimizer: OptimizerFactory | None
    ) -> None:
        self.params = params
        self.optimizer = optimizer(params) if optimizer is not None else None
        if self.optimizer is not None and len(self.optimizer.param_groups) != 1:
            raise ValueError("optimizer: one parameter group expected")

    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        if self.optimizer is None:
            with torch.no_grad():
                for p, g in zip(self.params, grads, strict=True):
                    p.sub_(lr * g)
            return
        self.optimizer.param_groups[0]["lr"] = lr
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g.detach().clone()
        self.optimizer.step()
        for p in self.params:
            p.grad = None


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
