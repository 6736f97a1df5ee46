"""Before the first round: what each attack costs on the declared update, and what fits.

An optimisation attack's time is about (candidates × iterations) × the cost of one pass
through its model of the update, which grows with the local steps and the examples they
go through (`fedsim.auditor.client_sizes.samples_processed`). `make_plan` times every
attack on the preflight's probe (`fedsim.auditor.preflight.probe_case`: random inputs
of the domain) at one example and at `PROBE_SIZE`, for one and for a few iterations,
fits seconds = overhead + iterations × candidates × (a·steps + c·examples), and
extrapolates to the declared update.

`audit.budget.seconds` is then what each attack may spend in one round, on the real
replies and the proxy clients together, split evenly over its calls (each call stops at
its share and returns its best candidate so far). Per attack the plan says:

- the declared update **fits** where one update at the full iteration budget fits its
  share: the real replies are attacked, and with `proxy_data` a proxy client like yours
  at the declared batch size beside them;
- else it is **out of reach** (an update from 1,864 images in 59 local steps): the real
  replies are not attacked by it — recorded `out_of_reach`, their label counts still read
  — and, with `proxy_data`, proxy clients of the batch sizes 1, 4, 16, … that fit are,
  so that the records show where leakage stops as the batch grows; where not even one
  example fits the full budget, one example at the iterations that fit (at least
  `MIN_ITERATIONS`).

Without `audit.budget.seconds` nothing is cut: every attack runs as declared and the plan
states what a round will cost. The plan goes to the console and to `audit_plan.json`.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from attacks.target import Budget
from fedsim.auditor.attack_calls import attack_targets
from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.client_sizes import samples_processed, smaller_client
from fedsim.auditor.preflight import PROBE_SIZE, probe_case
from fedsim.auditor.setup import AuditSetup
from fedsim.private_files import make_private
from fedsim.scenario.audit import BudgetConfig

logger = logging.getLogger("fedsim.auditor")

PLAN_FILE = "audit_plan.json"
LADDER = 4
"""Proxy batch sizes below the declared one: 1, 4, 16, 64, … (each this many times the last)."""
PROXY_IMAGES = 4
"""Proxy examples a round at each batch size at least: ⌈4 / size⌉ proxy clients."""
MIN_ITERATIONS = 10
"""Fewer iterations than this is no attack: the plan then leaves the attack out."""
_PROBE_ITERATIONS = 5
_PROBE_REPEATS = 3


def proxy_clients(size: int) -> int:
    return math.ceil(PROXY_IMAGES / size)


@dataclass(frozen=True)
class CostModel:
    """Seconds of one call: overhead + iterations × candidates × (per_step · steps +
    per_example · examples), for a client of (steps, examples)."""

    overhead: float
    per_step: float
    per_example: float

    def seconds(self, work: tuple[int, int], candidates: int, iterations: int) -> float:
        steps, examples = work
        each = self.per_step * steps + self.per_example * examples
        return self.overhead + iterations * candidates * each

    def iterations_within(self, work: tuple[int, int], candidates: int, seconds: float) -> int:
        each = candidates * (self.per_step * work[0] + self.per_example * work[1])
        return int(max(0.0, seconds - self.overhead) / each) if each > 0 else 10**9


@dataclass
class ProxyCall:
    """One attack on one round's proxy clients of one batch size."""

    batch_size: int
    clients: int
    iterations: int
    seconds: float | None
    """The call's share of the round's budget (None: no limit)."""
    estimate: float


@dataclass
class AttackPlan:
    attack: str
    iterations: int
    restarts: int
    declared_estimate: float
    """Seconds one declared update takes at the full iteration budget (estimate)."""
    fits: bool
    real_seconds: float | None = None
    """The real replies' call's share of the round's budget (None: no limit)."""
    proxy: list[ProxyCall] = field(default_factory=list)
    reason: str | None = None
    """Why the real replies are not attacked (`out_of_reach` records carry it)."""
    share: float | None = None
    """The share of the round's budget the declared update was weighed against."""

    def line(self, round_seconds: float | None) -> str:
        restarts = "" if self.restarts == 1 else f" × {self.restarts} restarts"
        budget = f"{self.iterations} iterations{restarts}"
        text = f"{self.attack} at {budget}: the declared update takes about "
        text += f"{_duration(self.declared_estimate)}"
        if self.fits:
            share = "" if self.real_seconds is None else f" within {self.real_seconds:.3g} s"
            text += f"; the replies are attacked{share}"
        else:
            share = f"{self.share:.3g} s, its share of " if self.share != round_seconds else ""
            text += (
                f", out of reach of {share}{round_seconds:g} s a round; the replies are not"
                " attacked"
            )
        if self.proxy:
            sizes = ", ".join(
                f"{c.batch_size}"
                + ("" if c.iterations == self.iterations else f" ({c.iterations} iterations)")
                for c in self.proxy
            )
            text += f"; proxy clients of batch {sizes}"
        return text


