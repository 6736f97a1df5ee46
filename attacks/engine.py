"""The optimisation engine: N independent candidates minimised as one vectorised problem.

Minimises, for every candidate n at once,

    w_t · D(g_obs,n , g(x_n, y_n)) + Σ_k λ_k R_k(x_n)

where D is the data term (a likelihood or a distance), R_k are priors and w_t a
scheduled weight on the data term. x_n is what the model sees of the optimised
variable z_n (`attacks.domain`: the image itself, or feature rows whose one-hot
groups are the softmax of logits); the box, where the domain has one, is kept by
projecting z after every step. The loss handed to autograd is the sum over
candidates; since candidate n's term depends only on x_n and Adam is elementwise, every
candidate follows exactly the trajectory it would follow alone (up to floating-point
reordering). L-BFGS keeps curvature state across the whole vector, so it runs one
candidate at a time. Many candidates of a large model are taken in chunks within each
step (`CHUNK_UPDATE_ELEMENTS`), which changes nothing but the memory traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import torch

from attacks.domain import ImageDomain, InputDomain
from attacks.objectives import Objective, Observed
from attacks.priors import Prior
from attacks.updates import UpdateFunction


@dataclass(frozen=True)
class OptimizerConfig:
    """How candidates are optimised: declared once, here. An optimisation attack
    (`attacks.base.GradientAttack`) inherits these as its hyper-parameters, and
    `OptimizerConfig.of(attack)` hands the engine its values.

    `schedule`: 'constant'; 'exponential' multiplies the lr by `decay` every step;
    'step' multiplies it by `decay` at each fraction in `milestones` of the budget.
    `signed` steps on the sign of the gradient (Inverting Gradients); `box` projects
    onto the domain after every step (images: [0, 1]; feature rows have no box). The
    data-term weight starts at `weight_start` and moves geometrically to `weight_end`
    (up or down) over the first `weight_ramp` fraction of the iterations, then stays
    there (the Bayesian framework paper's schedule; its heuristic attacks tune both ends).
    """

    optimizer: Literal["adam", "lbfgs"] = "adam"
    lr: float = 0.1
    schedule: Literal["constant", "exponential", "step"] = "constant"
    decay: float = 1.0
    milestones: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
    signed: bool = False
    box: bool = True
    weight_start: float = 1.0
    weight_ramp: float = 0.0
    weight_end: float = 1.0
    lbfgs_max_iter: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))

    @classmethod
    def of(cls, settings: OptimizerConfig) -> OptimizerConfig:
        """The optimiser settings of `settings` (an attack, say) as a config of their own."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


@dataclass
class Problem:
    """What is optimised: candidate labels, observed updates, the data term and priors."""

    updates: UpdateFunction
    labels: torch.Tensor  # (N, B)
    observed: Observed
    objective: Objective
    priors: Sequence[tuple[Prior, float]]
    domain: InputDomain = field(default_factory=ImageDomain)

    def terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data term, weighted prior sum), each (N,), at the optimised variable z."""
        x = self.domain.to_input(z)
        cand = self.updates(x, self.labels)
        data = self.objective(cand, self.observed)
        prior = x.new_zeros(x.shape[0])
        for p, weight in self.priors:
            if weight:
                prior = prior + weight * p(x, cand)
        return data, prior

    def subset(self, index: int) -> Problem:
        """The problem of candidate `index` alone (for L-BFGS)."""
        group = next(g for g in self.observed.groups if g.start <= index < g.stop)
        observed = Observed(
            [o[index : index + 1] for o in self.observed.per_candidate],
            [type(group)(0, 1, group.update, group.mechanism)],
            self.observed.weights,
        )
        return Problem(
            self.updates,
            self.labels[index : index + 1],
            observed,
            self.objective,
            self.priors,
            self.domain,
        )

    def span(self, start: int, stop: int) -> Problem:
        """Candidates start:stop as a problem of their own; every other field is shared."""
        groups = [
            type(g)(max(g.start, start) - start, min(g.stop, stop) - start, g.update, g.mechanism)
            for g in self.observed.groups
            if g.start < stop and g.stop > start
        ]
        observed = Observed(
            [o[start:stop] for o in self.observed.per_candidate], groups, self.observed.weights
        )
        return replace(self, labels=self.labels[start:stop], observed=observed)


CHUNK_UPDATE_ELEMENTS = 24_000_000
"""At most this many update entries (candidates × parameters) go through one batched
pass; more candidates are taken in chunks of that size one after another in each step.
Measured on a CPU (`benchmarks/attack_speed.py`, ConvNet-64, 2.9 M parameters, one
thread): 8 candidates in one pass cost 0.95× the plain loop per candidate, 32 in one
pass 0.64× (their activations and observed updates no longer in cache), 32 in chunks of
8 0.96×. The paper CNN (0.33 M parameters, up to 72 a pass) still gained at N = 32."""


def chunks(problem: Problem, n: int) -> list[tuple[int, int, Problem]]:
    """(start, stop, sub-problem) covering candidates 0..n in chunks (one when it fits)."""
    size = max(1, sum(o[0].numel() for o in problem.observed.per_candidate))
    per = max(1, CHUNK_UPDATE_ELEMENTS // size)
    if per >= n:
        return [(0, n, problem)]
    return [(a, min(a + per, n), problem.span(a, min(a + per, n))) for a in range(0, n, per)]


def gradient(parts: list[tuple[int, int, Problem]], x: torch.Tensor, weight: float) -> torch.Tensor:
    """∇x Σ_n (weight · data_n + prior_n), chunk by chunk (candidates are independent)."""
    if len(parts) == 1:
        data, prior = parts[0][2].terms(x)
        return torch.autograd.grad((weight * data + prior).sum(), x)[0]
    grads = []
    for start, stop, part in parts:
        xs = x.detach()[start:stop].requires_grad_(True)
        data, prior = part.terms(xs)
        grads.append(torch.autograd.grad((weight * data + prior).sum(), xs)[0])
    return torch.cat(grads)


@dataclass
class EngineResult:
    x: torch.Tensor  # (N, B, *input_shape): the optimised variable z (see `attacks.domain`)
    objective: torch.Tensor  # (N,) final objective at the final data weight; +inf where not finite
    iterations: int
    seconds: float
    status: Literal["ok", "timeout", "failed"]


def data_weight(config: OptimizerConfig, step: int, iterations: int) -> float:
    """The scheduled weight on the data term at `step` (geometric ramp to `weight_end`)."""
    ramp = int(round(config.weight_ramp * iterations))
    start, end = config.weight_start, config.weight_end
    if ramp <= 0 or start == end or step >= ramp:
        return end
    return end * (start / end) ** (1.0 - step / ramp)


def learning_rate(config: OptimizerConfig, step: int, iterations: int) -> float:
    """The learning rate at `step` of `iterations`."""
    if config.schedule == "exponential":
        return config.lr * config.decay**step
    if config.schedule == "step":
        drops = sum(step >= math.ceil(m * iterations) for m in config.milestones)
        return config.lr * config.decay**drops
    return config.lr


def final_objective(problem: Problem, x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """(N,) `weight` · data term + priors; +inf where not finite."""
    totals = []
    with torch.enable_grad():
        for start, stop, part in chunks(problem, x.shape[0]):
            data, prior = part.terms(x.detach()[start:stop])
            totals.append((weight * data + prior).detach())
    total = torch.cat(totals)
    return torch.where(torch.isfinite(total), total, torch.full_like(total, math.inf))


def optimise(
    problem: Problem,
    x0: torch.Tensor,
    config: OptimizerConfig,
    iterations: int,
    seconds: float | None = None,
) -> EngineResult:
    """Run the optimisation from `x0` (N, B, *input_shape) for `iterations` steps or `seconds`."""
    start = time.perf_counter()
    deadline = None if seconds is None else start + seconds
    if config.optimizer == "lbfgs":
        x, done, timed_out = _lbfgs(problem, x0, config, iterations, deadline)
    else:
        x, done, timed_out = _adam(problem, x0, config, iterations, deadline)
    objective = final_objective(problem, x, config.weight_end)
    status: Literal["ok", "timeout", "failed"] = "timeout" if timed_out else "ok"
    if not torch.isfinite(objective).any():
        status = "failed"
    return EngineResult(x.detach(), objective, done, time.perf_counter() - start, status)


def _adam(
    problem: Problem,
    x0: torch.Tensor,
    config: OptimizerConfig,
    iterations: int,
    deadline: float | None,
) -> tuple[torch.Tensor, int, bool]:
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=config.lr)
    parts = chunks(problem, x.shape[0])
    for step in range(iterations):
        if deadline is not None and time.perf_counter() >= deadline:
            return x, step, True
        for group in opt.param_groups:
            group["lr"] = learning_rate(config, step, iterations)
        g = gradient(parts, x, data_weight(config, step, iterations))
        x.grad = g.sign() if config.signed else g
        opt.step()
        if config.box:
            with torch.no_grad():
                problem.domain.project_(x)
    return x, iterations, False


def _lbfgs(
    problem: Problem,
    x0: torch.Tensor,
    config: OptimizerConfig,
    iterations: int,
    deadline: float | None,
) -> tuple[torch.Tensor, int, bool]:
    results = []
    done_min = iterations
    timed_out = False
    for n in range(x0.shape[0]):
        sub = problem.subset(n)
        xn = x0[n : n + 1].detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [xn], lr=config.lr, max_iter=config.lbfgs_max_iter, line_search_fn="strong_wolfe"
        )
        step_holder = {"step": 0}

        def closure(
            sub: Problem = sub, xn: torch.Tensor = xn, holder: dict = step_holder
        ) -> torch.Tensor:
            data, prior = sub.terms(xn)
            loss = (data_weight(config, holder["step"], iterations) * data + prior).sum()
            (xn.grad,) = torch.autograd.grad(loss, xn)  # replaces, so no zero_grad needed
            return loss.detach()

        done = iterations
        for step in range(iterations):
            if deadline is not None and time.perf_counter() >= deadline:
                done, timed_out = step, True
                break
            step_holder["step"] = step
            opt.step(closure)
            if config.box:
                with torch.no_grad():
                    problem.domain.project_(xn)
            if not torch.isfinite(xn).all():
                break
        done_min = min(done_min, done)
        results.append(xn.detach())
    return torch.cat(results), done_min, timed_out
