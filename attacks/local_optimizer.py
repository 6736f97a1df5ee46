"""The optimiser a client trains with, as a pure function the FedAvg attack can differentiate.

`LocalOptimizer` names torch.optim's SGD (momentum, dampening, Nesterov, weight decay),
Adam and AdamW (weight decay coupled or decoupled, AMSGrad) with their hyper-parameters;
`from_torch` reads one from the factory a client builds its optimiser with, and
`torch_factory` builds that optimiser back. `init_state` and `step` re-implement
torch.optim's update rules (torch's documentation of `SGD`, `Adam`, `AdamW`) without
in-place operations, so that an unrolled local training is differentiable with respect
to the data and runs under `torch.func.vmap`. With t counting from 1, g the gradient,
θ the parameters and γ the step's learning rate:

SGD    g ← g + λθ;  b ← g at t = 1, else μb + (1 − τ)g;  g ← g + μb (Nesterov) or b;
       θ ← θ − γg.
Adam   g ← g + λθ (Adam) or θ ← θ(1 − γλ) (AdamW);  m ← β₁m + (1 − β₁)g;
       v ← β₂v + (1 − β₂)g²;  v̂ ← max(v̂, v) (AMSGrad) or v;
       θ ← θ − γ/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε).

This extends Dimitrov et al.'s unrolling of local SGD steps ("Data Leakage in Federated
Averaging", TMLR 2022) to momentum and Adam. The square root's derivative is infinite at
v = 0 (a coordinate whose gradient is exactly zero, e.g. a dead unit's weights): there the
step takes the subgradient 0, as √(c·g²) = √c·|g| has at g = 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attacks.errors import AttackError

OptimizerName = Literal["sgd", "adam", "adamw"]
State = dict[str, Any]
Params = dict[str, torch.Tensor]

_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


@dataclass(frozen=True)
class LocalOptimizer:
    """One of torch.optim's SGD, Adam or AdamW, without its learning rate (the protocol's).

    `weight_decay` None becomes torch's default for the optimiser (0, or 0.01 for AdamW).
    The default, plain SGD, is what fedsim's clients have always done.
    """

    name: OptimizerName = "sgd"
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False

    def __post_init__(self) -> None:
        if self.name not in _CLASSES:
            raise AttackError(
                f"optimizer: expected one of {', '.join(_CLASSES)}, got {self.name!r}"
            )
        if self.weight_decay is None:  # torch's default for this optimiser, stated
            object.__setattr__(self, "weight_decay", 0.01 if self.name == "adamw" else 0.0)
        problem = _problem(self)
        if problem:
            raise AttackError(f"optimizer: {problem}")

    @property
    def decay(self) -> float:
        """The weight decay λ in effect."""
        return float(self.weight_decay or 0.0)

    @property
    def plain_sgd(self) -> bool:
        """Whether every step is θ ← θ − γg (SGD without momentum and weight decay)."""
        return self.name == "sgd" and self.momentum == 0 and self.decay == 0

    def describe(self) -> str:
        """'sgd', 'sgd (momentum 0.9, nesterov)', 'adamw (betas 0.9/0.999, eps 1e-08, weight decay 0.01)'."""
        parts = []
        if self.name == "sgd":
            if self.momentum:
                parts.append(f"momentum {self.momentum:g}")
            if self.dampening:
                parts.append(f"dampening {self.dampening:g}")
            if self.nesterov:
                parts.append("nesterov")
        else:
            parts.append(f"betas {self.betas[0]:g}/{self.betas[1]:g}, eps {self.eps:g}")
            if self.amsgrad:
                parts.append("amsgrad")
        if self.decay:
            parts.append(f"weight decay {self.decay:g}")
        return self.name + (f" ({', '.join(parts)})" if parts else "")

    def torch_factory(self, lr: float) -> Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]:
        """`functools.partial` of the torch.optim class with these hyper-parameters and `lr`."""
        if self.name == "sgd":
            options: dict[str, Any] = dict(
                momentum=self.momentum,
                dampening=self.dampening,
                nesterov=self.nesterov,
                weight_decay=self.decay,
            )
        else:
            options = dict(
                betas=tuple(self.betas), eps=self.eps, weight_decay=self.decay, amsgrad=self.amsgrad
            )
        return functools.partial(_CLASSES[self.name], lr=lr, **options)

    # ------------------------------------------------------------------ functional steps

    def init_state(self, params: Params) -> State:
        """The optimiser's state before the first step (empty buffers, step 0)."""
        state: State = {"step": 0}
        if self.name == "sgd":
            if self.momentum:
                state["buffer"] = None
        else:
            state["m"] = {k: torch.zeros_like(p) for k, p in params.items()}
            state["v"] = {k: torch.zeros_like(p) for k, p in params.items()}
            if self.amsgrad:
                state["v_max"] = {k: torch.zeros_like(p) for k, p in params.items()}
        return state

    def step(self, params: Params, grads: Params, state: State, lr: float) -> tuple[Params, State]:
        """One step of learning rate `lr`: the new parameters and state (inputs untouched)."""
        if self.name == "sgd":
            return self._sgd(params, grads, state, lr)
        return self._adam(params, grads, state, lr)

    def _sgd(self, params: Params, grads: Params, state: State, lr: float) -> tuple[Params, State]:
        decay, mu = self.decay, self.momentum
        g = {k: grads[k] + decay * params[k] if decay else grads[k] for k in params}
        new: State = {"step": state["step"] + 1}
        if mu:
            previous = state["buffer"]
            if previous is None:
                buffer = dict(g)
            else:
                buffer = {k: mu * previous[k] + (1 - self.dampening) * g[k] for k in g}
            new["buffer"] = buffer
            g = {k: g[k] + mu * buffer[k] for k in g} if self.nesterov else buffer
        return {k: params[k] - lr * g[k] for k in params}, new

    def _adam(self, params: Params, grads: Params, state: State, lr: float) -> tuple[Params, State]:
        decay = self.decay
        beta1, beta2 = self.betas
        t = state["step"] + 1
        if decay and self.name == "adamw":
            params = {k: p * (1 - lr * decay) for k, p in params.items()}
            g = grads
        elif decay:
            g = {k: grads[k] + decay * params[k] for k in params}
        else:
            g = grads
        m = {k: beta1 * state["m"][k] + (1 - beta1) * g[k] for k in g}
        v = {k: beta2 * state["v"][k] + (1 - beta2) * g[k] * g[k] for k in g}
        new: State = {"step": t, "m": m, "v": v}
        second = v
        if self.amsgrad:
            second = {k: torch.maximum(state["v_max"][k], v[k]) for k in v}
            new["v_max"] = second
        step_size = lr / (1 - beta1**t)
        root_correction = (1 - beta2**t) ** 0.5
        out = {
            k: params[k] - step_size * m[k] / (_safe_sqrt(second[k]) / root_correction + self.eps)
            for k in params
        }
        return out, new