@dataclass
class CostPlan:
    """What every attack does each audited round, and why (module note)."""

    batch_size: int
    local_steps: int
    round_seconds: float | None
    """What each attack may spend a round (`audit.budget.seconds`)."""
    attacks: list[AttackPlan]
    proxy_data: str | None = None
    probe_seconds: float = 0.0

    def real_budgets(self, setup: AuditSetup) -> dict[str, BudgetConfig]:
        return {
            a.attack: _budget(setup, a.attack, a.iterations, a.real_seconds)
            for a in self.attacks
            if a.fits
        }

    def real_skipped(self) -> dict[str, str]:
        return {a.attack: a.reason or "out of reach" for a in self.attacks if not a.fits}

    def proxy_sizes(self) -> list[int]:
        return sorted({c.batch_size for a in self.attacks for c in a.proxy})

    def proxy_calls(self, size: int) -> dict[str, ProxyCall]:
        """Attack label → its call on the proxy clients of `size`."""
        return {a.attack: c for a in self.attacks for c in a.proxy if c.batch_size == size}

    def lines(self) -> list[str]:
        limit = (
            "no time limit (audit.budget.seconds unset)"
            if self.round_seconds is None
            else f"{self.round_seconds:g} s per attack a round"
        )
        head = (
            f"audit plan: updates from {self.batch_size} examples in {self.local_steps} local"
            f" steps, {limit}"
        )
        if self.proxy_data:
            head += f"; proxy data: {self.proxy_data}"
        lines = [head] + [f"  {a.line(self.round_seconds)}" for a in self.attacks]
        if self.round_seconds is None:
            total = sum(a.declared_estimate for a in self.attacks)
            lines.append(
                f"  a round's audit takes about {_duration(total)} per audited update; set "
                "audit.budget.seconds to keep each attack within a time a round"
            )
        elif any(not a.fits for a in self.attacks) and not self.proxy_data:
            lines.append(
                "  give proxy_data= (data of the clients' kind the server holds) to measure"
                " leakage on proxy clients of the batch sizes that fit"
            )
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "local_steps": self.local_steps,
            "round_seconds_per_attack": self.round_seconds,
            "proxy_data": self.proxy_data,
            "probe_seconds": self.probe_seconds,
            "attacks": [asdict(a) for a in self.attacks],
            "text": self.lines(),
        }

    def write(self, run_dir: Path) -> Path:
        path = run_dir / PLAN_FILE
        path.write_text(json.dumps(self.as_json(), indent=2, ensure_ascii=False) + "\n")
        make_private(path)
        return path

    def log(self) -> None:
        for line in self.lines():
            logger.info(line)


def make_plan(
    setup: AuditSetup,
    runner: AttackRunner,
    model: torch.nn.Module,
    *,
    proxy_examples: int = 0,
    proxy_source: str | None = None,
) -> CostPlan:
    """Time every attack on the probe and plan each against `audit.budget.seconds`
    (module note). `proxy_examples`: how many proxy examples batches may be drawn from
    (0: no proxy data)."""
    started = time.perf_counter()
    seconds = setup.audit.budget.seconds
    plans = []
    for index, (config, _) in enumerate(runner.attacks):
        budget = setup.budget_for(config)
        model_cost = _probe(setup, runner, model, index)
        sizes = _sizes(setup.batch_size, proxy_examples)
        plans.append(
            _plan_attack(
                setup, config.display_name, budget.iterations, budget.restarts, model_cost, sizes
            )
        )
    return CostPlan(
        batch_size=setup.batch_size,
        local_steps=setup.protocol.local_steps,
        round_seconds=seconds,
        attacks=plans,
        proxy_data=proxy_source,
        probe_seconds=round(time.perf_counter() - started, 3),
    )


def _sizes(declared: int, available: int) -> list[int]:
    """Proxy batch sizes that the proxy data can fill: 1, 4, 16, … below `declared`, then
    `declared`."""
    sizes, size = [], 1
    while size < declared:
        sizes.append(size)
        size *= LADDER
    sizes.append(declared)
    return [s for s in sizes if s * proxy_clients(s) <= available]


