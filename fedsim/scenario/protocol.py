"""The federated-learning protocol of a scenario: what a client computes and sends, and
the optimiser it trains with."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from attacks.errors import AttackError
from attacks.local_optimizer import LocalOptimizer
from fedsim.scenario.fields import Beta, NonNegativeFloat, PositiveFloat, PositiveInt, Section


class ProtocolConfig(Section):
    """What a client computes and sends.

    Each round a client draws a fresh seeded batch of `batch_size` images from its
    partition: these are all the private images its update is computed from, so they
    are what an audit tries to reconstruct. `fedsgd`: the gradient g of the mean loss
    at the start parameters θ; the client sends θ − lr·g so that FedAvg's weighted mean
    of the replies is one SGD step of the mean gradient. `fedavg`: `local_steps` SGD
    steps of `lr` on consecutive chunks of `local_batch_size` samples of the batch (the
    whole batch when unset), wrapping around it; the client sends its new weights.

    Local epochs as a Flower client trains them (`local_epochs` passes over its data in
    mini-batches of `local_batch_size`) are passes over the round's batch: `local_epochs
    = E` sets `local_steps = E · ⌈batch_size / local_batch_size⌉`, the order of the
    batch kept in every pass (exact passes when `local_batch_size` divides `batch_size`;
    otherwise chunks wrap around the batch, as the attacks model it). A Flower client
    that trains on its whole partition each round is `batch_size` = the partition's size.

    FedAvg clients step plain SGD of `lr` unless `optimizer` names torch's `sgd` (with
    `momentum`, `dampening`, `nesterov`), `adam` or `adamw` (with `betas`, `eps`,
    `amsgrad`), each with `weight_decay`; unset values are torch's defaults. The clients
    train with that torch optimiser and the attacks unroll it
    (`attacks.local_optimizer`).
    """

    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    lr: PositiveFloat = 0.1
    batch_size: PositiveInt = 4
    local_steps: PositiveInt = 1
    local_batch_size: PositiveInt | None = None
    local_epochs: PositiveInt | None = None
    """FedAvg: passes over the round's batch; sets `local_steps` (see above)."""
    optimizer: Literal["sgd", "adam", "adamw"] | None = None
    """FedAvg: the clients' torch optimiser (None: plain SGD of `lr`)."""
    momentum: NonNegativeFloat | None = None
    """FedAvg, optimizer `sgd`: momentum μ (torch's default 0)."""
    dampening: NonNegativeFloat | None = None
    """FedAvg, optimizer `sgd`: dampening τ of the momentum (torch's default 0)."""
    nesterov: bool | None = None
    """FedAvg, optimizer `sgd`: Nesterov momentum (torch's default false)."""
    weight_decay: NonNegativeFloat | None = None
    """FedAvg, any optimizer: weight decay λ (torch's default: 0; 0.01 for `adamw`)."""
    betas: tuple[Beta, Beta] | None = None
    """FedAvg, optimizer `adam`/`adamw`: (β₁, β₂) (torch's default (0.9, 0.999))."""
    eps: PositiveFloat | None = None
    """FedAvg, optimizer `adam`/`adamw`: ε (torch's default 1e-8)."""
    amsgrad: bool | None = None
    """FedAvg, optimizer `adam`/`adamw`: AMSGrad (torch's default false)."""

    @model_validator(mode="before")
    @classmethod
    def _epochs_to_steps(cls, raw: Any) -> Any:
        """`local_epochs` → `local_steps`, so that everything downstream reads one field."""
        if not isinstance(raw, dict) or raw.get("local_epochs") is None:
            return raw
        epochs, batch = raw["local_epochs"], raw.get("batch_size", 4)
        chunk = raw.get("local_batch_size") or batch
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1
            for v in (epochs, batch, chunk)
        ):
            return raw  # field validation names the bad value
        steps = epochs * -(-batch // chunk)
        given = raw.get("local_steps", 1)
        if given not in (1, steps):
            raise ValueError(
                f"local_steps: {given} contradicts protocol.local_epochs = {epochs}"
                f" ({epochs} × ⌈{batch} / {chunk}⌉ = {steps} steps); give one of them"
            )
        return {**raw, "local_steps": steps}

    @model_validator(mode="after")
    def _fedavg_only(self) -> ProtocolConfig:
        if self.kind == "fedsgd":
            given = [
                name
                for name, value in (
                    ("local_epochs", self.local_epochs),
                    ("local_batch_size", self.local_batch_size),
                    ("local_steps", None if self.local_steps == 1 else self.local_steps),
                )
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"{given[0]}: fedsgd takes one step on the whole batch; use kind = 'fedavg'"
                )
        if self.local_batch_size is not None and self.local_batch_size > self.batch_size:
            raise ValueError(
                f"local_batch_size: {self.local_batch_size} exceeds batch_size ({self.batch_size})"
            )
        self.local_optimizer()  # refuses what torch.optim would
        return self

    def local_optimizer(self) -> LocalOptimizer:
        """The clients' optimiser as the attacks describe it (plain SGD unless `optimizer`)."""
        given = {k: getattr(self, k) for k in _OPTIMIZER_FIELDS if getattr(self, k) is not None}
        if self.kind == "fedsgd" and (self.optimizer is not None or given):
            field = "optimizer" if self.optimizer is not None else next(iter(given))
            raise ValueError(
                f"{field}: fedsgd clients send one gradient; an optimiser applies to kind = 'fedavg'"
            )
        name = self.optimizer or "sgd"
        for key in given:
            if name not in _OPTIMIZER_FIELDS[key]:
                raise ValueError(
                    f"{key}: applies to protocol.optimizer"
                    f" {' or '.join(map(repr, _OPTIMIZER_FIELDS[key]))}, not {name!r}"
                )
        if given.get("nesterov") and (given.get("momentum", 0) <= 0 or given.get("dampening")):
            raise ValueError("nesterov: needs protocol.momentum > 0 and protocol.dampening 0")
        try:
            return LocalOptimizer(name, **given)
        except AttackError as error:
            raise ValueError(str(error)) from None


_OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "momentum": ("sgd",),
    "dampening": ("sgd",),
    "nesterov": ("sgd",),
    "weight_decay": ("sgd", "adam", "adamw"),
    "betas": ("adam", "adamw"),
    "eps": ("adam", "adamw"),
    "amsgrad": ("adam", "adamw"),
}
"""`ProtocolConfig` fields of the clients' optimiser and the optimisers they apply to."""
