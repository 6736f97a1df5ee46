"""A FedAvg client's local training as the attacks model it: mini-batches, learning rates,
what the update weighs each step's gradient by, and what the model cannot know.

The client's optimiser itself is `attacks.local_optimizer`; `unroll` runs it over the
local steps as a pure function (differentiable, vmappable), the model of the update
that `attacks.updates` and `attacks.labels` share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from attacks.errors import AttackError
from attacks.local_optimizer import LocalOptimizer, Params
from attacks.target import AttackTarget, LastBatch, Protocol

LossGradient = Callable[[Params, list[int]], tuple[Params, Any]]
"""(parameters, indices of the step's mini-batch) → (gradient of its mean loss, aux)."""


def local_batches(
    steps: int, size: int, chunk: int | None, last_batch: LastBatch
) -> list[list[int]]:
    """Indices of the batch each local step trains on, in order, without shuffling.

    `wrap`: consecutive chunks of `chunk` samples, wrapping around the batch. `short`
    and `drop`: passes over the batch in chunks of `chunk`, the last chunk of a pass
    shorter (`short`) or left out (`drop`); see `attacks.target.LastBatch`.
    """
    chunk = min(chunk or size, size)
    if last_batch == "wrap":
        return [[(t * chunk + i) % size for i in range(chunk)] for t in range(steps)]
    per_pass = -(-size // chunk) if last_batch == "short" else size // chunk
    batches = []
    for t in range(steps):
        start = (t % per_pass) * chunk
        batches.append(list(range(start, min(start + chunk, size))))
    return batches


def protocol_batches(protocol: Protocol, size: int) -> list[list[int]]:
    """`local_batches` of a FedAvg protocol on a batch of `size` samples."""
    return local_batches(protocol.local_steps, size, protocol.local_batch_size, protocol.last_batch)


def client_options(protocol: Protocol) -> dict[str, Any]:
    """The keyword arguments of `defenses.client.client_update` that make a simulated
    client train as `protocol` says (plain SGD stays the plain update θ − lr·g)."""
    plain = protocol.optimizer.plain_sgd
    return {
        "kind": protocol.kind,
        "local_steps": protocol.local_steps,
        "local_lr": protocol.local_lr,
        "local_batch_size": protocol.local_batch_size,
        "optimizer": None if plain else protocol.optimizer.torch_factory(protocol.local_lr),
        "lr_schedule": protocol.lr_schedule,
        "last_batch": protocol.last_batch,
    }


def unroll(
    protocol: Protocol, params: Params, batches: Sequence[list[int]], loss_gradient: LossGradient
) -> tuple[Params, list[Any]]:
    """The parameters after the local steps, and each step's aux, as a pure function."""
    optimizer = protocol.optimizer
    state = optimizer.init_state(params)
    aux = []
    for batch, lr in zip(batches, protocol.step_lrs(), strict=True):
        grads, extra = loss_gradient(params, batch)
        aux.append(extra)
        params, state = optimizer.step(params, grads, state, lr)
    return params, aux


def gradient_weights(protocol: Protocol) -> torch.Tensor | None:
    """c (local_steps,) with update = −Σₜ cₜ gₜ, for SGD; None for Adam (not linear in g).

    Exact for SGD without weight decay (momentum, dampening, Nesterov and a learning-rate
    schedule make it a weighted sum); weight decay is left out of c (it adds −λ Σ cₜ θₜ).
    Plain SGD gives cₜ = lr.
    """
    optimizer = protocol.optimizer
    if optimizer.name != "sgd":
        return None
    linear = LocalOptimizer(
        "sgd",
        momentum=optimizer.momentum,
        dampening=optimizer.dampening,
        nesterov=optimizer.nesterov,
        weight_decay=0.0,
    )
    steps = protocol.local_steps
    eye = torch.eye(steps, dtype=torch.float64)
    params = {"w": torch.zeros(steps, dtype=torch.float64)}
    state = linear.init_state(params)
    for t, lr in enumerate(protocol.step_lrs()):
        params, state = linear.step(params, {"w": eye[t]}, state, lr)
    return -params["w"]


def approximations(target: AttackTarget) -> list[str]:
    """Where the attacks' model of how the update was made is not the client's training
    (one line each; empty when it is exact up to the defense's stated mechanism)."""
    protocol = target.protocol
    if protocol.kind != "fedavg":
        return []
    notes = []
    if not target.threat.local_hparams_known:
        notes.append(
            "local hyper-parameters not granted: the update is read as a scaled mean gradient"
        )
    chunk = min(protocol.local_batch_size or target.batch_size, target.batch_size)
    several = chunk < target.batch_size
    if protocol.shuffled and several:
        notes.append("batch order unknown (shuffled): modelled as consecutive mini-batches")
    if several and not target.threat.labels_known:
        notes.append(
            "labels of each mini-batch unknown: inferred labels assigned to mini-batches in order"
        )
    return notes


def resolve_lr_schedule(
    schedule: Sequence[float] | Callable[[torch.optim.Optimizer], Any] | None,
    optimizer: LocalOptimizer,
    lr: float,
    steps: int,
) -> tuple[float, ...] | None:
    """Per-step learning rates from a list, or from a torch lr_scheduler factory.

    A factory (e.g. `functools.partial(torch.optim.lr_scheduler.StepLR, step_size=10)`)
    is stepped after every local step, as a client does that calls `scheduler.step()`
    after `optimizer.step()`; give a list for a scheduler stepped per epoch. Schedulers
    that need a metric (ReduceLROnPlateau) or also change momentum or betas (OneCycleLR
    and CyclicLR by default) are refused.
    """
    if schedule is None:
        return None
    if not callable(schedule):
        values = tuple(float(v) for v in schedule)
        if len(values) != steps:
            raise AttackError(f"lr_schedule: {len(values)} learning rates for {steps} local steps")
        return values
    dummy = torch.zeros(1, requires_grad=True)
    built = optimizer.torch_factory(lr)([dummy])
    try:
        scheduler = schedule(built)
    except Exception as error:  # noqa: BLE001 - the user's factory: say what went wrong
        raise AttackError(f"lr_schedule: building it on the optimiser failed ({error})") from None
    schedulers = torch.optim.lr_scheduler
    if isinstance(scheduler, schedulers.ReduceLROnPlateau) or not isinstance(
        scheduler, schedulers.LRScheduler
    ):
        raise AttackError(
            f"lr_schedule: {type(scheduler).__name__} is not modelled (it needs a metric or is "
            "not a torch lr_scheduler); give the learning rate of every local step as a list"
        )
    group = built.param_groups[0]
    fixed = {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
    lrs = []
    for _ in range(steps):
        lrs.append(float(group["lr"]))
        built.step()
        scheduler.step()
        changed = [k for k, v in fixed.items() if group.get(k) != v]
        if changed:
            raise AttackError(
                f"lr_schedule: {type(scheduler).__name__} also changes {', '.join(changed)}, "
                "which is not modelled (OneCycleLR, CyclicLR: set cycle_momentum=False)"
            )
    return tuple(lrs)
