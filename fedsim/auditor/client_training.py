"""The protocol a Flower app's clients train with, from what `for_model` is told.

A client builds its optimiser (`functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)`),
perhaps a learning-rate scheduler, and a DataLoader (`shuffle`, `drop_last`); given the
same objects, the auditor reads them into an `attacks.target.Protocol` that the FedAvg
attack unrolls exactly (`attacks.local_optimizer`, `attacks.local_training`). What it
cannot model is refused here in one line (ConfigError naming the argument); a shuffled
order, which it cannot know, is modelled as consecutive mini-batches and recorded as an
approximation with every attack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from attacks.errors import AttackError
from attacks.local_optimizer import LocalOptimizer, from_torch
from attacks.local_training import resolve_lr_schedule
from attacks.target import Protocol
from fedsim.errors import ConfigError

OptimizerSpec = Callable[..., Any] | str | LocalOptimizer | None
"""A torch optimiser factory, an optimiser name ('sgd', 'adam', 'adamw'), a
`LocalOptimizer`, or None (plain SGD of `lr`)."""


def declared_protocol(
    kind: str,
    *,
    lr: float | None,
    local_steps: int | None,
    local_batch_size: int | None,
    optimizer: OptimizerSpec = None,
    lr_schedule: Sequence[float] | Callable[..., Any] | None = None,
    shuffle: bool = False,
    drop_last: bool = False,
) -> Protocol:
    """The clients' protocol; ConfigError, naming the argument, where it cannot be modelled."""
    try:
        described, built_lr = _optimizer(optimizer)
    except AttackError as error:
        raise ConfigError(str(error)) from None
    if built_lr is not None and lr is not None and abs(built_lr - lr) > 1e-12 * abs(lr):
        raise ConfigError(f"lr: {lr:g} contradicts the optimizer's lr ({built_lr:g}); give one")
    lr = built_lr if built_lr is not None else lr
    if lr is None:
        raise ConfigError("lr: required (the clients' learning rate), or give optimizer=")
    if kind == "fedsgd":
        if not described.plain_sgd or lr_schedule is not None:
            raise ConfigError(
                "optimizer: fedsgd clients send θ − lr·g; a client that steps "
                f"{described.describe()} or a schedule is protocol 'fedavg' with local_steps=1"
            )
        return Protocol(kind="fedsgd", local_lr=float(lr))
    steps = int(local_steps or 1)
    try:
        schedule = resolve_lr_schedule(lr_schedule, described, float(lr), steps)
        return Protocol(
            kind="fedavg",
            local_steps=steps,
            local_lr=float(lr),
            local_batch_size=local_batch_size,
            optimizer=described,
            lr_schedule=schedule,
            last_batch="drop" if drop_last else "short",
            shuffled=bool(shuffle),
        )
    except AttackError as error:
        raise ConfigError(str(error)) from None


def _optimizer(spec: OptimizerSpec) -> tuple[LocalOptimizer, float | None]:
    """The optimiser described, and the learning rate it was built with (None: not given)."""
    if spec is None:
        return LocalOptimizer(), None
    if isinstance(spec, LocalOptimizer):
        return spec, None
    if isinstance(spec, str):
        return LocalOptimizer(spec), None  # type: ignore[arg-type]
    if callable(spec):
        return from_torch(spec)
    raise AttackError(
        "optimizer: expected a torch optimiser factory (functools.partial(torch.optim.SGD, "
        f"lr=0.1, momentum=0.9)), a name or None, got {type(spec).__name__}"
    )