def _plan_attack(
    setup: AuditSetup,
    name: str,
    iterations: int,
    restarts: int,
    cost: CostModel,
    sizes: Sequence[int],
) -> AttackPlan:
    declared = setup.batch_size
    work = {s: samples_processed(smaller_client(setup, s).protocol, s) for s in {*sizes, declared}}
    estimate = cost.seconds(work[declared], restarts, iterations)
    plan = AttackPlan(name, iterations, restarts, round(estimate, 3), fits=True)
    limit = setup.audit.budget.seconds

    def call(size: int, share: float | None, steps: int = iterations) -> ProxyCall:
        clients = proxy_clients(size)
        guess = cost.seconds(work[size], clients * restarts, steps)
        return ProxyCall(size, clients, steps, share, round(guess, 3))

    if limit is None:
        plan.proxy = [call(declared, None)] if declared in sizes else []
        return plan
    with_proxy = declared in sizes
    share = limit / (2 if with_proxy else 1)
    proxy = [call(declared, share)] if with_proxy else []
    if estimate <= share and all(c.estimate <= share for c in proxy):
        plan.real_seconds, plan.proxy = round(share, 3), proxy
        return plan
    plan.fits, plan.share = False, round(share, 3)
    of = f"its {share:.3g} s share of the {limit:g} s" if with_proxy else f"the {limit:g} s"
    plan.reason = (
        f"{name} at {iterations} iterations needs about {_duration(estimate)} for an update from"
        f" {declared} examples in {setup.protocol.local_steps} local steps, more than {of} a"
        " round of audit.budget.seconds (audit_plan.json)"
    )
    smaller = [s for s in sizes if s < declared]
    for count in range(len(smaller), 0, -1):
        calls = [call(s, round(limit / count, 3)) for s in smaller[:count]]
        if all(c.estimate <= limit / count for c in calls):
            plan.proxy = calls
            return plan
    if smaller:
        fitting = cost.iterations_within(work[1], proxy_clients(1) * restarts, limit)
        if fitting >= MIN_ITERATIONS:
            plan.proxy = [call(1, round(limit, 3), min(fitting, iterations))]
    return plan


def _probe(
    setup: AuditSetup, runner: AttackRunner, model: torch.nn.Module, index: int
) -> CostModel:
    """Time attack `index` on probes of one example and of `PROBE_SIZE`, for one and for
    `_PROBE_ITERATIONS` iterations (the median of `_PROBE_REPEATS` timings each: a busy
    machine's noise); fit the cost model."""
    points = []
    for size in sorted({1, min(PROBE_SIZE, setup.batch_size)}):
        probe_runner, case = probe_case(setup, runner, model, size)
        _, attack = probe_runner.attacks[index]
        target = probe_runner.target(model, case)
        times = [
            statistics.median(_timed(attack, target, iterations) for _ in range(_PROBE_REPEATS))
            for iterations in (1, _PROBE_ITERATIONS)
        ]
        slope = max(times[1] - times[0], 0.0) / (_PROBE_ITERATIONS - 1)
        slope = slope or times[1] / _PROBE_ITERATIONS
        work = samples_processed(probe_runner.setup.protocol, probe_runner.setup.batch_size)
        points.append((work, slope, max(times[0] - slope, 0.0)))
    (steps_a, examples_a), slope_a, overhead = points[0]
    if len(points) == 1:
        return CostModel(overhead, 0.0, slope_a / examples_a)
    (steps_b, examples_b), slope_b, overhead_b = points[1]
    determinant = steps_a * examples_b - steps_b * examples_a
    per_step = per_example = -1.0
    if determinant:
        per_step = (slope_a * examples_b - slope_b * examples_a) / determinant
        per_example = (steps_a * slope_b - steps_b * slope_a) / determinant
    if per_step < 0 or per_example < 0:  # noise, or one kind of cost only: the larger probe
        per_step, per_example = 0.0, slope_b / examples_b
    return CostModel(max(overhead, overhead_b), per_step, per_example)


def _timed(attack: object, target: object, iterations: int) -> float:
    started = time.perf_counter()
    attack_targets(attack, [target], Budget(iterations=iterations, restarts=1))
    return time.perf_counter() - started


def _budget(setup: AuditSetup, attack: str, iterations: int, seconds: float | None) -> BudgetConfig:
    config = next(c for c in setup.attacks if c.display_name == attack)
    return setup.budget_for(config).model_copy(
        update={"iterations": iterations, "seconds": seconds}
    )


def proxy_budget(setup: AuditSetup, attack: str, call: ProxyCall) -> BudgetConfig:
    """The budget of an attack's call on proxy clients."""
    return _budget(setup, attack, call.iterations, call.seconds)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.2g} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