def _problem(opt: LocalOptimizer) -> str | None:
    """What torch.optim would refuse in these hyper-parameters (checked without building one)."""
    if opt.decay < 0:
        return f"weight_decay must be non-negative, got {opt.decay}"
    if opt.name == "sgd":
        if opt.momentum < 0 or opt.dampening < 0:
            return "momentum and dampening must be non-negative"
        if opt.nesterov and (opt.momentum <= 0 or opt.dampening != 0):
            return "nesterov needs momentum > 0 and dampening 0"
        return None
    if not all(0 <= b < 1 for b in opt.betas) or len(opt.betas) != 2:
        return f"betas must be two values in [0, 1), got {opt.betas}"
    if opt.eps < 0:
        return f"eps must be non-negative, got {opt.eps}"
    return None


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """√v with derivative 0 where v = 0 (instead of ∞, whose product with 0 is NaN)."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), 0.0)


def from_torch(factory: Callable[..., torch.optim.Optimizer]) -> tuple[LocalOptimizer, float]:
    """The optimiser and learning rate a client's optimiser factory builds.

    `factory` takes an iterable of parameters and returns a torch.optim optimiser, as a
    client builds it: `functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)`, or a
    lambda. It is called once on a dummy parameter and its hyper-parameters are read back.
    Anything the attack cannot unroll exactly is refused with AttackError, in one line.
    """
    try:
        built = factory([torch.zeros(1, requires_grad=True)])
    except Exception as error:  # noqa: BLE001 - the user's factory: say what went wrong
        raise AttackError(f"optimizer: building it on a parameter list failed ({error})") from None
    kind = type(built)
    if kind not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        raise AttackError(
            f"optimizer: {kind.__name__} is not modelled; the FedAvg attack unrolls "
            "torch.optim.SGD, Adam and AdamW"
        )
    if len(built.param_groups) != 1:
        raise AttackError("optimizer: several parameter groups are not modelled")
    group = built.param_groups[0]
    if group.get("maximize"):
        raise AttackError("optimizer: maximize=True is not modelled")
    lr = float(group["lr"])
    decay = float(group["weight_decay"])
    if kind is torch.optim.SGD:
        described = LocalOptimizer(
            "sgd",
            momentum=float(group["momentum"]),
            dampening=float(group["dampening"]),
            nesterov=bool(group["nesterov"]),
            weight_decay=decay,
        )
    else:
        decoupled = kind is torch.optim.AdamW or bool(group.get("decoupled_weight_decay"))
        described = LocalOptimizer(
            "adamw" if decoupled else "adam",
            betas=(float(group["betas"][0]), float(group["betas"][1])),
            eps=float(group["eps"]),
            weight_decay=decay,
            amsgrad=bool(group["amsgrad"]),
        )
    return described, lr
